"""Summaries computed inside the database: SQL aggregates go in, one :class:`Summary` comes out, no row leaves.

A source that can run SQL (:class:`InDatabase`: :class:`~fedlearn.analytics.sql_pushdown.SqlPushdownTable`,
:class:`~fedlearn.analytics.duckdb_table.DuckDBTable`) is summarised by a few aggregate statements
over the dataset, run in one snapshot of the database, whose results the node assembles into the
same summary a scan of the rows would give (:func:`~fedlearn.analytics.scan.accumulate`):

1. **first pass**: ``COUNT``, ``AVG``, ``MIN`` and ``MAX`` of every column (per class, ``GROUP BY``
   the target, when the spec asks for per-class moments; at most ``max_classes + 1`` groups come back);
2. **second pass**: ``SUM(x - s)`` and the cross-products ``SUM((x - s)(y - t))`` about the first
   pass's means ``s, t`` (per class about each class's means, joined in as a derived table of one
   row per class, so a row costs one lookup however many classes), so the sums are of the data's
   spread, not of its offset: raw ``SUM(x*y)`` in float8 of data with mean 1e6 and spread 1 would lose every
   digit of the co-moment, centred sums lose none (see :mod:`.moments`). The shift need not be exact:
   the node corrects the mean by ``SUM(x - s) / n`` and the co-moment by ``n·oᵀo``, as
   :meth:`~fedlearn.analytics.moments.Moments.from_additive` does;
3. **one statement per histogram**: ``GROUP BY`` the bin of each value, found by a binary search
   over the agreed edges written as nested ``CASE`` (``log₂ bins`` comparisons a row), so each
   value lands in exactly the bin :meth:`Histogram.of` would put it in, edges included.

What differs from a scan, precisely: the R factor (:mod:`.rfactor`) is a QR of the rows, which SQL
aggregates cannot compute, so it is the Cholesky factor of the co-moment matrix (of its
equilibrated form, with an eigen-decomposition when it is singular). In exact arithmetic the two
are the same matrix (``RᵀR = C`` with a non-negative diagonal); in floating point this one is as
accurate as the co-moment, i.e. relative to ``cond(Xc)²`` rather than ``cond(Xc)``, like
:meth:`RFactor.from_moments`. Sums are added in the database's order, in float8: a few ulps per
row at worst (PostgreSQL and MariaDB add naively, SQLite with Neumaier's compensation).

Column names reach SQL only as quoted identifiers built by SQLAlchemy, and only names the source's
own schema lists (after the node's policy has allowed them); every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from fedlearn.analytics.classes import ClassMoments, class_codes
from fedlearn.analytics.histogram import Histogram, HistogramSpec
from fedlearn.analytics.moments import Moments
from fedlearn.analytics.rfactor import RFactor, triangular
from fedlearn.analytics.scan import accumulate, rescan
from fedlearn.analytics.sources import DEFAULT_CHUNK_ROWS, Table, check_columns
from fedlearn.analytics.summary import Summary, SummarySpec
from fedlearn.core.errors import ConfigError
from fedlearn.core.limits import DEFAULT_MAX_BINS
from fedlearn.core.params import ParamSet

Rows = list[tuple[Any, ...]]
Runner = Callable[[sa.Select[Any], int], Rows]
"""Runs one aggregate statement and returns its rows, refusing more than the given number."""

DEFAULT_MAX_CLASSES = DEFAULT_MAX_BINS
"""The most classes a per-class summary computed in the database may hold: class cells are bounded like bins."""


@runtime_checkable
class InDatabase(Protocol):
    """A table whose rows stay in a database that runs the aggregates itself."""

    @property
    def pushdown(self) -> bool:
        """Whether summaries are computed in the database (else the rows are streamed and scanned)."""
        ...

    def schema(self) -> Mapping[str, str]: ...

    def relation(self) -> sa.FromClause:
        """The dataset as a selectable whose columns are named as in :meth:`schema`."""
        ...

    def snapshot(self) -> AbstractContextManager[Runner]:
        """A runner whose statements all see the same data (one read transaction)."""
        ...


def can_push_down(source: object, spec: SummarySpec) -> bool:
    """Whether ``source`` computes summaries of ``spec`` in its database; otherwise they are scanned.

    Boolean columns are scanned: SQL dialects disagree on averaging them.
    """
    if not isinstance(source, InDatabase) or not source.pushdown:
        return False
    schema = source.schema()
    return all(schema.get(c) != "bool" for c in spec.all_columns)


def summarize_source(
    source: Table, spec: SummarySpec, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, max_classes: int = DEFAULT_MAX_CLASSES
) -> Summary:
    """The summary of ``source``'s rows: in its database where it can be, else by scanning its rows in chunks."""
    if can_push_down(source, spec):
        assert isinstance(source, InDatabase)
        return summarize_in_database(source, spec, max_classes=max_classes)
    return accumulate(source, spec, chunk_rows=chunk_rows)


