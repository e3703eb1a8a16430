"""Each part of fedlearn imports only the parts above it in the design map's order.

This keeps the map in ../shared/design.md true: a new import that breaks the order fails here,
and then either the import or the map is wrong.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "fedlearn"
ORDER = [
    "core", "data", "strategies", "engine", "config", "client", "simulation", "runtime", "privacy",
    "analytics", "registry", "web", "cli",
]  # fmt: skip


def _part(path: Path) -> str:
    relative = path.relative_to(SRC)
    return relative.parts[0].removesuffix(".py")


def _imported_parts(path: Path) -> set[str]:
    parts: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "fedlearn" and len(pieces) > 1:
                parts.add(pieces[1])
    return parts


def test_every_part_is_in_the_order() -> None:
    found = {_part(p) for p in SRC.rglob("*.py") if _part(p) != "__init__"}

    assert found <= set(ORDER), f"add {sorted(found - set(ORDER))} to ORDER and to the design map"


def test_parts_import_only_parts_above_them() -> None:
    violations = []
    for path in SRC.rglob("*.py"):
        part = _part(path)
        if part == "__init__":
            continue
        for imported in _imported_parts(path) - {part}:
            if imported in ORDER and ORDER.index(imported) > ORDER.index(part):
                violations.append(f"{path.relative_to(SRC)} imports fedlearn.{imported}")

    assert not violations, "\n".join(violations)
