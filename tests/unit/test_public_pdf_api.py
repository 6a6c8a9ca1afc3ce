"""Source code uses only pypdf's public API: pyproject allows two pypdf major versions, and
private attributes (``writer._add_object``, ``reader._encryption``, ``stream._data``) change
without notice between them."""

from __future__ import annotations

import ast
import inspect
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pypdf
import pypdf.generic
import pytest

from tests.conftest import REPO

SCANNED = ("worker", "connectors", "simulator")

# Private names known to have been used here, and pypdf's private-helper families.
_KNOWN = re.compile(r"_add_object|_encryption|_data|_get_[a-z0-9_]+|_objects|_replace_object")
_RECEIVERS_OF_OUR_OWN = frozenset({"self", "cls"})  # our classes may have private helpers


def _pypdf_private_names() -> frozenset[str]:
    """Single-underscore attributes of pypdf's public classes, including instance attributes
    set in ``__init__`` (read from live instances)."""
    writer = pypdf.PdfWriter()
    writer.add_blank_page(72, 72)
    buffer = io.BytesIO()
    writer.write(buffer)
    stream = pypdf.generic.DecodedStreamObject()
    samples: list[object] = [writer, pypdf.PdfReader(buffer), writer.pages[0], stream]
    for module in (pypdf, pypdf.generic):
        samples += [c for c in vars(module).values() if inspect.isclass(c)]
    return frozenset(
        name
        for sample in samples
        for name in dir(sample)
        if name.startswith("_") and not name.startswith("__")
    )


PYPDF_PRIVATE = _pypdf_private_names()


def _is_private_pdf_name(name: str) -> bool:
    return name in PYPDF_PRIVATE or _KNOWN.fullmatch(name) is not None


def private_uses(source: str) -> Iterator[tuple[int, str]]:
    """(line, text) of each access to a private pypdf attribute: ``x._name`` where ``x`` is
    not ``self``/``cls``, and ``getattr(x, "_name")`` / ``hasattr`` / ``setattr``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _is_private_pdf_name(node.attr):
            receiver = node.value
            if isinstance(receiver, ast.Name) and receiver.id in _RECEIVERS_OF_OUR_OWN:
                continue
            yield node.lineno, ast.unparse(node)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _is_private_pdf_name(node.args[1].value)
        ):
            yield node.lineno, ast.unparse(node)


def _sources() -> list[Path]:
    return sorted(
        path
        for folder in SCANNED
        if (REPO / folder).is_dir()
        for path in (REPO / folder).rglob("*.py")
    )


def test_no_private_pypdf_attributes_in_worker_or_connectors() -> None:
    """No module under worker/ or connectors/ reaches into pypdf's private attributes."""
    sources = _sources()
    assert any(p.parts[-3:] == ("worker", "packet", "stamps.py") for p in sources)
    found = [
        f"{path.relative_to(REPO)}:{line}: {text}"
        for path in sources
        for line, text in private_uses(path.read_text("utf-8"))
    ]
    assert found == [], "use pypdf's or pikepdf's public API instead:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "snippet",
    [
        "font = writer._add_object(DictionaryObject())",
        "e = reader._encryption",
        "raw = stream._data",
        'raw = getattr(stream, "_data", b"")',
        "page = reader._get_page(0)",
        "writer._objects.append(x)",
        "pages = reader.trailer['/Root']._get_object()",
    ],
)
def test_the_check_catches_the_private_uses_it_guards_against(snippet: str) -> None:
    """Each form the old code used (and its close relatives) is reported."""
    assert list(private_uses(snippet))


@pytest.mark.parametrize(
    "snippet",
    [
        "self._get_portal().call(x)",
        "cls._data = {}",
        "writer.add_metadata({})",
        "page.contents_add(stamp)",
        "stored.read_raw_bytes()",
    ],
)
def test_the_check_leaves_our_own_private_helpers_and_public_calls_alone(snippet: str) -> None:
    """Private helpers on our own classes (self./cls.) and public calls are not reported."""
    assert list(private_uses(snippet)) == []
