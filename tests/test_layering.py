"""Each part of fedlearn imports only the parts above it in the design map's order.

This keeps the map in ../shared/design.md true: a new import that breaks the order fails here,
and then either the import or the map is wrong. ``ORDER`` names exactly the map's parts, in the
map's order, and relative imports count as much as absolute ones.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "fedlearn"
ORDER = [
    "core", "data", "privacy", "strategies", "engine", "config", "client", "simulation", "runtime", "analytics",
    "registry", "web", "cli",
]  # fmt: skip
SIDE_BY_SIDE = {"simulation": "runtime", "runtime": "simulation"}
"""Two Fleets side by side: neither may import the other, whatever their places in the order."""


def _module(path: Path) -> list[str]:
    """``fedlearn.engine.stage`` as ``["fedlearn", "engine", "stage"]``; a package is its ``__init__``'s name."""
    parts = ["fedlearn", *path.relative_to(SRC).with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def _part(path: Path) -> str:
    module = _module(path)
    return module[1] if len(module) > 1 else "__init__"


def _imported_modules(package: list[str], source: str) -> Iterator[list[str]]:
    """Every module ``source`` imports, with relative imports resolved against its ``package``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = [*base, *(node.module.split(".") if node.module else [])]
            yield module
            if node.module is None or node.level:  # "from . import x" may import a submodule x
                for alias in node.names:
                    yield [*module, alias.name]


def _imported_parts(path: Path) -> set[str]:
    package = _module(path) if path.name == "__init__.py" else _module(path)[:-1]
    modules = _imported_modules(package, path.read_text())
    return {m[1] for m in modules if len(m) > 1 and m[0] == "fedlearn" and m[1] in ORDER}


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if _part(p) != "__init__")


def test_the_parts_are_exactly_the_maps() -> None:
    found = {_part(p) for p in _sources()}

    assert found <= set(ORDER), f"add {sorted(found - set(ORDER))} to ORDER and to the design map"


def test_parts_import_only_parts_above_them() -> None:
    violations = []
    for path in _sources():
        part = _part(path)
        for imported in _imported_parts(path) - {part}:
            if ORDER.index(imported) > ORDER.index(part) or SIDE_BY_SIDE.get(part) == imported:
                violations.append(f"{path.relative_to(SRC)} imports fedlearn.{imported}")

    assert not violations, "\n".join(violations)


def test_relative_imports_resolve_to_their_part() -> None:
    source = "from ..engine import stage\nfrom .params import ParamSet\nfrom .. import web\n"

    modules = {".".join(m) for m in _imported_modules(["fedlearn", "core"], source)}

    assert {"fedlearn.engine.stage", "fedlearn.core.params", "fedlearn.web"} <= modules
