"""Summaries computed inside real databases equal the scan of the same rows, and refuse what a scan refuses.

Every backend holds the same columns: data far from zero (means 1e6 and -3e5, spreads 1 and 10),
an integer class column, and values lying exactly on, and one ulp either side of, histogram edges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedlearn.analytics import (
    ArrayTable,
    HistogramSpec,
    InDatabase,
    Summary,
    SummarySpec,
    accumulate,
    summarize_in_database,
)
from fedlearn.analytics.pushdown import can_push_down, fetch_bounded, summarize_source
from fedlearn.core import ConfigError

from .conftest import assert_close
from .databases import BACKENDS, storing

SOME = ("postgresql", "sqlite", "duckdb-parquet")
"""Backends for the checks that do not depend on a dialect's arithmetic: one of each kind, to keep the suite fast."""

ROWS = 300
RNG = np.random.default_rng(14)
HISTOGRAM = HistogramSpec(column="a", low=1e6 - 1.0, high=1e6 + 1.0, bins=7)
_EDGES = HISTOGRAM.edges()
_ON_EDGES = np.concatenate([_EDGES, np.nextafter(_EDGES, -np.inf), np.nextafter(_EDGES, np.inf)])
_A = np.concatenate([1e6 + RNG.standard_normal(ROWS - len(_ON_EDGES)), _ON_EDGES])
DATA = {
    "a": _A,
    "b": -3e5 + 10.0 * RNG.standard_normal(ROWS),
    "n": RNG.integers(-50, 50, ROWS),  # an integer feature
    "k": RNG.integers(0, 3, ROWS),  # class codes
    "y": 2e6 + 0.5 * _A + RNG.standard_normal(ROWS),
}
SPEC = SummarySpec(
    columns=("a", "b", "n"),
    target="y",
    histograms=(HISTOGRAM, HistogramSpec(column="n", low=-60.0, high=60.0, bins=12)),
)
BY_CLASS = SummarySpec(columns=("a", "b", "y"), target="k", by_class=True, histograms=(HISTOGRAM,))

Put = Callable[..., Any]


@pytest.fixture(params=BACKENDS)
def stored(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Put]:
    yield from storing(request.param, tmp_path, DATA)


@pytest.fixture(params=SOME)
def stored_some(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Put]:
    yield from storing(request.param, tmp_path, DATA)


def assert_same_summary(ours: Summary, scanned: Summary) -> None:
    """Equal counts, extrema and histograms; moments and the R factor to rounding."""
    assert ours.count == scanned.count
    np.testing.assert_array_equal(ours.moments.min, scanned.moments.min)
    np.testing.assert_array_equal(ours.moments.max, scanned.moments.max)
    spread = np.sqrt(np.diagonal(scanned.moments.comoment) / scanned.count)
    # means to an ulp of the mean and a 1e-13 of the spread; with the correction, to 1e-13 of the spread alone
    wrong = np.abs(ours.moments.mean - scanned.moments.mean)
    assert (wrong <= 2e-16 * np.abs(scanned.moments.mean) + 1e-13 * spread).all()
    exact = (ours.factor.mean - scanned.factor.mean) + (ours.factor.mean_correction - scanned.factor.mean_correction)
    assert (np.abs(exact) <= 1e-13 * spread).all()
    assert_close(ours.moments.comoment, scanned.moments.comoment, rtol=1e-11)
    assert_close(ours.factor.r, scanned.factor.r, rtol=1e-10)
    for mine, theirs in zip(ours.histograms, scanned.histograms, strict=True):
        np.testing.assert_array_equal(mine.counts, theirs.counts)
    if scanned.by_class is not None:
        assert ours.by_class is not None
        np.testing.assert_array_equal(ours.by_class.classes, scanned.by_class.classes)
        np.testing.assert_array_equal(ours.by_class.counts, scanned.by_class.counts)
        np.testing.assert_array_equal(ours.by_class.moments.min, scanned.by_class.moments.min)
        wrong = np.abs(ours.by_class.moments.mean - scanned.by_class.moments.mean)
        assert (wrong <= 2e-16 * np.abs(scanned.by_class.moments.mean) + 1e-13 * spread[:-1]).all()
        assert_close(ours.by_class.moments.comoment, scanned.by_class.moments.comoment, rtol=1e-11)


def test_summary_in_the_database_equals_the_scan_on_data_far_from_zero(stored: Put) -> None:
    assert_same_summary(summarize_in_database(stored(), SPEC), accumulate(ArrayTable(DATA), SPEC))


def test_per_class_summary_in_the_database_equals_the_scan(stored: Put) -> None:
    assert_same_summary(summarize_in_database(stored(), BY_CLASS), accumulate(ArrayTable(DATA), BY_CLASS))