def rescan_source(
    source: Table, spec: SummarySpec, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, max_classes: int = DEFAULT_MAX_CLASSES
) -> ParamSet:
    """What :func:`~fedlearn.analytics.scan.rescan` returns, from the database's aggregates where it can be.

    A rescan is a subset of a summary (count, extrema, R factor, per-class counts and extrema,
    histograms), so the database computes it as it computes a summary.
    """
    if not can_push_down(source, spec):
        return rescan(source, spec, chunk_rows=chunk_rows)
    assert isinstance(source, InDatabase)
    summary = summarize_in_database(source, spec, max_classes=max_classes)
    out: dict[str, Any] = {"count": np.int64(summary.count), "min": summary.moments.min, "max": summary.moments.max}
    out.update(summary.factor.to_params().with_prefix("factor/"))
    for i, histogram in enumerate(summary.histograms):
        out.update(histogram.to_params().with_prefix(f"hist/{i}/"))
    if summary.by_class is not None:
        out["by_class/classes"] = summary.by_class.classes
        out["by_class/count"] = summary.by_class.counts
        out["by_class/min"] = summary.by_class.moments.min
        out["by_class/max"] = summary.by_class.moments.max
    return ParamSet(out)


def summarize_in_database(source: InDatabase, spec: SummarySpec, *, max_classes: int = DEFAULT_MAX_CLASSES) -> Summary:
    """The summary of ``source``'s rows, computed by its database; no row reaches this process.

    Refuses, before any aggregate runs, a column the source's schema does not list or that holds
    text; then, as a scan would, a column holding NULL, NaN or infinite values and fractional class
    codes, and a per-class summary of more than ``max_classes`` classes.
    """
    check_columns(source.schema(), spec.all_columns, "the dataset")
    relation = source.relation()
    columns = [relation.c[name] for name in spec.all_columns]
    with source.snapshot() as run:
        if spec.by_class:
            return _by_class(run, relation, columns, spec, max_classes)
        ((count, *first),) = run(_first_pass(relation, columns), 1)
        n = int(count)
        if n == 0:
            return Summary.empty(spec)
        shift, lo, hi = _checked_first_pass(first, spec.all_columns, n)
        moments, correction = _second_pass(run, relation, columns, shift, lo, hi, n)
        histograms = _histograms(run, relation, spec)
    return Summary(
        spec=spec, moments=moments, factor=_factor(moments, correction), histograms=histograms, by_class=None
    )


# the statements ---------------------------------------------------------------------------------


def _param(value: float) -> sa.BindParameter[float]:
    return sa.bindparam(None, float(value), type_=sa.Float(precision=53))


def _first_pass(relation: sa.FromClause, columns: Sequence[sa.ColumnElement[Any]]) -> sa.Select[Any]:
    aggregates: list[Any] = [sa.func.count()]
    for c in columns:
        aggregates += [sa.func.count(c), sa.func.avg(c), sa.func.min(c), sa.func.max(c)]
    return sa.select(*aggregates).select_from(relation)


