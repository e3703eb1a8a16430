"""``fedlearn robustness`` runs a grid and writes its CSV, Markdown tables and plot."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedlearn.cli import app

runner = CliRunner()

GRID = """
[run]
rounds = 2
[data]
dataset = "iris"
nodes = 8
[client]
local_epochs = 1
batch_size = 8

[grid]
fractions = [0.0, 0.25]
[grid.splits]
iid = { partition = "iid" }
[grid.defences]
fedavg = {}
median = { name = "coordinate_median" }
[grid.attacks]
sign_flip = { name = "sign_flip" }
ipm = { name = "ipm" }
"""


def _grid(tmp_path: Path) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    return path


def test_robustness_writes_a_row_per_cell_the_tables_and_a_plot(tmp_path: Path) -> None:
    out = tmp_path / "out"

    result = runner.invoke(app, ["robustness", str(_grid(tmp_path)), "--out", str(out), "--workers", "1", "-q"])

    assert result.exit_code == 0, result.output
    assert "6 cells in" in result.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 6 and {r["attack"] for r in rows} == {"none", "sign_flip", "ipm"}
    assert all(r["error"] == "" for r in rows)
    table = (out / "results.md").read_text()
    assert table.startswith(f"`fedlearn robustness {tmp_path / 'grid.toml'}`: 6 runs in")
    assert "#### iid: 2 of 8 nodes Byzantine (25%)" in table
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_robustness_gives_the_same_results_on_two_worker_processes(tmp_path: Path) -> None:
    outputs = []
    for workers in ("1", "2"):
        out = tmp_path / workers
        result = runner.invoke(app, ["robustness", str(_grid(tmp_path)), "--out", str(out), "--workers", workers, "-q"])
        assert result.exit_code == 0, result.output
        outputs.append(
            [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader((out / "results.csv").open())]
        )

    assert outputs[0] == outputs[1]


def test_a_bad_grid_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(GRID.replace('{ name = "ipm" }', '{ name = "ipm", epsilon = -1.0 }'))

    result = runner.invoke(app, ["robustness", str(path), "--out", str(tmp_path / "out")])

    assert result.exit_code == 2
    assert "`epsilon` must be in (0, inf); got -1.0" in result.output
