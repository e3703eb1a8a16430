"""docs/strategies.md states exactly the builders' defaults, and every robust reducer with a config that builds."""

from __future__ import annotations

import ast
import inspect
import re
import tomllib
from pathlib import Path

import pytest

from fedlearn.strategies import REDUCERS, STRATEGIES, bucketing, build_strategy, bulyan, norm_bound

PRE_AGGREGATION_STEPS = ("norm_bound", "bucketing")

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


def robust_aggregation_section() -> str:
    return DOC.read_text().split("## Robust aggregation", 1)[1].split("\n## ", 1)[0]


def test_every_registered_robust_reducer_and_step_has_a_row() -> None:
    rows = set(re.findall(r"^\| `(\w+)` \|", robust_aggregation_section(), flags=re.MULTILINE))

    assert rows == (set(REDUCERS) - {"weighted_mean", "unweighted_mean"}) | set(PRE_AGGREGATION_STEPS)


def test_the_documented_reducer_table_builds_what_the_python_line_says() -> None:
    block = robust_aggregation_section().split("```toml\n", 1)[1].split("```", 1)[0]
    section = dict(tomllib.loads(block)["strategy"])

    strategy = build_strategy(section.pop("name"), **section)

    assert strategy.reducer == norm_bound(bucketing(bulyan(2), bucket_size=2), max_norm=10.0)
