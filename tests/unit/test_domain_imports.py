"""The domain layer is pure: its modules import no configuration and no infrastructure."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import pytest

import worker.domain

# Packages whose import would tie domain code to files, the network or a database
# (CONVENTIONS.md, 5). ``holidays`` is a plain library of rules and is allowed.
FORBIDDEN = ("config", "storage", "connectors", "httpx", "boto3", "redis", "sqlalchemy", "dramatiq")

DOMAIN_DIR = Path(next(iter(worker.domain.__path__)))
MODULES = sorted(m.name for m in pkgutil.iter_modules([str(DOMAIN_DIR)]))


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_domain_modules_are_found() -> None:
    """The walk sees the domain modules (guards the test below against passing vacuously)."""
    assert {"calendar", "deadlines", "jurisdiction", "outreach", "types"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_domain_module_imports_no_config_or_infrastructure(module: str) -> None:
    """No worker.domain module imports config (or I/O packages), even lazily inside a function."""
    tree = ast.parse((DOMAIN_DIR / f"{module}.py").read_text(), filename=f"{module}.py")
    offending = sorted(
        name
        for name in _imported(tree)
        if any(name == root or name.startswith(f"{root}.") for root in FORBIDDEN)
    )
    assert offending == [], f"worker/domain/{module}.py imports {offending}"


def test_the_check_catches_a_config_import() -> None:
    """The AST walk sees plain, from- and function-local imports of config."""
    source = "import config.settings\ndef f():\n    from config.jurisdictions import X\n"
    assert _imported(ast.parse(source)) == {"config.settings", "config.jurisdictions"}
