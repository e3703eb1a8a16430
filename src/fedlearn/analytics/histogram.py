"""Histograms with fixed bins: counts add, so they merge and subtract exactly.

The bins are agreed before any node counts (from a job's declared range, or from the global
min and max of a first pass), because counts over different bins cannot be added. Values below
the first edge or above the last are counted in an underflow and an overflow bin, so a node's
histogram accounts for every row. Bins are half-open ``[a, b)`` except the last, ``[a, b]``, as in
:func:`numpy.histogram`.

What a node releases has every cell 0 or at least its privacy threshold (:meth:`Histogram.suppressed`),
so a released histogram may account for fewer rows than the summary's count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedlearn.core.checks import check_int, check_real, name_mismatch
from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.core.params import ParamSet


@dataclass(frozen=True, slots=True, kw_only=True)
class HistogramSpec:
    """Equal-width bins over ``[low, high]`` for one column."""

    column: str
    low: float
    high: float
    bins: int

    def __post_init__(self) -> None:
        try:
            low, high = check_real("low", self.low), check_real("high", self.high)
            bins = check_int("bins", self.bins, low=1)
        except ConfigError as exc:  # a spec may hold several histograms: say which one is wrong
            raise ConfigError(f"histogram of {self.column!r}: {exc}") from None
        if not low < high:
            raise ConfigError(f"histogram of {self.column!r}: range must have low < high; got [{low}, {high}]")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "bins", bins)

    def edges(self) -> NDArray[np.float64]:
        return np.linspace(self.low, self.high, self.bins + 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Histogram:
    """Bin ``edges`` and ``counts``: ``counts[0]`` underflow, ``counts[-1]`` overflow."""

    edges: NDArray[np.float64]
    counts: NDArray[np.int64]

    def __post_init__(self) -> None:
        edges = np.array(self.edges, dtype=np.float64)
        counts = np.array(self.counts, dtype=np.int64)
        if edges.ndim != 1 or len(edges) < 2 or (np.diff(edges) <= 0).any():
            raise ValidationError("histogram edges must be a 1-D increasing array of at least 2 values")
        if counts.shape != (len(edges) + 1,):
            raise ValidationError(f"histogram counts must have shape {(len(edges) + 1,)}; got {counts.shape}")
        if (counts < 0).any():
            raise ValidationError("histogram counts must be >= 0")
        for name, array in (("edges", edges), ("counts", counts)):
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    @classmethod
    def empty(cls, spec: HistogramSpec) -> Histogram:
        return cls(edges=spec.edges(), counts=np.zeros(spec.bins + 2, np.int64))

    @classmethod
    def of(cls, values: ArrayLike, spec: HistogramSpec) -> Histogram:
        edges = spec.edges()
        v = np.asarray(values, dtype=np.float64).ravel()
        slot = np.searchsorted(edges, v, side="right")  # 0: below, 1..bins: in a bin, bins+1: above
        slot[v == edges[-1]] = spec.bins  # the last bin is closed on the right
        return cls(edges=edges, counts=np.bincount(slot, minlength=spec.bins + 2))

    @property
    def in_range(self) -> NDArray[np.int64]:
        """Counts of the regular bins, comparable with :func:`numpy.histogram`."""
        return self.counts[1:-1]

    def merge(self, other: Histogram) -> Histogram:
        self._check_same_bins(other)
        return Histogram(edges=self.edges, counts=self.counts + other.counts)

    def subtract(self, other: Histogram) -> Histogram:
        """Counts without ``other``'s rows, a cell never below 0.

        Nodes release a cell only when it holds at least their threshold of rows
        (:meth:`suppressed`), so a removed batch may count more rows in a cell than the released
        total shows. Such a cell reads 0; a node that rescans its remaining rows replaces these
        counts with exact ones (see :meth:`~fedlearn.analytics.Summary.with_rescan`).
        """
        self._check_same_bins(other)
        return Histogram(edges=self.edges, counts=np.maximum(self.counts - other.counts, 0))

    def suppressed(self, min_rows: int) -> Histogram:
        """These counts as a node may release them: every cell 0 or at least ``min_rows``.

        A cell of 1 to ``min_rows - 1`` rows reads 0, so a bin per value shows no single row.
        Edges stay fixed, because nodes' histograms merge by adding. The coordinator knows the total
        count from the moments, so if only one cell were hidden, the total less the released cells
        would give that cell's count back; the next smallest cell is then hidden too, and what a
        reader can tell is the sum of the hidden cells, never one hidden cell's count.
        """
        counts = np.array(self.counts)
        hidden = (counts > 0) & (counts < min_rows)
        if hidden.sum() == 1:
            shown = np.flatnonzero(counts >= max(min_rows, 1))
            if len(shown):
                hidden[shown[np.argmin(counts[shown])]] = True
        counts[hidden] = 0
        return Histogram(edges=self.edges, counts=counts)

    def _check_same_bins(self, other: Histogram) -> None:
        if not np.array_equal(self.edges, other.edges):
            raise ConfigError("histograms with different bin edges cannot be combined; agree on the bins first")

    def to_params(self) -> ParamSet:
        return ParamSet({"edges": self.edges, "counts": self.counts})

    @classmethod
    def from_params(cls, params: ParamSet) -> Histogram:
        if name_mismatch(params, ("edges", "counts")).missing:
            raise ValidationError("a histogram needs 'edges' and 'counts'")
        return cls(edges=params["edges"], counts=params["counts"])
