"""The one progress bar, as ``simulate`` and ``run`` both feed it."""

from __future__ import annotations

import io
from dataclasses import replace

from rich.console import Console

from fedlearn.cli.progress import RoundProgress, privacy_summary
from fedlearn.engine.history import RoundRecord

ROUND_2 = RoundRecord(
    round=2,
    sampled=3,
    replies=2,
    num_examples=90,
    duration_s=0.5,
    bytes_sent=1,
    bytes_received=1,
    fit_metrics={"loss": 0.9, "accuracy": 0.5},
    federated_metrics={"loss": 0.7, "accuracy": 0.6, "f1": 0.1},
)


def _shown(record: RoundRecord | None, *, status: str = "") -> str:
    out = io.StringIO()
    with RoundProgress(total=5, console=Console(file=out, width=200), status="pending") as progress:
        progress.update(record, status=status)
    return out.getvalue()


def test_shows_rounds_done_and_the_best_metrics_the_round_has() -> None:
    shown = _shown(ROUND_2)

    assert "2/5" in shown and "loss=0.7000 accuracy=0.6000" in shown
    assert "f1" not in shown and "0.9000" not in shown


def test_central_metrics_come_first() -> None:
    assert "loss=0.1000" in _shown(replace(ROUND_2, central_metrics={"loss": 0.1}))


def test_nodes_left_out_of_the_round_are_counted() -> None:
    shown = _shown(replace(ROUND_2, failures={"n1": "deadline passed", "n2": "bad shape"}))

    assert "(2 node(s) failed)" in shown


def test_a_deployed_runs_status_comes_before_its_metrics() -> None:
    assert "running loss=0.7000" in _shown(ROUND_2, status="running")


def test_before_the_first_round_only_the_status_shows() -> None:
    shown = _shown(None, status="running")

    assert "0/5" in shown and "running" in shown and "loss" not in shown


def test_a_round_under_differential_privacy_shows_the_epsilon_spent_so_far() -> None:
    shown = _shown(replace(ROUND_2, epsilon=1.2345), status="running")

    assert "running loss=0.7000 accuracy=0.6000 ε=1.23" in shown


def test_a_round_without_differential_privacy_shows_no_epsilon() -> None:
    assert "ε" not in _shown(ROUND_2)


def test_privacy_summary_says_epsilon_delta_and_the_share_of_the_budget_spent() -> None:
    line = privacy_summary(epsilon=3.2149, delta=1e-5, budget=8.0)

    assert line == "privacy: ε = 3.21 at δ = 1e-05, of a budget of ε = 8 (40% spent)"


def test_privacy_summary_without_a_budget_says_epsilon_is_not_enforced() -> None:
    line = privacy_summary(epsilon=12.5, delta=1e-6, budget=None)

    assert line == "privacy: ε = 12.5 at δ = 1e-06 (no budget: ε is reported, not enforced)"
