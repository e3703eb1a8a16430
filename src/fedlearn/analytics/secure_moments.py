"""Moments as plain sums, so that secure aggregation can add them: two passes, each one vector per node.

A node's :class:`~fedlearn.analytics.summary.Summary` merges by Chan's update and an R factor, neither
of which is a sum, so secure aggregation cannot add them. These can be:

- **pass 1**: the row count, the column sums and, for a classification job, each declared class's
  row count and feature sums;
- **pass 2**: the co-moment matrix about the pooled mean ``Σ (x - m)(x - m)ᵀ``, and for each class
  about that class's pooled mean, with ``m`` and the class means computed from pass 1's sums.

Centring each row on the *pooled* mean is what keeps pass 2 accurate: it is exactly the pooled
co-moment matrix ``C`` (the co-moment about any other point differs by ``n·δδᵀ``), computed at
every node without the cancellation of raw sums of squares. The sums are added exactly
(:mod:`fedlearn.privacy.exact`), so the result is the pooled summary with the float64 rounding of
each node's own sums and no more. What the coordinator rebuilds has no extrema (values of single
rows) and no R factor (not a sum): estimators solve from the co-moments
(:meth:`~fedlearn.analytics.rfactor.RFactor.from_moments`), to within ``cond(X)²`` rounding rather
than ``cond(X)``, which is 1e-9 and better on well-conditioned data.

The classes must be declared up front: a set of labels is not a sum, and every node's vector must
have the same layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedlearn.analytics.classes import ClassMoments, class_codes
from fedlearn.analytics.moments import Moments
from fedlearn.analytics.rfactor import RFactor
from fedlearn.analytics.summary import Summary, SummarySpec
from fedlearn.core.errors import ConfigError, ValidationError

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SecureMomentsLayout:
    """Where each sum lies in the two passes' vectors, for a spec and its declared classes."""

    spec: SummarySpec
    classes: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.spec.histograms:
            raise ConfigError("histograms are summed in a round of their own under secure aggregation")
        if self.spec.by_class != bool(self.classes):
            raise ConfigError(
                "a classification job under secure aggregation must declare its `classes` (integer codes), "
                "and a regression job must not: every node's sums need the same layout"
            )
        if sorted(set(self.classes)) != list(self.classes):
            raise ConfigError(f"`classes` must be unique integer codes in ascending order; got {list(self.classes)}")

    @property
    def width(self) -> int:
        """All summarised columns, target included."""
        return len(self.spec.all_columns)

    @property
    def first_length(self) -> int:
        return 1 + self.width + len(self.classes) * (1 + self.spec.n_features)

    @property
    def second_length(self) -> int:
        return self.width**2 + len(self.classes) * self.spec.n_features**2


def first_pass(chunks: Iterable[FloatArray], layout: SecureMomentsLayout) -> tuple[FloatArray, dict[int, int]]:
    """A node's pass-1 vector from its rows (2-D chunks in ``spec.all_columns`` order), and its class counts."""
    d, k = layout.spec.n_features, len(layout.classes)
    count, sums = 0, np.zeros(layout.width)
    class_counts, class_sums = np.zeros(k, dtype=np.int64), np.zeros((k, d))
    for chunk in chunks:
        count += len(chunk)
        sums += chunk.sum(axis=0)
        if k:
            index = _class_index(chunk[:, -1], layout.classes)
            class_counts += np.bincount(index, minlength=k)
            np.add.at(class_sums, index, chunk[:, :d])
    vector = np.concatenate([[float(count)], sums, np.column_stack([class_counts, class_sums]).ravel()])
    return vector, dict(zip(layout.classes, class_counts.tolist(), strict=True))


