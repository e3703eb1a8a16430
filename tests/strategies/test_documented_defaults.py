"""The options table in docs/strategies.md states exactly the defaults the builders have."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from fedlearn.strategies import STRATEGIES

DOC = Path(__file__).resolve().parents[2] / "docs" / "strategies.md"
REQUIRED = object()


def documented_options() -> dict[str, dict[str, object]]:
    """Strategy name -> option -> documented default (``REQUIRED`` when there is none)."""
    section = DOC.read_text().split("## Options and their defaults", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, dict[str, object]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not line.startswith("|") or set(cells[0]) <= {"-"} or cells[0] == "Strategy":
            continue
        options: dict[str, object] = {}
        for name, value in re.findall(r"`(\w+)(?:=([^`]+))?`", cells[1]):
            options[name] = REQUIRED if not value else ast.literal_eval(value)
        rows[cells[0].strip("`")] = options
    shared = rows.pop("every strategy")
    return {name: {**shared, **own} for name, own in rows.items()}


def test_every_named_strategy_has_a_row() -> None:
    assert sorted(documented_options()) == sorted(STRATEGIES)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_documented_defaults_are_the_builders_defaults(name: str) -> None:
    parameters = inspect.signature(STRATEGIES[name]).parameters.values()
    actual = {p.name: REQUIRED if p.default is p.empty else p.default for p in parameters}

    documented = documented_options()[name]

    assert {k: (type(v), v) for k, v in documented.items()} == {k: (type(v), v) for k, v in actual.items()}
