"""Differentially private analytics end to end: models near the exact ones at large ε, and every refusal."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.naive_bayes import GaussianNB

from fedlearn.analytics import (
    ArrayTable,
    DisclosurePolicy,
    DPRequest,
    FederatedCovariance,
    FederatedGaussianNB,
    FederatedLinearRegression,
    FederatedLogisticRegression,
    FederatedPCA,
    PrivateAnalyticsJob,
    SummarySpec,
    analytics_handlers,
)
from fedlearn.analytics.handlers import LOGISTIC_STEP, SCHEMA, SUMMARIZE, audit_fields
from fedlearn.client.budget import NodeBudget
from fedlearn.client.node_app import NodeApp
from fedlearn.client.node_privacy import NodePrivacy
from fedlearn.core.errors import ConfigError, PrivacyError
from fedlearn.core.messages import DP_DELTA_KEY, DP_NOISE_MULTIPLIER_KEY, Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.privacy.ledger import Charge, PrivacyLedger
from fedlearn.privacy.noise import NoiseSource, SeededNoise

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3000, 3))
Y = X @ np.array([1.0, 2.0, -1.0]) + 0.5 + RNG.normal(scale=0.1, size=3000)
COLUMNS = ("a", "b", "c")
BOUNDS = {"a": (-4.0, 4.0), "b": (-4.0, 4.0), "c": (-4.0, 4.0), "y": (-12.0, 12.0)}
LOOSE = DisclosurePolicy(bounds=BOUNDS, max_release_epsilon=1e4)
"""A node allowing very large ε: for tests that the statistics approach the exact ones."""
POLICY = DisclosurePolicy(bounds=BOUNDS)


def _data(rows: slice, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    data = {c: X[rows, i] for i, c in enumerate(COLUMNS)}
    data["y"] = Y[rows] if labels is None else labels[rows]
    return data


LABELS = (X[:, 0] + X[:, 1] > 0).astype(float)


def _job(
    dp: DPRequest, *, policy: DisclosurePolicy = LOOSE, nodes: int = 3, classes: tuple[int, ...] = ()
) -> PrivateAnalyticsJob:
    """``nodes`` simulated members holding equal parts of the rows; a classification of LABELS with ``classes``."""
    task = "classification" if classes else "regression"
    job = PrivateAnalyticsJob(columns=COLUMNS, target="y", task=task, classes=classes, dp=dp, seed=1)
    size = len(X) // nodes
    for i in range(nodes):
        rows = slice(i * size, (i + 1) * size)
        job.join(f"n{i}", _data(rows, LABELS if classes else None), policy=policy)
    return job


LARGE = DPRequest(epsilon=2000.0)


# results approach the exact ones at large ε ------------------------------------------------


def test_private_job_large_epsilon_linear_regression_matches_sklearn() -> None:
    model = _job(LARGE).fit(FederatedLinearRegression())
    reference = LinearRegression().fit(X, Y)
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=0.02)
    assert model.intercept_ == pytest.approx(reference.intercept_, abs=0.02)


def test_private_job_large_epsilon_means_and_covariance_match_exact() -> None:
    job = _job(LARGE)
    np.testing.assert_allclose(job.summary.features.mean, X.mean(axis=0), atol=0.01)
    covariance = job.fit(FederatedCovariance()).covariance_
    np.testing.assert_allclose(covariance, np.cov(X.T, bias=True), atol=0.02)


def test_private_job_large_epsilon_pca_matches_sklearn() -> None:
    model = _job(LARGE).fit(FederatedPCA(n_components=2))
    reference = PCA(n_components=2).fit(X)
    np.testing.assert_allclose(model.explained_variance_, reference.explained_variance_, rtol=0.05)


def test_private_job_large_epsilon_gaussian_nb_matches_sklearn() -> None:
    model = _job(LARGE, classes=(0, 1)).fit(FederatedGaussianNB())
    reference = GaussianNB().fit(X, LABELS)
    np.testing.assert_allclose(model.theta_, reference.theta_, atol=0.02)
    assert np.mean(model.predict(X) == reference.predict(X)) > 0.98


def test_private_job_large_epsilon_histogram_counts_are_close() -> None:
    histogram = _job(LARGE).histogram("a", bins=8)
    exact, _ = np.histogram(X[:, 0], bins=8, range=(-4, 4))
    np.testing.assert_allclose(histogram.in_range, exact, atol=5)


def test_private_job_small_epsilon_is_noisy_but_finite() -> None:
    model = _job(DPRequest(epsilon=1.0), policy=POLICY).fit(FederatedLinearRegression())
    assert np.isfinite(model.coef_).all()


def test_private_job_same_seed_gives_the_same_summary() -> None:
    first, second = _job(DPRequest(epsilon=1.0), policy=POLICY), _job(DPRequest(epsilon=1.0), policy=POLICY)
    np.testing.assert_array_equal(first.summary.moments.comoment, second.summary.moments.comoment)


def test_private_job_huge_row_moves_the_mean_by_at_most_the_bound_over_n() -> None:
    rows = _data(slice(0, 500))
    poisoned = {c: np.append(v, 1e12) for c, v in rows.items()}
    means = []
    for data in (rows, poisoned):  # the same seed: the same noise on both releases
        job = PrivateAnalyticsJob(columns=COLUMNS, target="y", dp=DPRequest(epsilon=1.0), seed=5)
        job.join("n0", data, policy=POLICY)
        means.append(job.summary.moments.mean)
    width = np.array([high - low for low, high in BOUNDS.values()])
    assert (np.abs(means[1] - means[0]) <= width / 500).all()


def test_private_job_epsilon_composes_each_nodes_releases() -> None:
    job = _job(DPRequest(epsilon=1.0), policy=POLICY)
    job.histogram("b", bins=4)
    assert len(job.releases) == 6
    ledger = PrivacyLedger(delta=1e-5).plus(Charge(noise_multiplier=job.dp.multiplier, count=2))
    assert job.epsilon() == pytest.approx(ledger.epsilon())
    assert job.releases[0].epsilon == pytest.approx(1.0, rel=1e-3)


def test_private_job_inspect_reports_noisy_counts_and_bounded_types() -> None:
    report = _job(DPRequest(epsilon=1.0), policy=POLICY).inspect()
    assert abs(report.total_rows - len(X)) < 100
    assert report.schema_agrees


def test_private_job_logistic_regression_is_refused() -> None:
    with pytest.raises(ConfigError, match="Newton"):
        _job(LARGE, nodes=1).fit(FederatedLogisticRegression())


# refusals ------------------------------------------------------------------------------------


def test_private_job_column_without_bounds_is_refused() -> None:
    policy = DisclosurePolicy(bounds={k: v for k, v in BOUNDS.items() if k != "c"})
    with pytest.raises(PrivacyError, match=r"'c'.*no\s+bounds"):
        _job(DPRequest(epsilon=1.0), policy=policy, nodes=1)


def test_private_job_classification_without_classes_is_refused() -> None:
    with pytest.raises(ConfigError, match="classes"):
        PrivateAnalyticsJob(columns=COLUMNS, target="y", task="classification", dp=LARGE)


def test_dp_request_needs_exactly_one_of_epsilon_and_noise_multiplier() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        DPRequest(epsilon=1.0, noise_multiplier=1.0)


def _strict_node(task: Task) -> Reply:
    handlers = analytics_handlers({"main": ArrayTable(_data(slice(0, 100)))}, policy=POLICY, require_dp=True)
    return handlers[task.kind](task, NodeApp(node_id="n0", handlers=handlers))


def test_require_dp_node_refuses_a_noiseless_summary() -> None:
    task = Task(kind=SUMMARIZE, round=1, config={"dataset": "main", "spec": SummarySpec(columns=COLUMNS).to_json()})
    with pytest.raises(PrivacyError, match="releases no noiseless statistic"):
        _strict_node(task)


def test_require_dp_node_refuses_a_newton_step() -> None:
    spec = SummarySpec(columns=COLUMNS, target="y", by_class=True).to_json()
    task = Task(kind=LOGISTIC_STEP, round=1, config={"dataset": "main", "spec": spec, "classes": "[0, 1]"},
                params=ParamSet({"theta": np.zeros((1, 4))}))  # fmt: skip
    with pytest.raises(PrivacyError, match="releases no noiseless statistic"):
        _strict_node(task)


def test_require_dp_schema_shows_only_bounded_columns_as_float() -> None:
    data = {**_data(slice(0, 100)), "secret": np.arange(100)}
    handlers = analytics_handlers({"main": ArrayTable(data)}, policy=POLICY, require_dp=True)
    task = Task(kind=SCHEMA, round=1, config={"dataset": "main", "columns": json.dumps(["a", "secret", "y"])})
    reply = handlers[SCHEMA](task, NodeApp(node_id="n0", handlers=handlers))
    assert reply.params["types"].tolist() == [2, 0, 2]  # float, missing, float


def test_require_dp_node_answers_a_private_job() -> None:
    job = PrivateAnalyticsJob(columns=COLUMNS, target="y", dp=DPRequest(epsilon=1.0), seed=0)
    release = job.join("n0", _data(slice(0, 500)), policy=POLICY, require_dp=True)
    assert release.epsilon == pytest.approx(1.0, rel=1e-3)


# the budget hook -----------------------------------------------------------------------------


class WatchedTable:
    """An in-memory table that records whether any row was read."""

    def __init__(self, data: Mapping[str, np.ndarray]) -> None:
        self.table = ArrayTable(data)
        self.read = False

    def schema(self) -> Mapping[str, str]:
        return self.table.schema()

    def chunks(self, columns: Sequence[str], chunk_rows: int = 10_000) -> Iterator[np.ndarray]:
        self.read = True
        return self.table.chunks(columns, chunk_rows)


def _node_budget(path: Path, epsilon: float) -> NodePrivacy:
    """The node's real policy and lifetime budget, with its ledger in a file, as a deployed node holds them."""
    return NodePrivacy(budget=NodeBudget.open(path / "ledger.json", epsilon=epsilon))


