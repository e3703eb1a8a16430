"""Scanning a node's rows: summarise them in one pass, and refuse when too few rows would be shared.

Rows are read chunk by chunk; each chunk becomes a small summary (its moments, the R factor of
its centred rows, ...) that is merged into a running one and then dropped, so memory is
O(chunk + columns²) whatever the row count.

:func:`summarize` applies the privacy threshold (``min_rows``, see :mod:`.policy`) to what it
returns; a node answering tasks applies its whole :class:`~fedlearn.analytics.policy.DisclosurePolicy`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedlearn.analytics.classes import ClassMoments, class_codes
from fedlearn.analytics.histogram import Histogram
from fedlearn.analytics.policy import check_shareable, suppress_cells
from fedlearn.analytics.rfactor import RFactor
from fedlearn.analytics.sources import DEFAULT_CHUNK_ROWS, Table, as_table
from fedlearn.analytics.summary import Summary, SummarySpec
from fedlearn.core.checks import check_int
from fedlearn.core.errors import ConfigError
from fedlearn.core.params import ParamSet
from fedlearn.data.arrow_reader import is_arrow_like
from fedlearn.data.dataset import Dataset

Data = Table | Dataset | Mapping[str, ArrayLike] | Iterable[ArrayLike]
"""A table-like source (a DataFrame too), or chunks whose columns are already in ``spec.all_columns`` order."""


def chunks_of(data: Data, spec: SummarySpec, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[NDArray[Any]]:
    """The rows of ``data`` as 2-D float chunks with columns in ``spec.all_columns`` order."""
    chunk_rows = check_int("chunk_rows", chunk_rows, low=1)
    if isinstance(data, np.ndarray):
        yield _checked(data, spec)
        return
    if isinstance(data, (Table, Dataset, Mapping)) or is_arrow_like(data):
        table = as_table(data, target=spec.target or "y")
        for chunk in table.chunks(spec.all_columns, chunk_rows):
            yield _checked(chunk, spec)
        return
    for block in data:
        yield _checked(block, spec)


def _checked(chunk: ArrayLike, spec: SummarySpec) -> NDArray[np.float64]:
    x = np.asarray(chunk, dtype=np.float64)
    width = len(spec.all_columns)
    if x.ndim != 2 or x.shape[1] != width:
        raise ConfigError(f"each chunk must be 2-D with {width} columns {list(spec.all_columns)}; got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = spec.all_columns[int(np.argwhere(~np.isfinite(x))[0, 1])]
        raise ConfigError(f"column {bad!r} holds NaN or infinite values; clean or impute them before summarising")
    return x


def summarize_chunk(x: NDArray[np.float64], spec: SummarySpec) -> Summary:
    """The summary of one in-memory chunk (columns in ``spec.all_columns`` order)."""
    d = spec.n_features
    index = {name: i for i, name in enumerate(spec.all_columns)}
    factor = RFactor.of(x)
    return Summary(
        spec=spec,
        moments=factor.moments(x.min(axis=0, initial=np.inf), x.max(axis=0, initial=-np.inf)),
        factor=factor,
        by_class=ClassMoments.of(x[:, :d], class_codes(x[:, d], name=str(spec.target))) if spec.by_class else None,
        histograms=tuple(Histogram.of(x[:, index[h.column]], h) for h in spec.histograms),
    )


def accumulate(data: Data, spec: SummarySpec, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Summary:
    """One pass over ``data`` in chunks, without the privacy guard (for data that stays local)."""
    summary = Summary.empty(spec)
    for chunk in chunks_of(data, spec, chunk_rows=chunk_rows):
        summary = summary.merge(summarize_chunk(chunk, spec))
    return summary


def summarize(
    data: Data, spec: SummarySpec, *, min_rows: int | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Summary:
    """Summarise a node's rows in one pass for sharing: refused below ``min_rows`` rows (default:
    features + 5), histogram cells below it suppressed. Extrema are kept; a node answering a
    coordinator withholds them unless its :class:`~fedlearn.analytics.policy.DisclosurePolicy` allows them."""
    summary = accumulate(data, spec, chunk_rows=chunk_rows)
    check_shareable(summary, min_rows=min_rows)
    return suppress_cells(summary, min_rows=min_rows)


def rescan(data: Data, spec: SummarySpec, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> ParamSet:
    """Row counts, column minima and maxima (overall, and per class), ``R`` and histograms, in one pass.

    This is the rescan incremental removal needs. Moments are subtracted exactly, but an extreme
    held by a removed row can only be recovered from the rows that remain (see
    :meth:`~fedlearn.analytics.moments.Moments.subtract`), rows cannot be taken out of an R
    factor stably (see :mod:`~fedlearn.analytics.rfactor`), and histogram cells the node
    suppressed cannot be subtracted from, so the node scans what it keeps. That costs what
    summarising the kept rows costs, O(rows × columns²), in O(chunk + columns²) memory.
    """
    width, d = len(spec.all_columns), spec.n_features
    count, lo, hi = 0, np.full(width, np.inf), np.full(width, -np.inf)
    factor = RFactor.empty(width)
    index = {name: i for i, name in enumerate(spec.all_columns)}
    histograms = [Histogram.empty(h) for h in spec.histograms]
    per_class: dict[int, tuple[int, NDArray[Any], NDArray[Any]]] = {}
    for x in chunks_of(data, spec, chunk_rows=chunk_rows):
        if not len(x):
            continue
        count += len(x)
        lo, hi = np.minimum(lo, x.min(axis=0)), np.maximum(hi, x.max(axis=0))
        factor = factor.merge(RFactor.of(x))
        histograms = [
            h.merge(Histogram.of(x[:, index[bins.column]], bins))
            for h, bins in zip(histograms, spec.histograms, strict=True)
        ]
        if spec.by_class:
            codes = class_codes(x[:, d], name=str(spec.target))
            for label in np.unique(codes).tolist():
                rows = x[codes == label, :d]
                n, old_lo, old_hi = per_class.get(label, (0, np.full(d, np.inf), np.full(d, -np.inf)))
                per_class[label] = (
                    n + len(rows),
                    np.minimum(old_lo, rows.min(axis=0)),
                    np.maximum(old_hi, rows.max(axis=0)),
                )
    out: dict[str, ArrayLike] = {"count": np.int64(count), "min": lo, "max": hi}
    out.update(factor.to_params().with_prefix("factor/"))
    for i, histogram in enumerate(histograms):
        out.update(histogram.to_params().with_prefix(f"hist/{i}/"))
    if spec.by_class:
        labels = sorted(per_class)
        out["by_class/classes"] = np.array(labels, dtype=np.int64)
        out["by_class/count"] = np.array([per_class[k][0] for k in labels], dtype=np.int64)
        out["by_class/min"] = np.array([per_class[k][1] for k in labels]).reshape(len(labels), d)
        out["by_class/max"] = np.array([per_class[k][2] for k in labels]).reshape(len(labels), d)
    return ParamSet(out)
