"""Centred moments: the mergeable summary most exact models are solved from.

A group of rows is summarised by its count ``n``, column means, co-moment matrix
``C = Σ (x - mean)(x - mean)ᵀ`` and column minima and maxima. Count, sum, sum of squares, the
cross-product matrices ``XᵀX`` and ``Xᵀy``, variances and covariances all follow from these.
Keeping the moments *centred* is what keeps them accurate: raw sums of squares of data with mean
1e8 and variance 1 lose every significant digit of the variance, while centred ones lose none.

Two summaries merge with the update of Chan, Golub and LeVeque (1979)::

    n    = na + nb
    mean = (na·ma + nb·mb) / n
    C    = (Ca + Cb) + δδᵀ · na·nb / n,      δ = mb - ma

which is exact in real arithmetic, so merging in any order or grouping gives the pooled summary.
In floating point it is commutative bit for bit and associative to rounding; the empty summary
(``n = 0``) is its identity. Merge is invertible for everything but the extrema, so rows can
also be removed (:meth:`Moments.subtract`); see that method for what happens to min and max.

``Moments`` may carry leading batch dimensions: ``count`` has shape ``()`` for one group and
``(K,)`` for the per-class moments of :mod:`fedlearn.analytics.classes`, and every operation
works group by group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedlearn.core.checks import name_mismatch
from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.core.params import ParamSet

Array = NDArray[Any]
FloatArray = NDArray[np.float64]

FIELDS = ("count", "mean", "comoment", "min", "max")


def _frozen(value: ArrayLike, dtype: Any) -> Array:
    array = np.array(value, dtype=dtype)  # always a private copy: never alias the caller's data
    array.flags.writeable = False
    return array


@dataclass(frozen=True, slots=True, kw_only=True)
class Moments:
    """Count, means, co-moments and extrema of one group of rows (or a batch of groups).

    ``min``/``max`` hold NaN for a column whose extreme is unknown because rows attaining it
    were removed; see :meth:`subtract`. NaN then propagates through merges, so a federation
    total never reports a stale extreme as if it were exact.
    """

    count: NDArray[np.int64]
    mean: FloatArray
    comoment: FloatArray
    min: FloatArray
    max: FloatArray

    def __post_init__(self) -> None:
        count = _frozen(self.count, np.int64)
        batch = count.shape
        mean = _frozen(self.mean, np.float64)
        if mean.ndim != len(batch) + 1 or mean.shape[:-1] != batch:
            raise ValidationError(f"moments: mean must have shape {(*batch, 'd')}; got {mean.shape}")
        d = mean.shape[-1]
        expected = {"comoment": (*batch, d, d), "min": (*batch, d), "max": (*batch, d)}
        arrays = {"count": count, "mean": mean}
        for name, shape in expected.items():
            arrays[name] = _frozen(getattr(self, name), np.float64)
            if arrays[name].shape != shape:
                raise ValidationError(f"moments: {name} must have shape {shape}; got {arrays[name].shape}")
        if (count < 0).any():
            raise ValidationError(f"moments: count must be >= 0; got {count.min()}")
        for name, array in arrays.items():
            object.__setattr__(self, name, array)

    # construction ------------------------------------------------------------------------

    @classmethod
    def empty(cls, n_features: int, batch: tuple[int, ...] = ()) -> Moments:
        """The identity of :meth:`merge`: no rows."""
        d = n_features
        return cls(
            count=np.zeros(batch, np.int64),
            mean=np.zeros((*batch, d)),
            comoment=np.zeros((*batch, d, d)),
            min=np.full((*batch, d), np.inf),
            max=np.full((*batch, d), -np.inf),
        )

    @classmethod
    def of(cls, rows: ArrayLike) -> Moments:
        """Moments of the rows of a 2-D array, computed in two passes over that array.

        Callers feed this one bounded chunk at a time, so the two passes touch memory that is
        already in cache and the data as a whole is still read once.
        """
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2:
            raise ConfigError(f"`rows` must be 2-D (rows × columns); got shape {x.shape}")
        if len(x) == 0:
            return cls.empty(x.shape[1])
        mean = column_mean(x)
        centred = x - mean
        return cls(
            count=np.asarray(len(x), dtype=np.int64),
            mean=mean,
            comoment=centred.T @ centred,
            min=x.min(axis=0),
            max=x.max(axis=0),
        )

    @classmethod
    def stack(cls, groups: Sequence[Moments]) -> Moments:
        """Stack single-group moments into one batch along a new leading axis."""
        return cls(**{f: np.stack([getattr(g, f) for g in groups]) for f in FIELDS})

    # shape -------------------------------------------------------------------------------

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[-1])

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.count.shape)

    def take(self, index: Any) -> Moments:
        """Groups selected by ``index`` along the batch axes (``m.take(2)`` is one group)."""
        return Moments(**{f: getattr(self, f)[index] for f in FIELDS})

    def select(self, columns: Sequence[int]) -> Moments:
        """Moments of a subset of the columns: exact, because each block stands on its own."""
        idx = np.asarray(columns, dtype=np.intp)
        return Moments(
            count=self.count,
            mean=self.mean[..., idx],
            comoment=self.comoment[..., idx[:, None], idx[None, :]],
            min=self.min[..., idx],
            max=self.max[..., idx],
        )

    # the monoid --------------------------------------------------------------------------

    def merge(self, other: Moments) -> Moments:
        """The moments of both groups of rows together (Chan et al.)."""
        self._check_compatible(other)
        na, nb = self.count, other.count
        n = na + nb
        delta = other.mean - self.mean
        weight = (na.astype(np.float64) * nb / np.maximum(n, 1))[..., None, None]
        comoment = (self.comoment + other.comoment) + delta[..., :, None] * delta[..., None, :] * weight
        # an empty side contributes nothing, bit for bit: that is what makes it the identity
        mean = pooled_mean(na, self.mean, nb, other.mean)
        comoment = np.where(
            (nb == 0)[..., None, None], self.comoment, np.where((na == 0)[..., None, None], other.comoment, comoment)
        )
        return Moments(
            count=n,
            mean=mean,
            comoment=comoment,
            min=_extreme(self.min, other.min, lowest=True),
            max=_extreme(self.max, other.max, lowest=False),
        )

    def subtract(self, other: Moments) -> Moments:
        """The moments of these rows once the rows summarised by ``other`` are removed.

        Count, means and co-moments are recovered exactly by inverting :meth:`merge`; the
        precision lost is about ``n / (n - n_removed)`` times machine epsilon, so removing
        almost every row is better done by summarising the rest afresh.

        Extrema cannot be inverted. A column's minimum stays exact when every removed value is
        strictly greater than it, because a remaining row still attains it (likewise for the
        maximum); otherwise it becomes NaN, meaning *unknown*. The node that owns the rows then
        recomputes it from its own remaining rows (see :func:`~fedlearn.analytics.scan.rescan`)
        and sets it with :meth:`with_extrema`. Nothing is ever rescanned for the moments, but
        the R factor of the same rows is (see :mod:`~fedlearn.analytics.rfactor`).
        """
        self._check_compatible(other)
        n, nb = self.count, other.count
        na = n - nb
        if (na < 0).any():
            raise ConfigError(
                f"cannot remove {int(np.max(nb))} rows from a summary of {int(np.max(n))}: "
                "the removed rows must have been added before"
            )
        fa = np.maximum(na, 1).astype(np.float64)
        fb = nb.astype(np.float64)
        step = other.mean - self.mean
        mean = self.mean - step * (fb / fa)[..., None]
        delta = other.mean - mean
        weight = (fa * fb / np.maximum(n, 1))[..., None, None]
        comoment = (self.comoment - other.comoment) - delta[..., :, None] * delta[..., None, :] * weight
        gone = (na == 0)[..., None]
        untouched = (nb == 0)[..., None]
        mean = np.where(untouched, self.mean, np.where(gone, 0.0, mean))
        comoment = np.where(untouched[..., None], self.comoment, np.where(gone[..., None], 0.0, comoment))
        lo = np.where(other.min > self.min, self.min, np.nan)
        hi = np.where(other.max < self.max, self.max, np.nan)
        return Moments(
            count=na,
            mean=mean,
            comoment=comoment,
            min=np.where(gone, np.inf, np.where(untouched, self.min, lo)),
            max=np.where(gone, -np.inf, np.where(untouched, self.max, hi)),
        )

    def with_extrema(self, minimum: ArrayLike, maximum: ArrayLike) -> Moments:
        """A copy whose min and max are replaced, e.g. after a node recomputed them."""
        lo, hi = np.asarray(minimum, dtype=np.float64), np.asarray(maximum, dtype=np.float64)
        return Moments(count=self.count, mean=self.mean, comoment=self.comoment, min=lo, max=hi)

    def _check_compatible(self, other: Moments) -> None:
        if self.mean.shape != other.mean.shape:
            raise ConfigError(
                f"cannot combine moments of shape {self.mean.shape} with moments of shape {other.mean.shape}"
            )

    # derived statistics ------------------------------------------------------------------

    @property
    def sum(self) -> FloatArray:
        return self.mean * self.count[..., None]

    @property
    def sum_of_squares(self) -> FloatArray:
        """Σ x² per column; shown for completeness, but use :attr:`comoment` for anything numeric."""
        return np.diagonal(self.comoment, axis1=-2, axis2=-1) + self.count[..., None] * self.mean**2

    def cross_product(self) -> FloatArray:
        """The uncentred cross-product matrix ``XᵀX`` (with ``Xᵀy`` inside when y is a column)."""
        return self.comoment + self.count[..., None, None] * (self.mean[..., :, None] * self.mean[..., None, :])

    def covariance(self, ddof: int = 1) -> FloatArray:
        """Covariance matrix with ``n - ddof`` in the denominator."""
        denom = self.count - ddof
        if (denom <= 0).any():
            raise ConfigError(f"covariance with ddof={ddof} needs more than {ddof} rows; got {int(np.min(self.count))}")
        return self.comoment / denom[..., None, None]

    def variance(self, ddof: int = 1) -> FloatArray:
        """Per-column variance; rounding can never make it negative."""
        return np.maximum(np.diagonal(self.covariance(ddof), axis1=-2, axis2=-1), 0.0)

    # the wire ------------------------------------------------------------------------------

    def to_params(self) -> ParamSet:
        """A flat parameter set for the safetensors codec."""
        return ParamSet({f: getattr(self, f) for f in FIELDS})

    @classmethod
    def from_params(cls, params: ParamSet) -> Moments:
        """Inverse of :meth:`to_params`; raises :class:`ValidationError` on a malformed set."""
        missing = name_mismatch(params, FIELDS).missing  # other names are the caller's to check
        if missing:
            raise ValidationError(f"moments are missing {list(missing)}")
        if params["count"].dtype.kind not in "iu":
            raise ValidationError(f"moments: count must be an integer array; got {params['count'].dtype}")
        moments = cls(**{f: params[f] for f in FIELDS})
        finite = np.isfinite(moments.mean).all() and np.isfinite(moments.comoment).all()
        if not finite:
            raise ValidationError("moments: mean and comoment must be finite")
        return moments

    def to_additive(self, shift: ArrayLike) -> ParamSet:
        """Plain sums about a shared reference point: the form secure aggregation can add.

        Secure aggregation only ever sums vectors, and centred moments do not add. Sums of
        ``x - shift`` and ``(x - shift)(x - shift)ᵀ`` do, and stay accurate when every node
        uses the same ``shift`` close to the global mean (e.g. a rough mean from a public
        reference or a first, coarse round). Extrema are not sums and are left out.
        """
        if self.batch_shape:
            raise ConfigError("to_additive works on one group; take() a group first")
        c = np.asarray(shift, dtype=np.float64)
        offset = self.mean - c
        n = float(self.count)
        return ParamSet(
            {
                "count": self.count,
                "sum": n * offset,
                "cross": self.comoment + n * np.outer(offset, offset),
            }
        )

    @classmethod
    def from_additive(cls, params: ParamSet, shift: ArrayLike) -> Moments:
        """Moments from a (possibly securely aggregated) sum of :meth:`to_additive` sets.

        Extrema are unknown (NaN) because sums cannot carry them.
        """
        c = np.asarray(shift, dtype=np.float64)
        n = int(params["count"])
        if n == 0:
            return cls.empty(c.shape[-1])
        offset = params["sum"] / n
        comoment = params["cross"] - n * np.outer(offset, offset)
        unknown = np.full(c.shape, np.nan)
        return cls(count=np.asarray(n, dtype=np.int64), mean=c + offset, comoment=comoment, min=unknown, max=unknown)


def column_mean(rows: FloatArray) -> FloatArray:
    """Column means of a non-empty 2-D array, accurate however far the data sit from zero.

    Sum the offsets from the first row, not the raw values: numpy sums down axis 0 one row at a
    time, and with a mean of 1e8 that would cost ~n ulps of the mean. The offsets are exact
    (Sterbenz) and of the data's spread, so their sum keeps every digit that matters.
    """
    return np.asarray(rows[0] + (rows - rows[0]).mean(axis=0))


def pooled_mean(na: Array, mean_a: FloatArray, nb: Array, mean_b: FloatArray) -> FloatArray:
    """The mean of two groups of rows from their counts and means (any leading batch shape).

    An empty side leaves the other's mean untouched, bit for bit, so every summary that carries
    a mean merges it with this one formula and summaries of the same rows agree exactly.
    """
    n = np.maximum(na + nb, 1).astype(np.float64)
    fa, fb = np.asarray(na, dtype=np.float64), np.asarray(nb, dtype=np.float64)
    mean = (fa[..., None] * mean_a + fb[..., None] * mean_b) / n[..., None]
    empty_a, empty_b = (np.asarray(na) == 0)[..., None], (np.asarray(nb) == 0)[..., None]
    return np.asarray(np.where(empty_b, mean_a, np.where(empty_a, mean_b, mean)))


class Mergeable(Protocol):
    def merge(self, other: Any, /) -> Any: ...


M = TypeVar("M", bound=Mergeable)


def merge_all(items: Sequence[M]) -> M:
    """Merge many summaries as a balanced tree, so rounding grows with log(k), not k."""
    if not items:
        raise ConfigError("merge_all needs at least one summary")
    level = list(items)
    while len(level) > 1:
        paired = [level[i].merge(level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _extreme(a: NDArray[np.float64], b: NDArray[np.float64], *, lowest: bool) -> NDArray[np.float64]:
    """Elementwise min (or max) that does not depend on argument order, bit for bit.

    ``np.minimum(0.0, -0.0)`` returns its first argument, so merging in another order could flip
    a zero's sign; on ties the negative zero is the minimum and the positive zero the maximum.
    """
    extreme = np.minimum(a, b) if lowest else np.maximum(a, b)
    tie_pick = np.where(np.signbit(a) == lowest, a, b)
    return np.where(a == b, tie_pick, extreme)
