"""Rules of the code's shape that a review would otherwise have to remember: what each layer
may import, and that test modules are never imported as libraries (shared fixtures are
plugins, helpers are helper modules)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def importers_of(folder: str, forbidden: tuple[str, ...]) -> dict[str, set[str]]:
    found = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        bad = {
            name
            for name in imported_modules(path)
            if any(name == f or name.startswith(f + ".") for f in forbidden)
        }
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        # The realtime core serves pages and programs alike: no web framework in it.
        ("app/realtime", ("reflex", "fastapi", "starlette", "uvicorn", "app.state", "app.api")),
        # Use cases know no HTTP and no Reflex.
        ("app/domain", ("reflex", "fastapi", "starlette", "app.state", "app.api")),
        ("app/security", ("reflex", "app.state", "app.api")),
    ],
)
def test_a_layer_imports_nothing_above_it(folder: str, forbidden: tuple[str, ...]) -> None:
    assert importers_of(folder, forbidden) == {}


def test_no_test_module_is_imported_as_a_library() -> None:
    importers = {
        str(path.relative_to(ROOT)): sorted(
            name for name in imported_modules(path) if name.startswith("tests.test_")
        )
        for path in sorted((ROOT / "tests").glob("*.py"))
    }
    assert {path: names for path, names in importers.items() if names} == {}


def test_the_rules_see_an_import_when_there_is_one(tmp_path: Path) -> None:
    """The checks above would pass on nothing; this shows the parser finds both forms."""
    sample = tmp_path / "sample.py"
    sample.write_text("import reflex as rx\nfrom tests.test_serve import x\nfrom . import y\n")
    assert imported_modules(sample) == {"reflex", "tests.test_serve"}
