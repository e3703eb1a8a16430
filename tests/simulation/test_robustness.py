"""The robustness grid: its cells, each cell's run config, and the tables with their targets checked."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.simulation.robustness import NO_ATTACK, Cell, CellResult, load_grid, markdown, run_cell, summarise

GRID = """
[run]
rounds = 2
[data]
dataset = "iris"
nodes = 10
[client]
local_epochs = 1
batch_size = 8

[grid]
fractions = [0.0, 0.2]
seeds = [0, 1]

[grid.splits]
iid = { partition = "iid" }
skewed = { partition = "dirichlet", alpha = 0.5 }

[grid.defences]
fedavg = {}
median = { name = "coordinate_median" }

[grid.attacks]
sign_flip = { name = "sign_flip", scale = 2.0 }
backdoor = { name = "backdoor" }
"""


def grid_file(tmp_path: Path, text: str = GRID) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(text)
    return path


def test_cells_cover_every_split_seed_defence_and_attack_with_one_attack_free_run_each(tmp_path: Path) -> None:
    cells = load_grid(grid_file(tmp_path)).cells()

    # 2 splits x 2 seeds x 2 defences x (1 attack-free + 2 attacks at 0.2)
    assert len(cells) == 24
    assert len(set(cells)) == 24
    assert {c.attack for c in cells if c.fraction == 0} == {NO_ATTACK}


def test_a_cells_run_config_writes_in_its_split_reducer_attack_and_seed(tmp_path: Path) -> None:
    grid = load_grid(grid_file(tmp_path))

    data = grid.run_config(Cell(split="skewed", defence="median", attack="sign_flip", fraction=0.2, seed=1))

    assert data["run"]["seed"] == 1
    assert (data["data"]["partition"], data["data"]["partition_options"]) == ("dirichlet", {"alpha": 0.5})
    assert data["strategy"]["reducer"] == {"name": "coordinate_median"}
    assert data["attack"] == {"knowledge": "colluders", "name": "sign_flip", "scale": 2.0, "fraction": 0.2}
    assert (
        grid.run_config(Cell(split="iid", defence="fedavg", attack=NO_ATTACK, fraction=0.0, seed=0)).get("attack")
        is None
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.split("[grid]")[0], r"needs a \[grid\] section"),
        (
            lambda t: t.replace('sign_flip = { name = "sign_flip", scale = 2.0 }', 'x = { name = "nope" }'),
            "unknown attack 'nope'",
        ),
        (lambda t: t.replace("scale = 2.0", "scale = -2.0"), r"cell iid/fedavg/sign_flip: \[attack\]: `scale` must be"),
        (lambda t: t.replace('{ name = "coordinate_median" }', '{ name = "krum" }'), "needs option.s. num_byzantine"),
        (lambda t: t.replace("fractions = [0.0, 0.2]", "fractions = [1.0]"), r"fractions must be in \[0, 1\)"),
        (lambda t: t.replace("scale = 2.0 }", "scale = 2.0, fraction = 0.1 }"), "the grid sets the attackers"),
    ],
    ids=["no_grid", "unknown_attack", "bad_option", "bad_defence", "fraction", "attackers"],
)
def test_a_bad_grid_is_refused_before_anything_runs(tmp_path: Path, edit, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_grid(grid_file(tmp_path, edit(GRID)))


def test_run_cell_measures_accuracy_and_backdoor_success(tmp_path: Path) -> None:
    grid = load_grid(grid_file(tmp_path))

    result = run_cell(grid, Cell(split="iid", defence="fedavg", attack="backdoor", fraction=0.2, seed=0))

    assert result.error == "" and result.byzantine == 2
    assert 0 <= result.accuracy <= 1 and result.backdoor is not None and 0 <= result.backdoor <= 1


def test_a_cell_that_fails_is_a_result_with_its_error(tmp_path: Path) -> None:
    # Krum tolerating 4 of 10 needs 11 replies: the config is valid, the first round fails
    grid = load_grid(
        grid_file(tmp_path, GRID.replace('{ name = "coordinate_median" }', '{ name = "krum", num_byzantine = 4 }'))
    )

    result = run_cell(grid, Cell(split="iid", defence="median", attack=NO_ATTACK, fraction=0.0, seed=0))

    assert "needs at least 11" in result.error and math.isnan(result.accuracy)


def result(defence: str, attack: str, accuracy: float, *, backdoor: float | None = None, seed: int = 0) -> CellResult:
    fraction = 0.0 if attack == NO_ATTACK else 0.2
    return CellResult(
        split="iid", defence=defence, attack=attack, fraction=fraction, byzantine=2 if fraction else 0, seed=seed,
        accuracy=accuracy, backdoor=backdoor, seconds=0.1,
    )  # fmt: skip


def test_summarise_averages_over_seeds_and_counts_failed_runs() -> None:
    failed = replace(result("fedavg", "sign_flip", math.nan, seed=2), error="boom")
    rows = [result("fedavg", "sign_flip", 0.5), result("fedavg", "sign_flip", 0.7, seed=1), failed]

    summary = summarise(rows)[("iid", 0.2, "sign_flip", "fedavg")]

    assert summary.accuracy == pytest.approx(0.6) and (summary.runs, summary.failed) == (3, 1)


def test_markdown_checks_both_targets_on_each_row(tmp_path: Path) -> None:
    grid = load_grid(grid_file(tmp_path))
    rows = [
        result("fedavg", NO_ATTACK, 0.90), result("median", NO_ATTACK, 0.89),
        result("fedavg", "sign_flip", 0.10), result("median", "sign_flip", 0.885),
        result("fedavg", "backdoor", 0.90, backdoor=0.99), result("median", "backdoor", 0.85, backdoor=0.10),
    ]  # fmt: skip

    lines = markdown(grid, rows).splitlines()

    assert "#### iid: 2 of 10 nodes Byzantine (20%), mean of 2 seed(s)" in lines
    assert "| attack | fedavg | median | best defence | target |" in lines
    assert "| none | 90.0 | 89.0 | fedavg 90.0 (+0.0) |  |" in lines
    assert "| sign_flip | 10.0 | 88.5 | median 88.5 (-1.5) | accuracy met |" in lines
    assert "| backdoor | 90.0 · 99 | 85.0 · 10 | – | **backdoor missed (lowest: median 10%)** |" in lines


def test_in_a_backdoor_row_only_a_defence_that_stops_it_can_meet_the_accuracy_target(tmp_path: Path) -> None:
    grid = load_grid(grid_file(tmp_path))
    rows = [
        result("fedavg", NO_ATTACK, 0.90), result("median", NO_ATTACK, 0.89),
        result("fedavg", "backdoor", 0.90, backdoor=0.99), result("median", "backdoor", 0.87, backdoor=0.01),
    ]  # fmt: skip

    lines = markdown(grid, rows).splitlines()

    verdict = "**accuracy missed**; backdoor met (1 of 2 defences below 5%)"
    assert f"| backdoor | 90.0 · 99 | 87.0 · 1 | median 87.0 (-3.0) | {verdict} |" in lines


def test_markdown_says_when_only_a_defence_with_trusted_data_meets_the_target(tmp_path: Path) -> None:
    text = GRID.replace(
        'median = { name = "coordinate_median" }', 'fltrust = { name = "fltrust", trusted_examples = 20 }'
    )
    grid = load_grid(grid_file(tmp_path, text))
    rows = [
        result("fedavg", NO_ATTACK, 0.90), result("fltrust", NO_ATTACK, 0.89),
        result("fedavg", "sign_flip", 0.10), result("fltrust", "sign_flip", 0.89),
    ]  # fmt: skip

    lines = markdown(grid, rows).splitlines()

    assert "| attack | fedavg | fltrust | best defence | best without trusted data | target |" in lines
    assert (
        "| sign_flip | 10.0 | 89.0 | fltrust 89.0 (-1.0) | fedavg 10.0 (-80.0) | accuracy met with trusted data only |"
        in lines
    )


def test_the_shipped_grid_is_valid() -> None:
    grid = load_grid(Path(__file__).resolve().parents[2] / "examples" / "robustness_digits.toml")

    assert len(grid.cells()) == 3 * 2 * 11 * (1 + 11)  # splits x seeds x defences x (attack-free + attacks)


def test_the_worst_case_row_picks_the_defence_that_holds_up_best_over_every_attack(tmp_path: Path) -> None:
    grid = load_grid(grid_file(tmp_path))
    rows = [
        result("fedavg", NO_ATTACK, 0.90), result("median", NO_ATTACK, 0.89),
        result("fedavg", "sign_flip", 0.10), result("median", "sign_flip", 0.885),
        result("fedavg", "backdoor", 0.90, backdoor=0.99), result("median", "backdoor", 0.87, backdoor=0.01),
    ]  # fmt: skip

    lines = markdown(grid, rows).splitlines()

    row = (
        "| **worst case** | 10.0 (backdoor in) | 87.0 | median 87.0 (-3.0) | one defence for every attack: **missed** |"
    )
    assert row in lines