def test_budget_refusal_reads_no_row_and_releases_nothing(tmp_path: Path) -> None:
    table = WatchedTable(_data(slice(0, 100)))
    budget = _node_budget(tmp_path, epsilon=0.5)
    job = PrivateAnalyticsJob(columns=COLUMNS, target="y", dp=DPRequest(epsilon=1.0), seed=0)
    with pytest.raises(PrivacyError, match="lifetime budget"):
        job.join("n0", table, policy=POLICY, budget=budget)
    assert not table.read and job.releases == [] and job.members == ()


def test_budget_stops_repeated_releases(tmp_path: Path) -> None:
    budget = _node_budget(tmp_path, epsilon=3.0)
    job = PrivateAnalyticsJob(columns=COLUMNS, target="y", dp=DPRequest(epsilon=1.0), seed=0)
    job.join("n0", _data(slice(0, 500)), policy=POLICY, budget=budget)
    with pytest.raises(PrivacyError, match="lifetime budget"):
        for _ in range(20):
            job.histogram("a", bins=4)
    ledger = budget.budget.ledger  # type: ignore[union-attr]
    assert 2 <= sum(charge.count for charge in ledger.charges) < 20
    assert ledger.epsilon() <= 3.0


# attacks: a coordinator asking the node directly ----------------------------------------------


