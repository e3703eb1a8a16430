"""Exact analytics under secure aggregation: pooled models from sums the coordinator sees only masked."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.naive_bayes import GaussianNB

from fedlearn.analytics import FederatedGaussianNB, FederatedLinearRegression, FederatedLogisticRegression, FederatedPCA
from fedlearn.analytics.handlers import SECURE_MOMENTS, analytics_handlers
from fedlearn.analytics.secure_job import SecureAnalyticsJob
from fedlearn.client.node_app import NodeApp
from fedlearn.core import ConfigError, QuorumError, Task
from tests.analytics.conftest import OPEN, assert_close, load, random_split

NAMES = tuple(f"f{i}" for i in range(10))


def _columns(x: np.ndarray, y: np.ndarray, names: tuple[str, ...] = NAMES) -> dict[str, np.ndarray]:
    return {**{n: x[:, i] for i, n in enumerate(names)}, "y": y}


def _regression_job(nodes: int = 4) -> tuple[SecureAnalyticsJob, np.ndarray, np.ndarray]:
    x, y = load("regression", "diabetes")
    x = x * 10 + 100  # far from zero: centring at the pooled mean keeps every digit
    job = SecureAnalyticsJob(columns=NAMES, target="y")
    for i, part in enumerate(random_split(len(x), nodes, 2)):
        job.join(f"node-{i}", _columns(x[part], y[part]), policy=OPEN)
    return job, x, y


def test_secure_job_fits_the_pooled_linear_regression_and_pca() -> None:
    job, x, y = _regression_job()

    linear = job.fit(FederatedLinearRegression())

    reference = LinearRegression().fit(x, y)
    assert_close(linear.coef_, reference.coef_, rtol=1e-9)
    assert_close([linear.intercept_], [reference.intercept_], rtol=1e-9)
    assert [(r.survived, r.dropped) for r in job.rounds] == [(4, 0), (4, 0)]
    features = SecureAnalyticsJob(columns=NAMES)
    for i, part in enumerate(random_split(len(x), 3, 5)):
        features.join(f"node-{i}", {n: x[part, j] for j, n in enumerate(NAMES)}, policy=OPEN)
    pca = features.fit(FederatedPCA(n_components=4))
    theirs = PCA(n_components=4).fit(x)
    ours, reference = pca.components_, theirs.components_
    assert_close(ours * np.sign(ours[:, :1]), reference * np.sign(reference[:, :1]), rtol=1e-9)


def test_secure_job_fits_the_pooled_gaussian_nb() -> None:
    x, y = load("classification", "wine")
    names = tuple(f"f{i}" for i in range(x.shape[1]))
    job = SecureAnalyticsJob(columns=names, target="y", task="classification", classes=(0, 1, 2))
    for i, part in enumerate(random_split(len(x), 3, 1)):
        job.join(f"node-{i}", _columns(x[part], y[part], names), policy=OPEN)

    model = job.fit(FederatedGaussianNB())

    reference = GaussianNB().fit(x, y)
    assert_close(model.theta_, reference.theta_, rtol=1e-9)
    assert_close(model.var_, reference.var_, rtol=1e-9)


def test_the_summary_is_summed_once_and_again_only_after_a_change() -> None:
    job, _, _ = _regression_job(3)

    first = job.summary
    assert job.summary is first and len(job.rounds) == 2
    job.refresh()

    assert job.summary.count == first.count and len(job.rounds) == 4


def test_two_members_are_refused_since_each_could_read_the_other() -> None:
    job, _, _ = _regression_job(2)

    with pytest.raises(ConfigError, match="at least 3 members"):
        job.fit(FederatedLinearRegression())


def test_a_member_below_its_privacy_threshold_fails_the_round_with_its_reason() -> None:
    x, y = load("regression", "diabetes")
    job = SecureAnalyticsJob(columns=NAMES, target="y")
    for i, part in enumerate(random_split(len(x), 3, 2)):
        job.join(f"node-{i}", _columns(x[part], y[part]), policy=OPEN)
    job.join("tiny", _columns(x[:3], y[:3]))  # the default policy: at least features + 5 rows

    with pytest.raises(QuorumError, match=r"tiny.*fewer than 15 rows"):
        job.fit(FederatedLinearRegression())


def test_logistic_regression_is_refused_under_secure_aggregation_with_the_reason() -> None:
    job, _, _ = _regression_job(3)

    with pytest.raises(ConfigError, match="Newton rounds are not offered"):
        job.fit(FederatedLogisticRegression())  # type: ignore[arg-type]


def test_a_coordinator_asking_for_secure_moments_in_the_clear_is_refused() -> None:
    x, y = load("regression", "diabetes")
    node = NodeApp(node_id="n", handlers=analytics_handlers({"main": _columns(x, y)}, policy=OPEN))
    task = Task(kind=SECURE_MOMENTS, round=1, config={"dataset": "main", "pass": 1, "classes": "[]",
                                                       "spec": '{"columns": ["f0"], "target": "y"}'})  # fmt: skip

    reply = node.handle(task)

    assert reply.error is not None and "only inside secure aggregation" in reply.error