def second_pass(
    chunks: Iterable[FloatArray], layout: SecureMomentsLayout, mean: FloatArray, class_means: FloatArray
) -> tuple[FloatArray, int, dict[int, int]]:
    """A node's pass-2 vector (its rows' co-moments about the pooled mean, and per class about the class
    mean), with the row and class counts it covers, for the node's policy to check."""
    d, k = layout.spec.n_features, len(layout.classes)
    _check_shape("mean", mean, (layout.width,))
    _check_shape("class_means", class_means, (k, d))
    if not (np.isfinite(mean).all() and np.isfinite(class_means).all()):
        raise ConfigError("the pooled means to centre on must be finite")
    count, class_counts = 0, np.zeros(k, dtype=np.int64)
    comoment, class_comoments = np.zeros((layout.width, layout.width)), np.zeros((k, d, d))
    for chunk in chunks:
        count += len(chunk)
        centred = chunk - mean
        comoment += centred.T @ centred
        if k:
            index = _class_index(chunk[:, -1], layout.classes)
            class_counts += np.bincount(index, minlength=k)
            for j in np.unique(index):
                rows = chunk[index == j, :d] - class_means[j]
                class_comoments[j] += rows.T @ rows
    vector = np.concatenate([comoment.ravel(), class_comoments.ravel()])
    return vector, count, dict(zip(layout.classes, class_counts.tolist(), strict=True))


@dataclass(frozen=True, slots=True)
class FirstPass:
    """The pooled counts and means pass 1 gives: what pass 2 centres on."""

    count: int
    mean: FloatArray
    class_counts: NDArray[np.int64]
    class_means: FloatArray


def read_first_pass(sums: FloatArray, layout: SecureMomentsLayout) -> FirstPass:
    """The pooled counts and means from the summed pass-1 vectors."""
    _check_shape("pass-1 sums", sums, (layout.first_length,))
    d, k = layout.spec.n_features, len(layout.classes)
    count = _count(sums[0], "rows")
    if count == 0:
        raise ValidationError("the members hold no rows: there is nothing to summarise")
    per_class = sums[1 + layout.width :].reshape(k, 1 + d)
    class_counts = np.array([_count(c, "class rows") for c in per_class[:, 0]], dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        class_means = np.where(class_counts[:, None] > 0, per_class[:, 1:] / class_counts[:, None], 0.0)
    return FirstPass(count, sums[1 : 1 + layout.width] / count, class_counts, class_means)


def pooled_summary(first: FirstPass, second_sums: FloatArray, layout: SecureMomentsLayout) -> Summary:
    """The pooled summary from pass 1's means and the summed pass-2 vectors; no extrema, no R factor."""
    _check_shape("pass-2 sums", second_sums, (layout.second_length,))
    w, d, k = layout.width, layout.spec.n_features, len(layout.classes)
    comoment = _symmetric(second_sums[: w * w].reshape(w, w))
    unknown = np.full(w, np.nan)
    count = np.asarray(first.count, dtype=np.int64)
    moments = Moments(count=count, mean=first.mean, comoment=comoment, min=unknown, max=unknown)
    by_class = None
    if k:
        present = first.class_counts > 0
        class_comoments = second_sums[w * w :].reshape(k, d, d)[present]
        none = np.full((int(present.sum()), d), np.nan)
        by_class = ClassMoments(
            classes=np.array(layout.classes, dtype=np.int64)[present],
            moments=Moments(
                count=first.class_counts[present],
                mean=first.class_means[present],
                comoment=np.stack([_symmetric(c) for c in class_comoments]) if len(class_comoments) else
                np.zeros((0, d, d)),
                min=none,
                max=none,
            ),
        )  # fmt: skip
    return Summary(
        spec=layout.spec,
        moments=moments,
        factor=RFactor.unknown(count, first.mean),
        by_class=by_class,
    )


def _class_index(labels: FloatArray, classes: Sequence[int]) -> NDArray[np.intp]:
    codes = class_codes(labels)
    index = np.searchsorted(classes, codes)
    clipped = np.minimum(index, len(classes) - 1)
    if (np.asarray(classes)[clipped] != codes).any():
        raise ConfigError("the target holds a class code that is not among the job's declared `classes`")
    return clipped


def _count(value: float, what: str) -> int:
    if not float(value).is_integer() or value < 0:
        raise ValidationError(f"the summed {what} must be a whole number; got {value!r}")
    return int(value)


def _symmetric(matrix: FloatArray) -> FloatArray:
    return (matrix + matrix.T) / 2


def _check_shape(name: str, array: FloatArray, shape: tuple[int, ...]) -> None:
    if np.shape(array) != shape:
        raise ValidationError(f"{name} must have shape {shape}; got {np.shape(array)}")
