"""The federation workflow: join, inspect, fit, add and remove rows, privacy guards, schemas.

Simulated jobs talk to their nodes only through tasks and replies, as a networked job would;
the fleet tests below drive real ``NodeApp`` nodes through an ``InProcessFleet``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.naive_bayes import GaussianNB

from fedlearn.analytics import (
    LOGISTIC_STEP,
    SCHEMA,
    SUMMARIZE,
    AnalyticsJob,
    DisclosurePolicy,
    FederatedGaussianNB,
    FederatedLinearRegression,
    FederatedLogisticRegression,
    FederatedPCA,
    HistogramSpec,
    analytics_handlers,
    table_from_dataset,
)
from fedlearn.client.node_app import NodeApp
from fedlearn.core import ConfigError, ParamSet, PrivacyError, QuorumError, Reply, Task
from fedlearn.data.dataset import Dataset
from fedlearn.simulation.inprocess import InProcessFleet
from tests.analytics import exact
from tests.analytics.conftest import OPEN, assert_close, load, random_split

NAMES = tuple(f"f{i}" for i in range(10))


def _columns(x: np.ndarray, y: np.ndarray, names: tuple[str, ...] = NAMES, target: str = "y") -> dict[str, np.ndarray]:
    return {**{n: x[:, i] for i, n in enumerate(names)}, target: y}


def _regression_job(nodes: int = 4, seed: int = 0) -> tuple[AnalyticsJob, np.ndarray, np.ndarray, list[np.ndarray]]:
    x, y = load("regression", "diabetes")
    parts = random_split(len(x), nodes, seed)
    job = AnalyticsJob(columns=NAMES, target="y")
    for i, part in enumerate(parts):
        job.join(f"node-{i}", _columns(x[part], y[part]), policy=OPEN)
    return job, x, y, parts


def test_joined_job_fits_the_pooled_linear_regression() -> None:
    job, x, y, _ = _regression_job()
    model = job.fit(FederatedLinearRegression())
    assert_close(model.coef_, LinearRegression().fit(x, y).coef_)


def test_join_accepts_a_dataset_whose_targets_answer_to_y() -> None:
    x, y = load("regression", "diabetes")
    job = AnalyticsJob(columns=NAMES, target="y")
    assert job.join("a", Dataset(x=x, y=y, task="regression", feature_names=NAMES)) == len(x)


def test_inspect_reports_members_rows_and_agreeing_schemas() -> None:
    job, _, _, parts = _regression_job()
    report = job.inspect()
    assert [m.node_id for m in report.members] == [f"node-{i}" for i in range(4)]
    assert [m.rows for m in report.members] == [len(p) for p in parts]
    assert report.total_rows == 442
    assert report.schema_agrees
    assert report.members[0].types["f0"] == "float"


def test_inspect_detects_missing_columns_and_type_mismatches() -> None:
    x, y = load("regression", "diabetes")
    job = AnalyticsJob(columns=NAMES[:2], target="y")
    job.join("a", _columns(x[:200], y[:200]))
    job.join("b", {**_columns(x[200:], y[200:]), "f1": (x[200:, 1] > 0).astype(np.int64)})
    report = job.inspect()
    assert not report.schema_agrees
    assert report.problems == ("column 'f1' has different types across nodes (a: float; b: int)",)


def test_schema_reply_carries_only_type_codes_of_the_asked_columns() -> None:
    handlers = analytics_handlers({"main": {"secret_ssn": np.arange(30), "age": np.arange(30.0)}})
    node = NodeApp(node_id="a", trainer=object(), handlers=handlers)  # type: ignore[arg-type]
    reply = node.handle(Task(kind=SCHEMA, round=1, config={"dataset": "main", "columns": '["age", "income"]'}))
    assert reply.ok
    assert list(reply.params) == ["types"]
    assert reply.params["types"].tolist() == [2, 0]  # float, missing: no names, no rows, nothing else


@pytest.mark.parametrize(
    ("scaling", "reason"),
    [
        ({"shift": np.zeros(2), "scale": np.ones(3)}, "task params 'scale' must have shape (2,); got (3,)"),
        ({"shift": np.zeros(2)}, "task params 'scale' must have shape (2,); got nothing"),
        ({"shift": np.zeros(2), "scale": np.array([1.0, 0.0])}, "`scale` finite and positive"),
    ],
    ids=["shape", "missing", "zero"],
)
def test_logistic_step_refuses_a_malformed_feature_scaling(scaling: dict[str, np.ndarray], reason: str) -> None:
    rows = {"a": np.arange(30.0), "b": np.arange(30.0) ** 2, "y": np.arange(30) % 2}
    node = NodeApp(node_id="n", handlers=analytics_handlers({"main": rows}))
    config = {"dataset": "main", "spec": '{"columns": ["a", "b"], "target": "y"}', "classes": "[0, 1]"}
    params = ParamSet({"theta": np.zeros((1, 3)), **scaling})
    reply = node.handle(Task(kind=LOGISTIC_STEP, round=1, config=config, params=params))
    assert reply.error is not None and reason in reply.error


def test_joining_without_a_required_column_fails_with_the_nodes_reason() -> None:
    job = AnalyticsJob(columns=("age",), target="y")
    with pytest.raises(ConfigError, match=r"^node 'a': column 'age' is not available on this node$"):
        job.join("a", {"height": np.arange(20.0), "y": np.arange(20.0)})
    assert job.members == ()


def test_node_refuses_to_share_a_summary_below_the_default_threshold() -> None:
    x, y = load("regression", "diabetes")
    job = AnalyticsJob(columns=NAMES, target="y")
    with pytest.raises(PrivacyError, match=r"a summary: it covers fewer than 15 rows, the privacy threshold"):
        job.join("small", _columns(x[:14], y[:14]))


def test_node_shares_at_the_threshold_and_operators_can_raise_it() -> None:
    x, y = load("regression", "diabetes")
    job = AnalyticsJob(columns=NAMES, target="y")
    assert job.join("ok", _columns(x[:15], y[:15])) == 15
    with pytest.raises(PrivacyError, match=r"fewer than 100 rows.*change it with `min_rows` in its \[policy\]"):
        job.join("strict", _columns(x[15:60], y[15:60]), policy=DisclosurePolicy(min_rows=100))


def test_per_class_statistics_of_a_rare_class_are_refused() -> None:
    x, y = load("classification", "iris")
    rows = np.concatenate([np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:3]])
    job = AnalyticsJob(columns=("a", "b", "c", "d"), target="y", task="classification")
    with pytest.raises(PrivacyError, match="a class has fewer than 9 rows"):
        job.join("a", _columns(x[rows], y[rows], ("a", "b", "c", "d")))


def test_adding_rows_equals_refitting_the_pooled_data() -> None:
    job, x, y, parts = _regression_job(nodes=3, seed=1)
    extra_x, extra_y = x[:40] * 1.5, y[:40] + 7.0
    assert job.add("node-1", _columns(extra_x, extra_y)) == len(parts[1]) + 40
    model = job.fit(FederatedLinearRegression())
    ref = LinearRegression().fit(np.vstack([x, extra_x]), np.concatenate([y, extra_y]))
    assert_close(model.coef_, ref.coef_)
    assert_close(model.intercept_, ref.intercept_)


def test_removing_rows_equals_refitting_the_pooled_data_and_restores_extrema() -> None:
    job, x, y, parts = _regression_job(nodes=3, seed=2)
    node_rows = parts[0]
    gone = node_rows[np.argsort(y[node_rows])[-20:]]  # the 20 largest targets: the max must move
    assert job.remove("node-0", _columns(x[gone], y[gone])) == len(node_rows) - 20
    kept = np.setdiff1d(np.arange(len(x)), gone)
    model = job.fit(FederatedLinearRegression())
    assert_close(model.coef_, LinearRegression().fit(x[kept], y[kept]).coef_)
    assert job.summary.moments.max[-1] == y[kept].max()  # rescanned on the node, not left unknown
    assert job.summary.count == len(kept)


def test_a_removal_takes_histograms_from_the_nodes_rescan_of_the_rows_it_keeps() -> None:
    x, y = load("regression", "diabetes")
    job = AnalyticsJob(columns=NAMES, target="y", histograms=[HistogramSpec(column="y", low=0, high=400, bins=8)])
    job.join("a", _columns(x, y), policy=DisclosurePolicy(min_rows=12))

    job.remove("a", _columns(x[:100], y[:100]))

    kept = np.histogram(y[100:], bins=8, range=(0, 400))[0]
    np.testing.assert_array_equal(job.summary.histograms[0].in_range, np.where(kept >= 12, kept, 0))


def test_removal_keeps_full_accuracy_on_ill_conditioned_data_because_the_node_refactors_what_it_keeps() -> None:
    x, y = exact.ill_conditioned(300, 5, 1e6)
    names = NAMES[:5]
    job = AnalyticsJob(columns=names, target="y")
    job.join("a", _columns(x[:200], y[:200], names), policy=OPEN)
    job.join("b", _columns(x[200:], y[200:], names), policy=OPEN)

    job.remove("a", _columns(x[:60], y[:60], names))

    coef, _ = exact.least_squares(x[60:], y[60:])
    assert job.summary.factor.known
    model = job.fit(FederatedLinearRegression())
    assert np.linalg.norm(model.coef_ - coef) < 1e-8 * np.linalg.norm(coef)


def _tampered(params: ParamSet, name: str = "moments/factor/r") -> ParamSet:
    """Params whose R factor ``name`` has an entry below the diagonal, as a hostile node might send."""
    r = np.array(params[name])
    r[-1, 0] = 1.0
    return ParamSet({**params.to_dict(), name: r})


def test_a_node_sending_a_malformed_r_factor_is_rejected_with_the_reason() -> None:
    x, y = load("regression", "diabetes")
    honest = analytics_handlers({"clinic": _columns(x, y)})

    def hostile(task: Task, app: NodeApp) -> Reply:
        reply = honest[SUMMARIZE](task, app)
        return replace(reply, params=_tampered(reply.params))

    fleet = InProcessFleet(["evil"], lambda node_id: NodeApp(node_id=node_id, handlers={SUMMARIZE: hostile}))
    job = AnalyticsJob(columns=NAMES, target="y", fleet=fleet)
    with pytest.raises(QuorumError, match=r"evil: rejected: R factor: r must be upper triangular; got 1.0 below"):
        job.join("evil", "clinic")
    assert job.members == ()


def test_a_removal_whose_remaining_r_factor_is_malformed_is_rejected_and_changes_nothing() -> None:
    x, y = load("regression", "diabetes")
    datasets = {"main": _columns(x, y), "gone": _columns(x[:40], y[:40])}
    honest = analytics_handlers(datasets)

    def hostile(task: Task, app: NodeApp) -> Reply:
        reply = honest[SUMMARIZE](task, app)
        if "remaining" not in task.config:
            return reply
        return replace(reply, params=_tampered(reply.params, "remaining/factor/r"))

    fleet = InProcessFleet(["evil"], lambda node_id: NodeApp(node_id=node_id, handlers={SUMMARIZE: hostile}))
    job = AnalyticsJob(columns=NAMES, target="y", fleet=fleet)
    job.join("evil", "main")
    datasets["main"] = _columns(x[40:], y[40:])  # the node deletes the rows, then the job is told
    with pytest.raises(QuorumError, match=r"evil: rejected: R factor: r must be upper triangular"):
        job.remove("evil", "gone")
    assert job.summary.count == len(x)


def test_other_nodes_are_not_asked_when_one_node_adds_rows() -> None:
    job, x, y, _ = _regression_job(nodes=3)
    before = job.member("node-2").summary
    job.add("node-0", _columns(x[:30], y[:30]))
    assert job.member("node-2").summary is before


def test_a_removal_that_would_leave_too_few_rows_is_refused_and_changes_nothing() -> None:
    x, y = load("regression", "diabetes")
    job = AnalyticsJob(columns=NAMES, target="y")
    job.join("a", _columns(x[:40], y[:40]))
    with pytest.raises(PrivacyError, match="rows left after the removal"):
        job.remove("a", _columns(x[:30], y[:30]))
    assert job.summary.count == 40
    assert job.remove("a", _columns(x[:25], y[:25])) == 15  # 15 rows left: at the threshold


def test_adding_a_batch_below_the_threshold_is_refused() -> None:
    """The difference of two summaries is a summary of the batch, so the batch must pass too."""
    x, y = load("regression", "diabetes")
    job = AnalyticsJob(columns=NAMES, target="y")
    job.join("a", _columns(x[:100], y[:100]))
    with pytest.raises(PrivacyError, match="a summary: it covers fewer than 15 rows"):
        job.add("a", _columns(x[100:103], y[100:103]))
    assert job.summary.count == 100


def test_classification_job_fits_naive_bayes_and_logistic_regression() -> None:
    x, y = load("classification", "wine", standardize=True)
    names = tuple(f"c{i}" for i in range(13))
    job = AnalyticsJob(columns=names, target="label", task="classification")
    for i, part in enumerate(random_split(len(x), 3, 7)):
        job.join(f"n{i}", _columns(x[part], y[part], names, "label"), policy=OPEN)
    nb = job.fit(FederatedGaussianNB())
    assert_close(nb.predict_proba(x), GaussianNB().fit(x, y).predict_proba(x))
    logistic = job.fit(FederatedLogisticRegression(C=0.5))
    ref = LogisticRegression(C=0.5, solver="newton-cholesky", tol=1e-14, max_iter=1000).fit(x, y)
    assert_close(logistic.coef_, ref.coef_)


def test_logistic_regression_needs_a_classification_job() -> None:
    job, _, _, _ = _regression_job(nodes=2)
    with pytest.raises(ConfigError, match="task='classification'"):
        job.fit(FederatedLogisticRegression())


def test_histogram_uses_global_extrema_as_the_shared_bins() -> None:
    job, _, y, _ = _regression_job(nodes=5)
    hist = job.histogram("y", bins=6)
    np.testing.assert_array_equal(hist.in_range, np.histogram(y, bins=6)[0])


def test_job_over_a_fleet_of_node_apps_uses_named_datasets() -> None:
    """The networked path: nodes exist on their own and hold named datasets the job refers to."""
    x, y = load("regression", "diabetes")
    parts = random_split(len(x), 3, 9)
    datasets = {
        f"n{i}": {
            "clinic": table_from_dataset(
                Dataset(x=x[p], y=y[p], task="regression", feature_names=NAMES), target="progression"
            )
        }
        for i, p in enumerate(parts)
    }

    def node(node_id: str) -> NodeApp:
        return NodeApp(node_id=node_id, trainer=object(), handlers=analytics_handlers(datasets[node_id]))  # type: ignore[arg-type]

    fleet = InProcessFleet(list(datasets), node)
    job = AnalyticsJob(columns=NAMES, target="progression", fleet=fleet)
    for node_id in datasets:
        job.join(node_id, "clinic")
    assert_close(job.fit(FederatedLinearRegression()).coef_, LinearRegression().fit(x, y).coef_)
    with pytest.raises(ConfigError, match="over a fleet, data must be a dataset name"):
        job.join("n9", {"f0": np.ones(3)})


def test_job_input_errors_name_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match="`task` must be one of regression, classification; got 'clustering'"):
        AnalyticsJob(columns=("a",), task="clustering")  # type: ignore[arg-type]
    job = AnalyticsJob(columns=("a",))
    with pytest.raises(ConfigError, match="no node has joined"):
        job.fit(FederatedPCA())
    with pytest.raises(ConfigError, match="has not joined"):
        job.add("ghost", {"a": np.ones(10)})
    job.join("a", {"a": np.arange(10.0)})
    with pytest.raises(ConfigError, match="already joined"):
        job.join("a", {"a": np.arange(10.0)})
    with pytest.raises(ConfigError, match="must be one of the analytics estimators; got LinearRegression"):
        job.fit(LinearRegression())


@pytest.mark.parametrize("timeout", [0, -1.0, math.inf])
def test_job_timeout_must_be_a_positive_finite_number_of_seconds(timeout: float) -> None:
    with pytest.raises(ConfigError, match=r"`timeout` must be in \(0, inf\); got"):
        AnalyticsJob(columns=("a",), timeout=timeout)