def test_values_on_histogram_edges_land_in_the_scans_bins(stored: Put) -> None:
    spec = SummarySpec(columns=("a",), histograms=(HISTOGRAM,))
    edges_only = {"a": _ON_EDGES}
    ours = summarize_in_database(stored(edges_only), spec).histograms[0]
    np.testing.assert_array_equal(ours.counts, accumulate(ArrayTable(edges_only), spec).histograms[0].counts)
    assert ours.counts[0] == 1 and ours.counts[-1] == 1  # below the first edge, above the last


def test_the_rows_streamed_into_the_node_are_the_rows_in_the_database(stored: Put) -> None:
    rows = np.vstack(list(stored().chunks(["y", "n"], chunk_rows=64)))
    np.testing.assert_array_equal(rows, np.column_stack([DATA["y"], DATA["n"]]))


def test_an_empty_table_gives_the_empty_summary(stored: Put, request: pytest.FixtureRequest) -> None:
    if request.node.callspec.params["stored"] == "duckdb-csv":
        pytest.skip("DuckDB types the columns of a CSV file without rows as text")
    empty = {name: values[:0] for name, values in DATA.items()}
    table = stored(empty)
    for spec in (SPEC, BY_CLASS):
        ours, identity = summarize_in_database(table, spec).to_params(), Summary.empty(spec).to_params()
        assert list(ours) == list(identity)
        assert all(np.array_equal(ours[name], identity[name]) for name in ours)


@pytest.mark.parametrize("spec", [SPEC, BY_CLASS], ids=["overall", "by_class"])
def test_a_null_is_refused_as_the_scan_refuses_a_nan(stored: Put, spec: SummarySpec) -> None:
    holes = {**DATA, "b": np.where(np.arange(ROWS) == 7, np.nan, DATA["b"])}
    with pytest.raises(ConfigError, match="column 'b' holds NULL, NaN or infinite values"):
        summarize_in_database(stored(holes), spec)


def test_fractional_class_codes_are_refused_without_echoing_a_value(stored_some: Put) -> None:
    spec = SummarySpec(columns=("a",), target="y", by_class=True)
    with pytest.raises(ConfigError, match="holds fractions") as caught:
        summarize_in_database(stored_some(), spec, max_classes=ROWS)
    assert str(DATA["y"][0])[:6] not in str(caught.value)


def test_a_continuous_column_named_as_the_classes_is_refused_after_a_bounded_read(stored_some: Put) -> None:
    spec = SummarySpec(columns=("a",), target="y", by_class=True)
    with pytest.raises(ConfigError, match="more than 10 classes"):
        summarize_in_database(stored_some(), spec, max_classes=10)


def test_a_text_column_is_refused_before_any_aggregate(stored_some: Put) -> None:
    table = stored_some({"a": DATA["a"], "name": np.array([f"row{i}" for i in range(ROWS)])})
    assert table.schema()["name"] == "str"
    with pytest.raises(ConfigError, match="column 'name' is text"):
        summarize_in_database(table, SummarySpec(columns=("a", "name")))


def test_a_column_the_source_does_not_have_is_refused(stored_some: Put) -> None:
    with pytest.raises(ConfigError, match=r"has no column 'x\); DROP TABLE t;--'"):
        summarize_in_database(stored_some(), SummarySpec(columns=("a", "x); DROP TABLE t;--")))


def test_a_database_table_pushes_down_unless_told_not_to(stored_some: Put) -> None:
    table = stored_some()
    assert isinstance(table, InDatabase) and can_push_down(table, SPEC)
    assert not can_push_down(stored_some(pushdown=False), SPEC)


def test_a_source_told_not_to_push_down_is_scanned_to_the_same_summary(stored_some: Put) -> None:
    ours = summarize_source(stored_some(pushdown=False), SPEC, chunk_rows=100)
    assert_same_summary(ours, accumulate(ArrayTable(DATA), SPEC))


def test_an_aggregate_returning_more_rows_than_it_may_is_refused_not_read_to_the_end() -> None:
    endless = ((i,) for i in iter(int, 1))  # a result that never ends
    with pytest.raises(ConfigError, match="returned more than 5 rows"):
        fetch_bounded(endless, 5)


def test_as_many_classes_as_allowed_are_summarised_with_one_lookup_a_row(stored_some: Put) -> None:
    many = {"a": DATA["a"].repeat(2), "k": np.arange(2 * ROWS) % ROWS}  # 300 classes of 2 rows each
    spec = SummarySpec(columns=("a",), target="k", by_class=True)
    ours = summarize_in_database(stored_some(many), spec, max_classes=ROWS)
    assert_same_summary(ours, accumulate(ArrayTable(many), spec))