def _checked_first_pass(
    values: Sequence[Any], names: Sequence[str], count: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Means, minima and maxima of the first pass, once no column holds NULL, NaN or an infinity."""
    stats = np.array([np.nan if v is None else float(v) for v in values]).reshape(len(names), 4)
    for name, (present, mean, lo, hi) in zip(names, stats, strict=True):
        if present != count or not np.isfinite([mean, lo, hi]).all():
            raise ConfigError(
                f"column {name!r} holds NULL, NaN or infinite values; clean or impute them before summarising"
            )
    return stats[:, 1], stats[:, 2], stats[:, 3]


def _centred_sums(
    columns: Sequence[sa.ColumnElement[Any]], shifts: Sequence[sa.ColumnElement[Any]]
) -> list[sa.ColumnElement[Any]]:
    """``COUNT(*)``, ``SUM(x - s)`` per column and ``SUM((x - s)(y - t))`` per pair, upper triangle row by row."""
    centred = [c - s for c, s in zip(columns, shifts, strict=True)]
    sums = [sa.func.sum(a) for a in centred]
    products = [sa.func.sum(centred[i] * centred[j]) for i in range(len(centred)) for j in range(i, len(centred))]
    return [sa.func.count(), *sums, *products]


def _from_sums(
    values: Sequence[Any], shift: NDArray[np.float64], lo: NDArray[np.float64], hi: NDArray[np.float64], count: int
) -> tuple[Moments, NDArray[np.float64]]:
    """Moments (and the mean's rounding correction) from a second pass's count and centred sums."""
    d = len(shift)
    if int(values[0]) != count:
        raise ConfigError(
            f"the dataset changed while it was summarised ({count} rows, then {int(values[0])}); ask again"
        )
    sums = np.array([float(v) for v in values[1:]])
    offset = sums[:d] / count
    upper = np.zeros((d, d))
    upper[np.triu_indices(d)] = sums[d:]
    cross = np.triu(upper) + np.triu(upper, 1).T
    comoment = cross - count * np.outer(offset, offset)
    comoment = (comoment + comoment.T) / 2
    np.fill_diagonal(comoment, np.maximum(np.diagonal(comoment), 0.0))
    mean = shift + offset
    correction = (shift - mean) + offset  # what the rounded mean misses: shift - mean is exact (Sterbenz)
    moments = Moments(count=np.asarray(count, dtype=np.int64), mean=mean, comoment=comoment, min=lo, max=hi)
    return moments, correction


def _second_pass(
    run: Runner,
    relation: sa.FromClause,
    columns: Sequence[sa.ColumnElement[Any]],
    shift: NDArray[np.float64],
    lo: NDArray[np.float64],
    hi: NDArray[np.float64],
    count: int,
) -> tuple[Moments, NDArray[np.float64]]:
    statement = sa.select(*_centred_sums(columns, [_param(s) for s in shift])).select_from(relation)
    ((*values,),) = run(statement, 1)
    return _from_sums(values, shift, lo, hi, count)


def _slot(value: sa.ColumnElement[Any], spec: HistogramSpec) -> sa.ColumnElement[Any]:
    """The cell :meth:`Histogram.of` puts ``value`` in: 0 below the first edge, ``bins + 1`` above the last.

    That is the number of edges ``<= value`` (the last bin is closed), found by binary search so a
    row costs ``log₂ bins`` comparisons; every edge is a bound float8, equal to the scan's edge.
    """
    edges = spec.edges()

    def at_most(low: int, high: int) -> sa.ColumnElement[Any]:  # the count is known to lie in [low, high]
        if low == high:
            return sa.literal_column(str(low))
        middle = (low + high + 1) // 2
        return sa.case((value >= _param(edges[middle - 1]), at_most(middle, high)), else_=at_most(low, middle - 1))

    return sa.case((value == _param(edges[-1]), sa.literal_column(str(spec.bins))), else_=at_most(0, spec.bins + 1))


def _histograms(run: Runner, relation: sa.FromClause, spec: SummarySpec) -> tuple[Histogram, ...]:
    out = []
    for h in spec.histograms:
        slots = sa.select(_slot(relation.c[h.column], h).label("slot")).select_from(relation).subquery("slots")
        statement = sa.select(slots.c.slot, sa.func.count()).group_by(slots.c.slot)
        counts = np.zeros(h.bins + 2, dtype=np.int64)
        for slot, rows in run(statement, h.bins + 2):
            counts[int(slot)] = int(rows)
        out.append(Histogram(edges=h.edges(), counts=counts))
    return tuple(out)


def _by_class(
    run: Runner,
    relation: sa.FromClause,
    columns: Sequence[sa.ColumnElement[Any]],
    spec: SummarySpec,
    max_classes: int,
) -> Summary:
    """Per-class first and second passes over the features, then the overall second pass about the pooled mean."""
    d = spec.n_features
    target, features = columns[-1], columns[:d]
    first = (
        sa.select(target, *_first_pass(relation, columns).selected_columns)
        .group_by(target)
        .order_by(target)
        .limit(max_classes + 1)
    )
    groups = run(first, max_classes + 1)
    if len(groups) > max_classes:
        raise ConfigError(
            f"refusing per-class statistics of more than {max_classes} classes: `{spec.target}` must hold class codes"
        )
    if not groups:
        return Summary.empty(spec)
    counts = np.array([int(g[1]) for g in groups])
    stats = [_checked_first_pass(g[2:], spec.all_columns, int(n)) for g, n in zip(groups, counts, strict=True)]
    keys = [g[0] for g in groups]
    codes = class_codes(np.array([float(k) for k in keys]), name=str(spec.target))
    count = int(counts.sum())
    # each class's means, as a derived table joined on the class: one hash lookup a row, however many classes
    rows = [_shift_row(k, s[0][:d]) for k, s in zip(keys, stats, strict=True)]
    shifts = _union_all(rows).subquery("class_shifts")
    joined = relation.join(shifts, target == shifts.c["class"])
    centred = _centred_sums(features, [shifts.c[f"shift{j}"] for j in range(d)])
    second = sa.select(target, *centred).select_from(joined).group_by(target)
    sums = {float(row[0]): row[1:] for row in run(second, len(groups))}
    per_class = [
        _from_sums(sums[float(k)], s[0][:d], s[1][:d], s[2][:d], int(n))[0]
        for k, s, n in zip(keys, stats, counts, strict=True)
    ]
    by_class = ClassMoments(classes=codes, moments=Moments.stack(per_class))
    shift = (counts[:, None] * np.array([s[0] for s in stats])).sum(axis=0) / count
    lo = np.min([s[1] for s in stats], axis=0)
    hi = np.max([s[2] for s in stats], axis=0)
    moments, correction = _second_pass(run, relation, columns, shift, lo, hi, count)
    return Summary(
        spec=spec,
        moments=moments,
        factor=_factor(moments, correction),
        by_class=by_class,
        histograms=_histograms(run, relation, spec),
    )


def _shift_row(key: Any, shift: NDArray[np.float64]) -> sa.Select[Any]:
    values: list[sa.ColumnElement[Any]] = [_param(float(key)).label("class")]
    values += [_param(s).label(f"shift{j}") for j, s in enumerate(shift)]
    return sa.select(*values)


def _union_all(selects: Sequence[sa.Select[Any]], *, block: int = 200) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    """``UNION ALL`` of ``selects``, nested in blocks: SQLite allows at most 500 terms in one compound select."""
    if len(selects) == 1:
        return selects[0]
    if len(selects) <= block:
        return sa.union_all(*selects)
    parts = [_union_all(selects[i : i + block]).subquery() for i in range(0, len(selects), block)]
    return _union_all([sa.select(*part.c) for part in parts])


# the R factor -----------------------------------------------------------------------------------


def _factor(moments: Moments, correction: NDArray[np.float64]) -> RFactor:
    """``R`` with ``RᵀR = C``: Cholesky of the equilibrated co-moment, eigen-decomposition if it is singular.

    Equilibrating (unit diagonal) first makes the factor's accuracy independent of the columns'
    scales, which in real data span many orders of magnitude.
    """
    comoment = moments.comoment
    d = moments.n_features
    scale = np.sqrt(np.diagonal(comoment))
    scale = np.where(scale > 0, scale, 1.0)
    scaled = comoment / np.outer(scale, scale)
    try:
        r = np.linalg.cholesky(scaled).T
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(scaled)
        r = triangular(np.sqrt(np.maximum(values, 0.0))[:, None] * vectors.T, d)
    return RFactor(count=moments.count, mean=moments.mean, mean_correction=correction, r=np.triu(r * scale[None, :]))


def fetch_bounded(rows: Iterable[Any], max_rows: int) -> Rows:
    """At most ``max_rows`` rows of a result, refusing more: aggregate statements return few rows by construction."""
    out: Rows = []
    for row in rows:
        if len(out) == max_rows:
            raise ConfigError(f"an aggregate statement returned more than {max_rows} rows; refusing to read on")
        out.append(tuple(row))
    return out
