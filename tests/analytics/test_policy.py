"""A node under a hostile coordinator: what its disclosure policy lets a task see.

Each attack is a task a coordinator could send to a real ``NodeApp``; the node must answer with
no more than its policy allows, or refuse in words that give nothing away.
"""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from fedlearn.analytics import (
    LOGISTIC_STEP,
    SCHEMA,
    SUMMARIZE,
    AnalyticsJob,
    DisclosurePolicy,
    Histogram,
    HistogramSpec,
    SummarySpec,
    analytics_handlers,
    describe,
)
from fedlearn.client.node_app import NodeApp
from fedlearn.core import ConfigError, ParamSet, Reply, Task

ROWS = 200
RNG = np.random.default_rng(3)
CLINIC = {
    "age": RNG.integers(20, 90, ROWS).astype(np.float64),
    "income": np.arange(ROWS, dtype=np.float64) * 1000.0 + 17.0,  # every value distinct
    "ssn": RNG.integers(10**8, 10**9, ROWS),
    "label": np.arange(ROWS) % 2,
}


DEFAULT = DisclosurePolicy()


def _node(policy: DisclosurePolicy = DEFAULT, **datasets: dict[str, np.ndarray]) -> NodeApp:
    return NodeApp(node_id="clinic", handlers=analytics_handlers(datasets or {"main": CLINIC}, policy=policy))


def _ask(node: NodeApp, kind: str, params: ParamSet | None = None, **config: str) -> Reply:
    return node.handle(Task(kind=kind, round=1, config={"dataset": "main", **config}, params=params or ParamSet()))


def _summarise(node: NodeApp, spec: SummarySpec, **config: str) -> Reply:
    return _ask(node, SUMMARIZE, spec=spec.to_json(), **config)


def _histogram_spec(column: str, low: float, high: float, bins: int) -> SummarySpec:
    return SummarySpec(columns=(column,), histograms=(HistogramSpec(column=column, low=low, high=high, bins=bins),))


# -- 1. histograms ----------------------------------------------------------------------------


def test_a_bin_per_value_shows_no_single_row() -> None:
    income = CLINIC["income"]
    spec = _histogram_spec("income", float(income.min()), float(income.max()), ROWS - 1)

    reply = _summarise(_node(), spec)

    assert reply.ok, reply.error
    assert reply.params["hist/0/counts"].sum() == 0  # each bin held one row: all suppressed


def test_every_released_cell_is_zero_or_at_least_min_rows() -> None:
    spec = _histogram_spec("age", 20, 90, 30)

    counts = _summarise(_node(DisclosurePolicy(min_rows=7)), spec).params["hist/0/counts"]

    assert 0 < counts.sum() < ROWS
    assert ((counts == 0) | (counts >= 7)).all()


def test_a_lone_small_cell_hides_the_next_smallest_so_the_total_does_not_reveal_it() -> None:
    spec = HistogramSpec(column="v", low=0, high=3, bins=3)
    histogram = Histogram(edges=spec.edges(), counts=np.array([0, 50, 3, 20, 0]))

    assert histogram.suppressed(10).counts.tolist() == [0, 50, 0, 0, 0]


