"""Import boundaries: the simulator reads our letters with its own code, and our system does not
depend on the simulator (only the CLI commands that run it import it)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (top level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_cli_imports_the_simulator() -> None:
    """No module in worker/, connectors/, storage/, api/ or config/ imports simulator, except
    worker/cli.py (the demo, simulate and simulator commands)."""
    offenders = [
        str(path.relative_to(REPO))
        for package in ("worker", "connectors", "storage", "api", "config")
        for path in sorted((REPO / package).rglob("*.py"))
        if path != REPO / "worker" / "cli.py"
        and any(m == "simulator" or m.startswith("simulator.") for m in _imports(path))
    ]
    assert offenders == []


def test_far_sides_do_not_use_our_document_parser_or_connectors() -> None:
    """The far-side modules import neither worker.documents nor our connectors: a fault there
    must not be mirrored by the fake that checks it."""
    # driver, demo and chaos drive our own pipeline (chaos.py runs the production processes
    # and reads their settings): they are not far sides
    drivers = ("driver", "demo", "chaos")
    far_side_modules = [
        p for p in sorted((REPO / "simulator").glob("*.py")) if p.stem not in drivers
    ]
    used = {
        (p.name, m)
        for p in far_side_modules
        for m in _imports(p)
        if m == "worker.documents" or m.startswith("connectors")
    }
    assert used == set()