def _ask(config: Mapping[str, object], *, policy: DisclosurePolicy = POLICY) -> Reply:
    handlers = analytics_handlers(
        {"main": ArrayTable(_data(slice(0, 200)))}, policy=policy, noise=lambda task: _seeded()
    )
    base = {"dataset": "main", "spec": SummarySpec(columns=COLUMNS, target="y").to_json(), DP_DELTA_KEY: 1e-5}
    task = Task(kind=SUMMARIZE, round=1, config={**base, **config})
    return handlers[SUMMARIZE](task, NodeApp(node_id="n0", handlers=handlers))


def _seeded() -> NoiseSource:
    return SeededNoise(np.random.default_rng(0))


@pytest.mark.parametrize("z", [0.0, -1.0, math.nan, math.inf, "1.0", True])
def test_attack_invalid_noise_multiplier_is_refused(z: object) -> None:
    with pytest.raises(PrivacyError, match="noise_multiplier"):
        _ask({DP_NOISE_MULTIPLIER_KEY: z})


def test_attack_tiny_noise_multiplier_is_refused_by_the_release_cap() -> None:
    with pytest.raises(PrivacyError, match="at most ε = 10 per release"):
        _ask({DP_NOISE_MULTIPLIER_KEY: 1e-3})


def test_attack_large_delta_is_refused() -> None:
    with pytest.raises(ConfigError, match="delta"):
        _ask({DP_NOISE_MULTIPLIER_KEY: 1.0, DP_DELTA_KEY: 0.5})


def test_attack_fine_histogram_bins_are_refused() -> None:
    spec = SummarySpec(columns=("a",), histograms=())
    spec_json = json.loads(spec.to_json()) | {"histograms": [["a", -4, 4, 100_000]]}
    with pytest.raises(ConfigError, match="refusing 100000 histogram bins"):
        _ask({DP_NOISE_MULTIPLIER_KEY: 1.0, "spec": json.dumps(spec_json), "histograms_only": True})


def test_attack_removal_rescan_under_dp_is_refused() -> None:
    with pytest.raises(PrivacyError, match="rescan"):
        _ask({DP_NOISE_MULTIPLIER_KEY: 1.0, "remaining": "main"})


def test_attack_too_many_classes_are_refused() -> None:
    spec = SummarySpec(columns=COLUMNS, target="y", by_class=True).to_json()
    classes = json.dumps(list(range(5000)))
    with pytest.raises(ConfigError, match="refusing 5000 classes"):
        _ask({DP_NOISE_MULTIPLIER_KEY: 1.0, "spec": spec, "classes": classes})


def test_dp_reply_releases_no_exact_count_and_is_audited() -> None:
    config = {DP_NOISE_MULTIPLIER_KEY: 2.0}
    reply = _ask(config)
    assert reply.num_examples == 0 and "moments/count" not in reply.params
    task = Task(kind=SUMMARIZE, round=1, config={"dataset": "main", DP_DELTA_KEY: 1e-5, **config})
    assert audit_fields(task, reply)["dp"]["epsilon"] == pytest.approx(float(reply.params["epsilon"]))
