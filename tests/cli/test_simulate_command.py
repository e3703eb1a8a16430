"""The ``fedlearn simulate`` command end to end, through the real console entry point."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedlearn.cli import app
from fedlearn.core.codec import decode_with_metadata

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
runner = CliRunner()


def _fedlearn(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script's code path in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-c", "from fedlearn.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_simulate_writes_all_artifacts(tmp_path: Path) -> None:
    out = tmp_path / "out"

    result = runner.invoke(
        app, ["simulate", str(EXAMPLES / "digits_sklearn.toml"), "--rounds", "2", "--out", str(out), "--quiet"]
    )

    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"history.json", "history.csv", "model.safetensors", "metrics.png"}
    history = json.loads((out / "history.json").read_text())
    assert [r["round"] for r in history] == [1, 2]
    params, metadata = decode_with_metadata((out / "model.safetensors").read_bytes())
    assert metadata["rounds"] == "2" and len(params) > 0
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_digits_default_demo_reaches_ninety_percent_accuracy(tmp_path: Path) -> None:
    result = _fedlearn("simulate", str(EXAMPLES / "digits_sklearn.toml"), "--quiet", "--out", str(tmp_path))

    assert result.returncode == 0, result.stderr
    final = json.loads((tmp_path / "history.json").read_text())[-1]["central_metrics"]
    assert final["accuracy"] >= 0.90


@pytest.mark.slow
@pytest.mark.parametrize("example", ["fedprox_synthetic.toml", "torch_mlp.toml"])
def test_shipped_examples_run(example: str, tmp_path: Path) -> None:
    if example.startswith("torch"):
        pytest.importorskip("torch")

    result = _fedlearn("simulate", str(EXAMPLES / example), "--rounds", "3", "--quiet")

    assert result.returncode == 0, result.stderr
    assert "final: loss" in result.stdout


def test_seed_override_changes_and_fixes_the_result(tmp_path: Path) -> None:
    config = EXAMPLES / "digits_sklearn.toml"
    runs = {}
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        out = tmp_path / name
        runner.invoke(app, ["simulate", str(config), "--rounds", "1", "--seed", seed, "--out", str(out), "-q"])
        runs[name] = (out / "model.safetensors").read_bytes()

    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[strategy]\nname = 'fedavg'\nfraction = 1.5\n", "`fraction` must be in (0, 1]; got 1.5"),
        ("[engine]\nround_timout = 3\n", "unknown key [engine] round_timout"),
        ("[run]\nrounds = 0\n", "[run] rounds: Input should be greater than or equal to 1"),
        ("[strategy]\nname = 'fedmagic'\n", "fedmagic"),
        ("[model]\nlearner = 'numpy.softmax'\nlayers = 3\n", "layers"),
        ("[data]\ndataset = 'imagenet'\n", "imagenet"),
        ("[run\n", "not valid TOML"),
        ("[client]\nlocal_epoch = 2\n", "unknown option(s) local_epoch for [client]; valid options: batch_size,"),
        ("[client]\nlearning_rate = 'fast'\n", "[client] `learning_rate` must be a number in (0, inf); got 'fast'"),
    ],
)
def test_bad_config_gives_one_line_and_exit_code_2(tmp_path: Path, toml: str, message: str) -> None:
    result = _fedlearn("simulate", str(_write(tmp_path, toml)), "--quiet")

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = _fedlearn("simulate", str(tmp_path / "nope.toml"))

    assert result.returncode == 2
    assert "no such config file" in result.stderr


def test_quorum_failure_exits_with_its_own_code_and_reason(tmp_path: Path) -> None:
    toml = (
        "[run]\nrounds = 2\n[data]\ndataset = 'iris'\nnodes = 3\n[model]\nlearner = 'sklearn.sgd'\n"
        "[strategy]\nname = 'fedprox'\nmu = 0.1\n"
    )

    result = _fedlearn("simulate", str(_write(tmp_path, toml)), "--quiet")

    assert result.returncode == 4
    assert "proximal_mu" in result.stderr


def test_help_lists_subcommands() -> None:
    result = _fedlearn("--help")

    assert result.returncode == 0
    assert "simulate" in result.stdout and "analytics" in result.stdout


def test_simulate_with_an_attack_names_its_attackers_and_reports_backdoor_success(tmp_path: Path) -> None:
    config = _write(
        tmp_path,
        '[run]\nrounds = 2\n[data]\ndataset = "digits"\nnodes = 10\n[model]\nlearner = "numpy.mlp"\n'
        '[attack]\nname = "backdoor"\nnodes = ["node-003"]\n',
    )

    result = runner.invoke(app, ["simulate", str(config), "-q"])

    assert result.exit_code == 0, result.output
    assert "attack: backdoor (target=0, boost=10), 1 attacker(s): node-003" in result.output
    assert "backdoor success: " in result.output


DP_RUN = """
[run]
rounds = 3
[data]
dataset = "iris"
nodes = 4
[model]
learner = "numpy.softmax"
[privacy.differential_privacy]
enabled = true
noise_multiplier = 1.0
epsilon = {budget}
delta = 1e-5
"""


def test_simulate_under_dp_shows_epsilon_each_round_and_the_budget_at_the_end(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", str(_write(tmp_path, DP_RUN.format(budget=50)))])

    assert result.exit_code == 0, result.output
    summary = re.search(r"^privacy: ε = ([0-9.]+) at δ = 1e-05, of a budget of ε = 50 \(\d+% spent\)$", result.stdout,
                        re.MULTILINE)  # fmt: skip
    assert summary is not None, result.stdout
    shown = re.findall(r"ε=([0-9.]+)", result.stderr)  # the progress line, round by round
    assert shown and float(shown[-1]) == pytest.approx(float(summary.group(1)), rel=0.01)


def test_simulate_whose_plan_exceeds_the_budget_is_refused_in_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", str(_write(tmp_path, DP_RUN.format(budget=0.5))), "--quiet"])

    assert result.exit_code == 3  # PrivacyError's
    assert "over the budget `epsilon` = 0.5" in result.stderr and len(result.stderr.strip().splitlines()) == 1
