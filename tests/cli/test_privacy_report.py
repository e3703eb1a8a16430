"""What ``fedlearn runs show`` and ``runs watch`` say about a run's differential privacy, through the CLI runner.

The API is served on loopback as the coordinator serves it, over a store holding runs checkpointed
as the engine leaves them under DP, so the commands read the privacy through the real client.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner, Result

from fedlearn.cli.root import app
from fedlearn.runtime.store import Store
from tests.web.serving import coordinator_on_loopback
from tests.web.test_api import ADMIN, CONFIG, DP_CONFIG, dp_checkpoint

runner = CliRunner()


@pytest.fixture
def api(store: Store) -> Iterator[str]:
    """The API of a coordinator that is never started, served in a thread; yields its URL."""
    with coordinator_on_loopback(store) as url:
        yield url


def _runs(api: str, *args: str) -> Result:
    return runner.invoke(app, ["runs", *args, "--coordinator", api, "--admin-token", ADMIN])


def test_runs_show_of_a_dp_run_says_the_privacy_spent_and_each_rounds_epsilon(api: str, store: Store) -> None:
    run_id, ledger = dp_checkpoint(store, DP_CONFIG, 2)
    history = store.round_history(run_id)

    shown = _runs(api, "show", run_id)

    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[1] == f"privacy: ε = {ledger.epsilon():.3g} at δ = 1e-05, of a budget of ε = 50 " \
                       f"({ledger.epsilon() / 50:.0%} spent)"  # fmt: skip
    assert lines[2].endswith(f"ε={history[0].epsilon:.2f}") and lines[3].endswith(f"ε={history[1].epsilon:.2f}")


def test_runs_show_of_a_run_without_dp_says_nothing_of_privacy(api: str, store: Store) -> None:
    run_id = store.create_run("plain", CONFIG, seed=1, rounds=2)

    shown = _runs(api, "show", run_id)

    assert shown.exit_code == 0, shown.output
    assert "privacy" not in shown.output and "ε" not in shown.output


def test_runs_watch_of_a_completed_dp_run_ends_with_its_privacy(api: str, store: Store) -> None:
    run_id, ledger = dp_checkpoint(store, DP_CONFIG, 2)
    store.set_run_status(run_id, "completed", "2 rounds")

    watched = _runs(api, "watch", run_id)

    assert watched.exit_code == 0, watched.output
    assert f"privacy: ε = {ledger.epsilon():.3g} at δ = 1e-05, of a budget of ε = 50" in watched.stdout
    assert f"run {run_id}: completed 2 rounds" in watched.stdout


def test_runs_watch_of_a_run_stopped_by_its_budget_says_why_and_exits_1(api: str, store: Store) -> None:
    run_id, _ = dp_checkpoint(store, DP_CONFIG, 2)
    reason = "privacy budget exhausted: ε would reach 51.2 > budget 50 at round 3"
    store.set_run_status(run_id, "stopped", reason)

    watched = _runs(api, "watch", run_id)

    assert watched.exit_code == 1
    assert watched.stdout.splitlines()[-1] == f"run {run_id}: stopped {reason}"
    assert "privacy: ε = " in watched.stdout


def test_runs_list_has_an_epsilon_column(api: str, store: Store) -> None:
    run_id, ledger = dp_checkpoint(store, DP_CONFIG, 2)
    store.create_run("plain", CONFIG, seed=1, rounds=2)

    listed = runner.invoke(app, ["runs", "list", "--coordinator", api, "--admin-token", ADMIN], env={"COLUMNS": "200"})

    assert listed.exit_code == 0, listed.output
    [dp_row] = [line for line in listed.stdout.splitlines() if run_id in line]
    [plain_row] = [line for line in listed.stdout.splitlines() if "plain" in line]
    assert "ε" in listed.stdout
    assert f" {ledger.epsilon():.3g} " in dp_row and " - " in plain_row