def test_a_request_for_2e8_bins_is_refused_before_anything_is_allocated() -> None:
    spec = _histogram_spec("age", 0, 100, 2 * 10**8)
    node = _node()

    tracemalloc.start()
    try:
        reply = _summarise(node, spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert reply.error == (
        "ConfigError: refusing 200000000 histogram bins: this node allows at most 1000 per task "
        "(`max_bins` in its [policy])"
    )
    assert peak < 20 * 2**20  # the counts alone would take 1.6 GB


def test_the_bin_cap_counts_every_histogram_of_a_task() -> None:
    histograms = tuple(HistogramSpec(column="age", low=0, high=100, bins=100) for _ in range(3))
    spec = SummarySpec(columns=("age",), histograms=histograms)

    reply = _summarise(_node(DisclosurePolicy(max_bins=250)), spec)

    assert reply.error is not None and "refusing 300 histogram bins" in reply.error


def test_a_newton_step_over_a_million_classes_is_refused_before_its_hessian_is_allocated() -> None:
    spec = SummarySpec(columns=("age",), target="label")
    classes = list(range(10**6))
    params = ParamSet({"theta": np.zeros((len(classes), 2))})

    tracemalloc.start()
    try:
        reply = _ask(_node(), LOGISTIC_STEP, params, spec=spec.to_json(), classes=json.dumps(classes))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert reply.error is not None and "refusing a Newton step over 2000000 coefficients" in reply.error
    assert peak < 200 * 2**20  # the Hessian would take 32 TB


def test_a_newton_step_over_a_class_of_one_row_is_refused() -> None:
    rows = {"age": CLINIC["age"], "label": np.r_[np.arange(ROWS - 1) % 2, 2]}  # class 2: one person
    spec = SummarySpec(columns=("age",), target="label")
    params = ParamSet({"theta": np.zeros((3, 2))})

    reply = _ask(_node(main=rows), LOGISTIC_STEP, params, spec=spec.to_json(), classes="[0, 1, 2]")

    assert reply.error is not None and "Newton statistics: a class has fewer than 6 rows" in reply.error


# -- 2. extrema -------------------------------------------------------------------------------


def test_min_and_max_are_withheld_by_default_overall_and_per_class() -> None:
    spec = SummarySpec(columns=("age", "income"), target="label", by_class=True)

    params = _summarise(_node(), spec).params

    for name in ("moments/min", "moments/max", "by_class/min", "by_class/max"):
        assert np.isnan(params[name]).all(), name


def test_a_node_whose_policy_allows_extrema_releases_them() -> None:
    spec = SummarySpec(columns=("income",))

    params = _summarise(_node(DisclosurePolicy(release_extrema=True)), spec).params

    assert params["moments/min"].tolist() == [17.0]


def test_the_rows_kept_after_a_removal_are_released_without_extrema_or_small_cells() -> None:
    kept = {k: v[20:] for k, v in CLINIC.items()}
    removed = {k: v[:20] for k, v in CLINIC.items()}
    node = _node(main=kept, gone=removed)
    spec = _histogram_spec("income", 0, 200_000, 199)

    params = _summarise(node, spec, dataset="gone", remaining="main").params

    assert np.isnan(params["remaining/min"]).all() and np.isnan(params["remaining/max"]).all()
    assert params["remaining/hist/0/counts"].sum() == 0


def test_a_job_over_nodes_that_withhold_extrema_still_describes_and_bins_its_columns() -> None:
    job = AnalyticsJob(columns=("age",))
    job.join("a", {"age": CLINIC["age"][:100]})
    job.join("b", {"age": CLINIC["age"][100:]})

    table = describe(job.summary)
    histogram = job.histogram("age", bins=4)

    assert np.isnan(table.min).all() and np.isnan(table.max).all()
    mean, std = CLINIC["age"].mean(), CLINIC["age"].std()
    np.testing.assert_allclose(histogram.edges[[0, -1]], [mean - 3 * std, mean + 3 * std])
    assert histogram.counts.sum() == ROWS  # every row within three standard deviations, in cells of 6+


# -- 3. the column allow-list -----------------------------------------------------------------

ALLOWED = DisclosurePolicy(columns=["age", "income", "label"])


@pytest.mark.parametrize("guess", ["ssn", "password"])
def test_a_column_outside_the_allow_list_is_refused_as_if_it_did_not_exist(guess: str) -> None:
    reply = _summarise(_node(ALLOWED), SummarySpec(columns=("age", guess)))

    assert reply.error == f"ConfigError: column {guess!r} is not available on this node"


def test_a_schema_request_cannot_tell_a_withheld_column_from_a_missing_one() -> None:
    reply = _ask(_node(ALLOWED), SCHEMA, columns=json.dumps(["ssn", "password", "age"]))

    assert reply.params["types"].tolist() == [0, 0, 2]  # missing, missing, float


def test_the_target_is_a_column_the_allow_list_covers() -> None:
    reply = _summarise(_node(ALLOWED), SummarySpec(columns=("age",), target="ssn"))

    assert reply.error == "ConfigError: column 'ssn' is not available on this node"


def test_a_newton_step_over_a_withheld_column_is_refused() -> None:
    spec = SummarySpec(columns=("ssn",), target="label")
    params = ParamSet({"theta": np.zeros((1, 2))})

    reply = _ask(_node(ALLOWED), LOGISTIC_STEP, params, spec=spec.to_json(), classes="[0, 1]")

    assert reply.error == "ConfigError: column 'ssn' is not available on this node"


def test_without_an_allow_list_a_missing_column_is_refused_without_listing_the_others() -> None:
    reply = _summarise(_node(), SummarySpec(columns=("password",)))

    assert reply.error == "ConfigError: column 'password' is not available on this node"


@pytest.mark.parametrize("target", ["income", "age"], ids=["integral", "fractional"])
def test_a_continuous_column_named_as_classes_echoes_no_value(target: str) -> None:
    rows = {"age": CLINIC["age"] + 0.5, "income": CLINIC["income"]}  # every income is integral: a class of its own
    feature = "age" if target == "income" else "income"

    reply = _summarise(_node(main=rows), SummarySpec(columns=(feature,), target=target, by_class=True))

    assert reply.error is not None
    assert not [value for value in rows[target] if f"{value:g}" in reply.error]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"columns": "age"}, "`columns` must be a list of column names, not one string; got 'age'"),
        ({"columns": ["age", ""]}, "`columns` must hold non-empty column names; got ''"),
        ({"min_rows": -1}, "`min_rows` must be an integer >= 0; got -1"),
        ({"max_bins": 0}, "`max_bins` must be an integer >= 1; got 0"),
        ({"release_extrema": 1}, "`release_extrema` must be true or false; got 1 (int)"),
    ],
)
def test_a_bad_policy_names_the_field_what_was_expected_and_what_was_got(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        DisclosurePolicy(**fields)  # type: ignore[arg-type]

    assert str(refused.value) == message
