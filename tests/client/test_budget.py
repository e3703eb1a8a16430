"""NodeBudget: a node's lifetime ledger in a file, charged before any release and never silently reset."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fedlearn.client.budget import NodeBudget, PrivacyBudget
from fedlearn.core.errors import ConfigError, PrivacyError
from fedlearn.privacy.ledger import Charge, PrivacyLedger

CHARGE = Charge(noise_multiplier=1.0)


def _open(path: Path, epsilon: float = 10.0) -> NodeBudget:
    return NodeBudget.open(path, epsilon=epsilon, delta=1e-5)


def test_node_budget_first_open_creates_an_empty_owner_only_ledger(tmp_path: Path) -> None:
    path = tmp_path / "n.privacy-ledger.json"

    budget = _open(path)

    assert budget.epsilon() == 0.0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["ledger"]["charges"] == []


def test_node_budget_spend_returns_the_ledgers_epsilon_and_records_it_durably(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    budget = _open(path)

    epsilon = budget.spend(CHARGE, what="fit task of run 'r', round 1")
    budget.close()
    reopened = _open(path)

    expected = PrivacyLedger(delta=1e-5).plus(CHARGE).epsilon()
    assert epsilon == pytest.approx(expected, rel=1e-12)
    assert reopened.epsilon() == pytest.approx(expected, rel=1e-12)
    assert json.loads(path.read_text())["log"][0]["what"] == "fit task of run 'r', round 1"


def test_node_budget_spend_past_the_budget_is_refused_naming_epsilon_budget_and_task(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    budget = _open(path, epsilon=5.0)
    budget.spend(CHARGE, what="round 1")
    before = path.read_bytes()
    would = budget.ledger.epsilon_after(CHARGE)

    with pytest.raises(PrivacyError, match=r"round 2 would bring this node's ε to (\S+), above .* budget .* = 5") as e:
        budget.spend(CHARGE, what="round 2")

    assert f"{would:.4g}" in str(e.value)
    assert path.read_bytes() == before


def test_node_budget_spent_for_names_the_charge_and_the_epsilon_after_it(tmp_path: Path) -> None:
    budget = _open(tmp_path / "ledger.json")
    first = budget.spend(CHARGE, what="a")
    second = budget.spend(CHARGE, what="b")

    charged, after = budget.spent_for("b")  # type: ignore[misc]

    assert (charged, after) == (pytest.approx(second - first), second)
    assert budget.spent_for("never") is None


@pytest.mark.parametrize(
    "content",
    ["", "{not json", '{"log": []}', '{"ledger": {"delta": 1e-5, "charges": [{"noise_multiplier": -1}]}}',
     '{"ledger": [], "log": []}', '{"ledger": {"delta": 1e-5, "charges": []}, "log": 3}'],
)  # fmt: skip
def test_node_budget_corrupt_ledger_is_refused_never_reset(tmp_path: Path, content: str) -> None:
    path = tmp_path / "ledger.json"
    path.write_text(content)

    with pytest.raises(ConfigError, match=r"is corrupt or unreadable .* empty ledger would hand back spent budget"):
        _open(path)

    assert path.read_text() == content


def test_node_budget_a_second_process_holder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    first = _open(path)

    with pytest.raises(ConfigError, match="in use by another process"):
        _open(path)

    first.close()
    _open(path).close()


def test_node_budget_meets_the_privacy_budget_protocol(tmp_path: Path) -> None:
    budget: PrivacyBudget = _open(tmp_path / "ledger.json")

    assert budget.spend(CHARGE, what="analytics") > 0


def test_node_budget_log_keeps_the_latest_entries_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fedlearn.client.budget.MAX_LOG_ENTRIES", 3)
    budget = _open(tmp_path / "ledger.json", epsilon=1e6)

    for index in range(5):
        budget.spend(Charge(noise_multiplier=100.0), what=f"task {index}")

    log = json.loads((tmp_path / "ledger.json").read_text())["log"]
    assert [entry["what"] for entry in log] == ["task 2", "task 3", "task 4"]
    assert budget.ledger.charges[0].count == 5
