"""A node's NODE.toml bounds become the policy its DP handlers enforce; DP analytics requests over a fleet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from fedlearn.analytics import DisclosurePolicy, analytics_handlers
from fedlearn.analytics.remote import AnalyticsRequest, run_request
from fedlearn.client.node_app import NodeApp
from fedlearn.core.errors import ConfigError
from fedlearn.runtime.node_config import load_node_config
from fedlearn.simulation.inprocess import InProcessFleet

NODE = """
[datasets.visits]
source = "csv"
path = "visits.csv"
target = "y"
"""


def _config(tmp_path: Path, policy: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f"[policy]\n{policy}\n{NODE}")
    return path


def test_policy_bounds_from_toml_become_the_disclosure_policy(tmp_path: Path) -> None:
    config = load_node_config(
        _config(tmp_path, "bounds = { age = [0, 120], income = [0, 1e6] }\nmax_release_epsilon = 2.5")
    )

    policy = DisclosurePolicy(**config.policy.model_dump(exclude={"audit_log"}))

    assert policy.bounds == {"age": (0.0, 120.0), "income": (0.0, 1e6)}
    assert policy.max_release_epsilon == 2.5


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("bounds = { age = [120, 0] }", r"\[policy\] bounds: .*'age' must be finite with low < high"),
        ("bounds = { age = [0, inf] }", r"\[policy\] bounds: .*'age' must be finite with low < high"),
        ("bounds = { age = [0] }", r"\[policy\] bounds\.age"),
        ("max_release_epsilon = 0", r"\[policy\] max_release_epsilon: Input should be greater than 0"),
    ],
)
def test_policy_bad_bounds_fail_at_start_up_with_one_line(tmp_path: Path, policy: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_node_config(_config(tmp_path, policy))


def test_disclosure_policy_bad_bounds_are_refused_naming_the_column() -> None:
    with pytest.raises(ConfigError, match="`bounds` of column 'age'"):
        DisclosurePolicy(bounds={"age": (5.0, 5.0)})


def test_analytics_request_dp_classification_needs_classes() -> None:
    with pytest.raises(ValidationError, match="with `dp`, `classes`"):
        AnalyticsRequest(columns=["a"], target="y", task="classification", members={"n": "d"}, model="gnb",
                         dp={"epsilon": 1.0})  # fmt: skip


def test_analytics_request_dp_with_secure_is_refused() -> None:
    with pytest.raises(ValidationError, match="not offered together"):
        AnalyticsRequest(columns=["a"], members={"n": "d"}, model="pca", secure=True, dp={"epsilon": 1.0})


def test_analytics_request_dp_logistic_is_refused() -> None:
    with pytest.raises(ValidationError, match="not offered with `dp`"):
        AnalyticsRequest(columns=["a"], target="y", task="classification", members={"n": "d"}, model="logistic",
                         classes=[0, 1], dp={"noise_multiplier": 2.0})  # fmt: skip


def test_run_request_with_dp_reports_the_privacy_spent() -> None:
    rng = np.random.default_rng(0)
    tables = {f"node-{i}": {"a": rng.normal(size=300), "y": rng.normal(size=300)} for i in range(2)}
    policy = DisclosurePolicy(bounds={"a": (-3.0, 3.0), "y": (-3.0, 3.0)})
    fleet = InProcessFleet(
        list(tables),
        lambda node: NodeApp(node_id=node, handlers=analytics_handlers({"rows": tables[node]}, policy=policy)),
    )
    request = AnalyticsRequest(columns=["a"], target="y", members={n: "rows" for n in tables}, model="linear",
                               dp={"epsilon": 1.0})  # fmt: skip
    try:
        result = run_request(request, fleet)
    finally:
        fleet.close()
    assert result["privacy"]["epsilon"] == pytest.approx(1.0, rel=1e-3)
    assert [r["node"] for r in result["privacy"]["releases"]] == list(tables)
    assert np.isfinite(result["attributes"]["coef_"]).all()
