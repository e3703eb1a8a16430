"""A deployed node's [privacy] section: its DP policy, its lifetime budget's ledger, and what its audit log shows."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fedlearn.client.budget import NodeBudget
from fedlearn.client.learners import build_learner
from fedlearn.client.node_privacy import system_noise
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import (
    DP_CLIP_KEY,
    DP_DELTA_KEY,
    DP_MECHANISM_KEY,
    DP_NOISE_KEY,
    DP_NOISE_MULTIPLIER_KEY,
    FIT,
    Task,
)
from fedlearn.runtime.node_config import load_node_config
from fedlearn.runtime.node_runtime import build_node
from tests.runtime.test_node_config import _config

LOCAL_DP = {DP_MECHANISM_KEY: "local", DP_CLIP_KEY: 1.0, DP_NOISE_KEY: 2.0, DP_NOISE_MULTIPLIER_KEY: 2.0,
            DP_DELTA_KEY: 1e-5, "seed": 0}  # fmt: skip


def test_without_a_privacy_section_a_node_has_no_budget_and_requires_nothing(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, ""))

    privacy = config.privacy

    assert (privacy.epsilon_budget, privacy.delta, privacy.ledger) == (None, 1e-5, None)
    assert (privacy.require_differential_privacy, privacy.min_noise_multiplier) == (False, 0.0)


def test_a_relative_ledger_lies_beside_the_node_config(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, "", "\n[privacy]\nepsilon_budget = 4.0\nledger = 'dp/l.json'\n"))

    assert config.privacy.ledger == tmp_path / "dp" / "l.json"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("epsilon_budget = -1.0", "epsilon_budget"),
        ("epsilon_budget = inf", "epsilon_budget"),
        ("delta = 1.5", "delta"),
        ("min_noise_multiplier = -0.1", "min_noise_multiplier"),
        ("require_differential_privacy = 'yes'", "require_differential_privacy"),
        ("epsilon = 3.0", "epsilon"),
    ],
)
def test_a_bad_privacy_section_fails_at_start_up(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_node_config(_config(tmp_path, "", f"\n[privacy]\n{section}\n"))


def test_a_built_node_keeps_its_ledger_beside_its_config_and_adds_system_noise(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, "", "\n[privacy]\nepsilon_budget = 30.0\nmin_noise_multiplier = 1\n"))

    node = build_node("hospital-a", config, config.load_datasets(), config_dir=tmp_path)

    ledger = tmp_path / "hospital-a.privacy-ledger.json"
    assert stat.S_IMODE(ledger.stat().st_mode) == 0o600
    assert node.app.noise is system_noise
    assert node.app.privacy.min_noise_multiplier == 1.0
    assert isinstance(node.app.privacy.budget, NodeBudget) and node.app.privacy.budget.budget == 30.0
    node.app.privacy.budget.close()


def test_a_budget_without_a_ledger_location_is_refused(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, "", "\n[privacy]\nepsilon_budget = 3.0\n"))

    with pytest.raises(ConfigError, match=r"needs a ledger file: set \[privacy\] ledger"):
        build_node("n", config, config.load_datasets())


def test_a_node_with_a_corrupt_ledger_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "n.privacy-ledger.json").write_text('{"ledger": {"delta": 1e-5, "charges": [{"rho": "x"}]}}')
    config = load_node_config(_config(tmp_path, "", "\n[privacy]\nepsilon_budget = 3.0\n"))

    with pytest.raises(ConfigError, match="corrupt or unreadable"):
        build_node("n", config, config.load_datasets(), config_dir=tmp_path)


def test_the_audit_log_records_the_epsilon_each_dp_task_charged(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    extra = f"\n[policy]\naudit_log = '{log}'\n\n[privacy]\nepsilon_budget = 30.0\n"
    config = load_node_config(_config(tmp_path, "", extra))
    datasets = config.load_datasets()
    node = build_node("n", config, datasets, config_dir=tmp_path)
    params = build_learner("numpy.softmax", datasets["digits"]).init_params(0)

    replies = [node.handle(Task(kind=FIT, round=r, run_id="run-1", params=params, config=LOCAL_DP)) for r in (1, 2)]
    plain = node.handle(Task(kind=FIT, round=3, run_id="run-1", params=params, config={"seed": 0}))

    start, first, second, third = (json.loads(line) for line in log.read_text().splitlines())
    assert all(r.ok for r in replies) and not plain.ok  # a budget cannot cover a release without noise
    assert start["policy"]["privacy"]["epsilon_budget"] == 30.0 and start["policy"]["privacy"]["epsilon_spent"] == 0
    assert first["epsilon_charged"] == pytest.approx(first["epsilon"])
    assert 0 < first["epsilon"] < second["epsilon"]
    assert second["epsilon_charged"] == pytest.approx(second["epsilon"] - first["epsilon"])
    assert third["outcome"] == "refused" and "epsilon" not in third


def test_a_node_that_requires_dp_refuses_a_plain_fit_and_records_why(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    extra = f"\n[policy]\naudit_log = '{log}'\n\n[privacy]\nrequire_differential_privacy = true\n"
    config = load_node_config(_config(tmp_path, "", extra))
    datasets = config.load_datasets()
    node = build_node("n", config, datasets, config_dir=tmp_path)
    params = build_learner("numpy.softmax", datasets["digits"]).init_params(0)

    reply = node.handle(Task(kind=FIT, round=1, run_id="run-1", params=params, config={"seed": 0}))

    record = json.loads(log.read_text().splitlines()[-1])
    assert not reply.ok and "requires differential privacy" in (reply.error or "")
    assert node.app.privacy.requires_differential_privacy  # what analytics handlers read
    assert record["outcome"] == "refused" and "requires differential privacy" in record["reason"]
