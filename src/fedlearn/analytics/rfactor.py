"""The triangular factor R of centred rows: what least squares and PCA are solved from.

Solving from the co-moment matrix ``C = XcᵀXc`` (the normal equations, or an eigendecomposition
of the covariance) squares the condition number of the centred data ``Xc``: a problem with
``cond(Xc) = 1e6`` keeps about 4 of its 16 digits. An orthogonal factorisation of the rows keeps
``cond(Xc)``: with ``Xc = QR``, least squares is a triangular system in ``R`` and the principal
components are the singular vectors of ``R``. ``R`` is ``d × d`` and ``RᵀR = C``, so it shares
exactly what the co-moment shares, and never the rows (nor ``Q``, which would reveal them).

A group of rows is summarised by its count ``n``, column means and ``R = qr(X - mean)``. Two
summaries merge by the QR analogue of Chan et al.'s update (see :mod:`.moments`)::

    R = qr([Ra; Rb; √(na·nb/n) · δ]),      δ = mb - ma

whose ``RᵀR`` is exactly the merged co-moment. QR is backward stable, so a merged ``R`` is the
exact ``R`` of rows within a few units of rounding of the pooled rows, in any merge order, and a
node summarises its rows chunk by chunk in ``O(chunk + d²)`` memory.

The δ row is the one weak spot: means rounded to working precision are off by about
``1e-16 × |mean|``, and when the data sit far from zero (a mean of 1e6, a spread of 1) that error
in δ is ``1e-10`` of the spread, which a condition number of 1e6 would turn into ``1e-4``. So
each factor also carries what its rounded mean misses (``mean_correction``, from the node's
centred rows, which are exact), and δ is formed from both parts: accurate relative to the spread,
however far from zero the data are.

Removing rows is where ``R`` differs from the co-moment: there is no stable way to take rows out
of ``R`` without ``Q``. A removal therefore makes ``R`` *unknown* (all NaN, as an unknown extreme
is NaN) until the node that owns the rows factors what it keeps afresh; see :meth:`RFactor.unknown`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg

from fedlearn.analytics.moments import FloatArray, Moments, column_mean, pooled_mean
from fedlearn.core.checks import name_mismatch
from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.core.params import ParamSet

FIELDS = ("count", "mean", "mean_correction", "r")


def triangular(rows: FloatArray, width: int) -> FloatArray:
    """``R`` of the QR factorisation of ``rows``, ``width × width``, with a non-negative diagonal.

    ``R`` is unique up to the signs of its rows; fixing them makes equal inputs give equal
    factors. Fewer rows than columns give zero rows at the bottom, as zero-padded rows would.
    """
    if len(rows) == 0:
        return np.zeros((width, width))
    r = linalg.qr(rows, mode="raw", overwrite_a=True, check_finite=False)[1]
    if len(r) < width:
        r = np.vstack([r, np.zeros((width - len(r), width))])
    signs = np.where(np.diagonal(r) < 0, -1.0, 1.0)
    return np.asarray(r * signs[:, None])


def _count(rows: int) -> NDArray[np.int64]:
    return np.asarray(rows, dtype=np.int64)


def _frozen(value: ArrayLike, dtype: Any) -> NDArray[Any]:
    array = np.array(value, dtype=dtype)  # a private copy: never alias the caller's data
    array.flags.writeable = False
    return array


@dataclass(frozen=True, slots=True, kw_only=True)
class RFactor:
    """Count, column means and the upper-triangular ``R`` of the centred rows of one group.

    ``mean + mean_correction`` is the column mean to about twice the working precision (see the
    module docstring). ``r`` is all NaN when unknown, after a removal (:attr:`known` is then
    false); merging an unknown factor gives an unknown one, so a stale ``R`` is never used as exact.
    """

    count: NDArray[np.int64]
    mean: FloatArray
    mean_correction: FloatArray
    r: FloatArray

    def __post_init__(self) -> None:
        count = _frozen(self.count, np.int64)
        if count.shape != () or count < 0:
            raise ValidationError(f"R factor: count must be one integer >= 0; got {count.tolist()!r}")
        mean = _frozen(self.mean, np.float64)
        if mean.ndim != 1:
            raise ValidationError(f"R factor: mean must be 1-D; got shape {mean.shape}")
        d = len(mean)
        correction = _frozen(self.mean_correction, np.float64)
        r = _frozen(self.r, np.float64)
        for name, array, shape in (("mean_correction", correction, (d,)), ("r", r, (d, d))):
            if array.shape != shape:
                raise ValidationError(f"R factor: {name} must have shape {shape} for {d} columns; got {array.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(correction).all()):
            raise ValidationError("R factor: mean and mean_correction must be finite")
        if not np.isnan(r).all():
            if not np.isfinite(r).all():
                raise ValidationError("R factor: r must be finite, or all NaN when unknown; got non-finite entries")
            below = np.argwhere(np.tril(r, -1))
            if len(below):
                i, j = below[0]
                raise ValidationError(
                    f"R factor: r must be upper triangular; got {float(r[i, j])!r} below the diagonal at ({i}, {j})"
                )
        for name, value in (("count", count), ("mean", mean), ("mean_correction", correction), ("r", r)):
            object.__setattr__(self, name, value)

    # construction ------------------------------------------------------------------------

    @classmethod
    def empty(cls, n_columns: int) -> RFactor:
        """The identity of :meth:`merge`: no rows."""
        d = n_columns
        return cls(count=_count(0), mean=np.zeros(d), mean_correction=np.zeros(d), r=np.zeros((d, d)))

    @classmethod
    def of(cls, rows: ArrayLike) -> RFactor:
        """The factor of the rows of a 2-D array: one chunk, centred once and factored in place."""
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2:
            raise ConfigError(f"`rows` must be 2-D (rows × columns); got shape {x.shape}")
        d = x.shape[1]
        if len(x) == 0:
            return cls.empty(d)
        mean = column_mean(x)  # the very mean Moments.of computes
        centred = np.subtract(x, mean, order="F")  # exact where the data sit far from zero; LAPACK's layout
        correction = centred.mean(axis=0)  # what the rounded mean misses
        centred -= correction
        return cls(count=_count(len(x)), mean=mean, mean_correction=correction, r=triangular(centred, d))

    @classmethod
    def unknown(cls, count: NDArray[np.int64], mean: FloatArray) -> RFactor:
        """A factor whose ``r`` cannot be known, e.g. after rows were removed."""
        d = len(mean)
        return cls(count=count, mean=mean, mean_correction=np.zeros(d), r=np.full((d, d), np.nan))

    @classmethod
    def from_moments(cls, moments: Moments) -> RFactor:
        """A factor rebuilt from a co-moment matrix, as accurate as that matrix and no more.

        This is the fallback when ``r`` is unknown: any ``R`` with ``RᵀR = C`` gives the same
        answers in exact arithmetic, but one built from ``C`` carries ``C``'s rounding, which is
        relative to ``cond(Xc)²`` rather than ``cond(Xc)``. It is built from ``C``'s
        eigendecomposition, so a singular ``C`` (collinear columns) works too.
        """
        if moments.batch_shape:
            raise ConfigError("RFactor.from_moments works on one group; take() a group first")
        values, vectors = np.linalg.eigh(moments.comoment)
        root = np.sqrt(np.maximum(values, 0.0))[:, None] * vectors.T
        d = moments.n_features
        return cls(count=moments.count, mean=moments.mean, mean_correction=np.zeros(d), r=triangular(root, d))

    # shape and state ---------------------------------------------------------------------

    @property
    def n_columns(self) -> int:
        return len(self.mean)

    @property
    def known(self) -> bool:
        return not bool(np.isnan(self.r).any())

    def leading(self, k: int) -> RFactor:
        """The factor of the first ``k`` columns alone: the leading block of ``R`` is exactly that."""
        return RFactor(count=self.count, mean=self.mean[:k], mean_correction=self.mean_correction[:k], r=self.r[:k, :k])

    def moments(self, minimum: ArrayLike, maximum: ArrayLike) -> Moments:
        """The moments of the same rows, given their extrema: the co-moment is ``RᵀR``.

        A node factors each chunk once and takes the co-moment from ``R``, rather than forming
        ``XcᵀXc`` as well: Householder QR is backward stable column by column, so ``RᵀR`` is as
        accurate as ``XcᵀXc`` formed directly, and the chunk is centred and read once.
        """
        if not self.known:
            raise ConfigError("an unknown R factor has no co-moment to give; the rows must be factored again")
        return Moments(
            count=self.count,
            mean=self.mean,
            comoment=self.r.T @ self.r,
            min=np.asarray(minimum),
            max=np.asarray(maximum),
        )

    def uncentred(self) -> FloatArray:
        """``R`` of the rows themselves, not centred: ``qr([R; √n · meanᵀ])``, for models without intercept.

        The rows are ``Xc + 1·meanᵀ`` and ``1`` is orthogonal to the columns of ``Xc``, so this is an
        orthogonal transformation of the rows, as accurate as factoring them directly.
        """
        if not self.known:
            return self.r.copy()
        top = np.sqrt(float(self.count)) * (self.mean + self.mean_correction)
        return triangular(np.vstack([self.r, top[None, :]]), self.n_columns)

    # the monoid --------------------------------------------------------------------------

    def merge(self, other: RFactor) -> RFactor:
        """The factor of both groups of rows together; equal to rounding in any order or grouping."""
        if self.n_columns != other.n_columns:
            raise ConfigError(
                f"cannot merge an R factor of {self.n_columns} columns with one of {other.n_columns} columns"
            )
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        na, nb = int(self.count), int(other.count)
        n = na + nb
        # The rounded means differ exactly where the data sit far from zero (Sterbenz), so adding
        # the difference of their corrections gives δ to within rounding of δ itself.
        delta = (other.mean - self.mean) + (other.mean_correction - self.mean_correction)
        mean = pooled_mean(self.count, self.mean, other.count, other.mean)
        correction = ((self.mean - mean) + delta * (nb / n)) + self.mean_correction
        d = self.n_columns
        if self.known and other.known:
            r = triangular(np.vstack([self.r, other.r, np.sqrt(na * nb / n) * delta[None, :]]), d)
        else:
            r = np.full((d, d), np.nan)
        return RFactor(count=_count(n), mean=mean, mean_correction=correction, r=r)

    # the wire ------------------------------------------------------------------------------

    def to_params(self) -> ParamSet:
        """A flat parameter set for the safetensors codec."""
        return ParamSet({f: getattr(self, f) for f in FIELDS})

    @classmethod
    def from_params(cls, params: ParamSet) -> RFactor:
        """Inverse of :meth:`to_params`; raises :class:`ValidationError` on a malformed set.

        ``r`` must be upper triangular and finite, or all NaN (unknown): that is all a received
        factor can be checked for, as a received co-moment can only be checked for its shape.
        """
        missing = name_mismatch(params, FIELDS).missing  # other names are the caller's to check
        if missing:
            raise ValidationError(f"R factor is missing {list(missing)}")
        if params["count"].dtype.kind not in "iu":
            raise ValidationError(f"R factor: count must be an integer array; got {params['count'].dtype}")
        return cls(**{f: params[f] for f in FIELDS})
