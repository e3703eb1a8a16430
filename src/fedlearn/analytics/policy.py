"""A node's disclosure policy: what a summary of its rows may reveal, whatever a task asks.

The node has the last word on its data. A coordinator chooses what to ask (a dataset, columns,
histogram bins); every answer passes the node's :class:`DisclosurePolicy` first, on the node:

* ``columns``, an allow-list. A task naming any other column is refused in words that are the
  same whether or not the column exists (:func:`not_available`), and a schema reply reports such a
  column as missing, so guessing names (``ssn``, ``password``) learns nothing.
* ``min_rows``, the privacy threshold. A summary of very few rows is almost the rows (the mean of
  one row *is* that row), so a summary, each class within it, each added or removed batch (the
  difference of two summaries is a summary of the batch) and the rows left after a removal cover
  at least this many rows, or the node refuses, without saying how many rows there were. Each
  released histogram cell holds 0 or at least this many rows (:meth:`Histogram.suppressed`).
  Default: the number of features plus 5.
* ``max_bins``, the most histogram bins one task may ask for, checked before any is allocated.
* ``release_extrema``. Minima and maxima are values of single rows, so unless the node allows
  them they travel as NaN, which summaries already read as "unknown".
* ``bounds``, per column name ``(low, high)``: the box every row is clipped into before a
  differentially private release (:mod:`fedlearn.analytics.noisy`), on every dataset of the node.
  A DP request naming a column without bounds is refused: bounds are never taken from the data.
* ``max_release_epsilon``: the most ε (at the request's δ) one DP release may spend, so a
  coordinator asking for a tiny noise multiplier is refused even where no lifetime budget is set.

Under differential privacy the noise, not ``min_rows``, protects the rows, so a DP release is
neither refused for covering few rows nor has its cells suppressed: either would be a decision
taken on the noiseless count, and so a release of it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fedlearn.analytics.histogram import Histogram
from fedlearn.analytics.summary import Summary, SummarySpec
from fedlearn.core.checks import BOOL, POSITIVE, check, check_int
from fedlearn.core.errors import ConfigError, PrivacyError
from fedlearn.core.limits import DEFAULT_MAX_BINS
from fedlearn.core.params import ParamSet
from fedlearn.privacy.statistics import DEFAULT_MAX_RELEASE_EPSILON, check_bounds, release_epsilon

_HOW = "the node's operator can change it with `min_rows` in its [policy] (0 turns the guard off)"


def default_min_rows(spec: SummarySpec) -> int:
    """The default privacy threshold: the number of features plus 5."""
    return spec.n_features + 5


def not_available(column: str) -> str:
    """The one refusal for a column a task may not use, whether it is withheld or does not exist."""
    return f"column {column!r} is not available on this node"


def check_counts(
    spec: SummarySpec,
    count: int,
    class_counts: Mapping[Any, int] | None = None,
    *,
    min_rows: int | None = None,
    allow_empty: bool = False,
    what: str = "a summary",
) -> None:
    """Raise :class:`PrivacyError` unless ``count`` rows (and each class's rows) reach the threshold.

    The refusal names the threshold but not the count, which would itself be a count below it.
    ``allow_empty`` accepts zero rows: a node whose rows were all removed reveals nothing.
    """
    threshold = default_min_rows(spec) if min_rows is None else check_int("min_rows", min_rows, low=0)
    if count < threshold and not (allow_empty and count == 0):
        raise PrivacyError(
            f"refusing to share {what}: it covers fewer than {threshold} rows, the privacy threshold "
            f"(number of features + 5 unless set); {_HOW}"
        )
    if any(0 < rows < threshold for rows in (class_counts or {}).values()):
        raise PrivacyError(  # no class label: a coordinator that names any column as the classes would read its values
            f"refusing to share per-class statistics of {what}: a class has fewer than {threshold} rows, "
            f"the privacy threshold; {_HOW}"
        )


def check_shareable(summary: Summary, *, min_rows: int | None = None, what: str = "a summary") -> None:
    """Raise :class:`PrivacyError` unless every part of ``summary`` covers at least ``min_rows`` rows."""
    by_class = summary.by_class
    class_counts = (
        None if by_class is None else {int(k): int(c) for k, c in zip(by_class.classes, by_class.counts, strict=True)}
    )
    check_counts(summary.spec, summary.count, class_counts, min_rows=min_rows, what=what)


def suppress_cells(summary: Summary, *, min_rows: int | None = None) -> Summary:
    """``summary`` with every histogram cell 0 or at least the threshold (see :meth:`Histogram.suppressed`)."""
    threshold = default_min_rows(summary.spec) if min_rows is None else min_rows
    return replace(summary, histograms=tuple(h.suppressed(threshold) for h in summary.histograms))


@dataclass(frozen=True, slots=True, kw_only=True)
class DisclosurePolicy:
    """What this node lets analytics tasks see; see the module docstring for each field.

    ``columns=None`` allows every column of the node's datasets (a ``Dataset``'s target answers
    to ``y``); ``min_rows=None`` is the number of features plus 5.
    """

    columns: Collection[str] | None = None
    min_rows: int | None = None
    max_bins: int = DEFAULT_MAX_BINS
    release_extrema: bool = False
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    max_release_epsilon: float = DEFAULT_MAX_RELEASE_EPSILON

    def __post_init__(self) -> None:
        if self.columns is not None:
            if isinstance(self.columns, str):
                raise ConfigError(f"`columns` must be a list of column names, not one string; got {self.columns!r}")
            bad = [c for c in self.columns if not isinstance(c, str) or not c]
            if bad:
                raise ConfigError(f"`columns` must hold non-empty column names; got {bad[0]!r}")
            object.__setattr__(self, "columns", frozenset(self.columns))
        if self.min_rows is not None:
            check_int("min_rows", self.min_rows, low=0)
        check_int("max_bins", self.max_bins, low=1)
        check("release_extrema", self.release_extrema, BOOL)
        check("max_release_epsilon", self.max_release_epsilon, POSITIVE)
        bounds = {}
        for column, pair in dict(self.bounds).items():
            try:
                low, high = pair
                lo, hi = check_bounds([float(low)], [float(high)])
            except (ConfigError, TypeError, ValueError):
                raise ConfigError(
                    f"`bounds` of column {column!r} must be [low, high], finite with low < high; got {pair!r}"
                ) from None
            bounds[str(column)] = (float(lo[0]), float(hi[0]))
        object.__setattr__(self, "bounds", bounds)

    def threshold(self, spec: SummarySpec) -> int:
        """The privacy threshold for summaries of ``spec``."""
        return default_min_rows(spec) if self.min_rows is None else self.min_rows

    def visible(self, schema: Mapping[str, str]) -> dict[str, str]:
        """The columns of a table (name -> type) that tasks may see."""
        return {c: t for c, t in schema.items() if self.columns is None or c in self.columns}

    def check_request(self, spec: SummarySpec, schema: Mapping[str, str]) -> None:
        """Refuse a request for a column tasks may not see, or for more bins than allowed.

        Runs before a row is read or a count allocated, so a request for 2×10⁸ bins costs nothing.
        """
        visible = self.visible(schema)
        for column in spec.all_columns:
            if column not in visible:
                raise ConfigError(not_available(column))
        bins = sum(h.bins for h in spec.histograms)
        if bins > self.max_bins:
            raise ConfigError(
                f"refusing {bins} histogram bins: this node allows at most {self.max_bins} per task "
                "(`max_bins` in its [policy])"
            )

    def check_private_request(
        self, spec: SummarySpec, schema: Mapping[str, str], *, noise_multiplier: object, delta: float
    ) -> tuple[np.ndarray, np.ndarray, float, float]:
        """Bounds of ``spec``'s columns, noise multiplier and ε of a DP request, once it may be answered.

        Refused, before a row is read: a column the node does not allow or has no bounds for, a
        noise multiplier that is not a positive number, a δ outside (0, 1e-3], and a release that
        would spend more than ``max_release_epsilon``.
        """
        self.check_request(spec, schema)
        unbounded = [c for c in spec.all_columns if c not in self.bounds]
        if unbounded:
            raise PrivacyError(
                f"refusing a differentially private release of column {unbounded[0]!r}: this node declares no "
                "bounds for it, and bounds are never taken from the data; the node's operator can add "
                f"`bounds = {{ {unbounded[0]} = [low, high] }}` to its [policy]"
            )
        if (
            not isinstance(noise_multiplier, (int, float))
            or isinstance(noise_multiplier, bool)
            or not (math.isfinite(noise_multiplier) and noise_multiplier > 0)
        ):
            raise PrivacyError(f"`noise_multiplier` must be a finite number > 0; got {noise_multiplier!r}")
        z = float(noise_multiplier)
        epsilon = release_epsilon(z, delta)
        if epsilon > self.max_release_epsilon:
            raise PrivacyError(
                f"refusing a release of ε = {epsilon:.3g} at δ = {delta:g} (noise_multiplier {noise_multiplier:g}): "
                f"this node allows at most ε = {self.max_release_epsilon:g} per release "
                "(`max_release_epsilon` in its [policy]); ask with more noise"
            )
        low = np.array([self.bounds[c][0] for c in spec.all_columns])
        high = np.array([self.bounds[c][1] for c in spec.all_columns])
        return low, high, z, epsilon

    def release(self, summary: Summary, *, what: str = "a summary") -> Summary:
        """``summary`` as this node may share it: refused below the threshold, cells suppressed, extrema withheld."""
        check_shareable(summary, min_rows=self.threshold(summary.spec), what=what)
        released = suppress_cells(summary, min_rows=self.threshold(summary.spec))
        return released if self.release_extrema else released.without_extrema()

    def release_rescan(self, rescan: ParamSet, spec: SummarySpec) -> ParamSet:
        """A node's :func:`~fedlearn.analytics.rescan` of the rows it keeps after a removal, as it may share it.

        The kept rows may number zero (a node whose rows were all removed reveals nothing), never
        fewer than the threshold otherwise; their histogram cells and extrema follow the same rules.
        """
        threshold = self.threshold(spec)
        class_counts = None
        if spec.by_class:
            classes, counts = rescan["by_class/classes"].tolist(), rescan["by_class/count"].tolist()
            class_counts = dict(zip(classes, counts, strict=True))
        what = "the rows left after the removal"
        check_counts(spec, int(rescan["count"]), class_counts, min_rows=threshold, allow_empty=True, what=what)
        released = dict(rescan.items())
        for i in range(len(spec.histograms)):
            histogram = Histogram.from_params(rescan.select(f"hist/{i}/")).suppressed(threshold)
            released[f"hist/{i}/counts"] = histogram.counts
        if not self.release_extrema:
            for name in ("min", "max", "by_class/min", "by_class/max"):
                if name in released:
                    released[name] = np.full(released[name].shape, np.nan)
        return ParamSet(released)

    def check_newton(self, count: int, class_counts: Mapping[float, int], spec: SummarySpec) -> None:
        """Refuse Newton statistics (logistic regression) of fewer rows, or a class of fewer rows, than the threshold.

        The gradient holds one sum of the features per class, so a class of one row would give that row away.
        """
        check_counts(spec, count, class_counts, min_rows=self.threshold(spec), what="Newton statistics")


DEFAULT_POLICY = DisclosurePolicy()
"""Every column allowed, the default threshold, at most ``DEFAULT_MAX_BINS`` bins, extrema withheld, no
bounds (so no differentially private release)."""
