"""The Gaussian mechanism on bounded sufficient statistics: sensitivities, the noise per block, ε.

A node releasing statistics of its rows (a count, column sums, cross products, class counts,
histogram cells) under differential privacy must know how much one row can move them. Rows
themselves are unbounded, so the node clips each row into a box it declares in advance,
``low <= x <= high`` per column, and never derives the box from the data (a data-dependent bound
is itself a release). Each row is then expressed about the box's centre ``c``, ``u = x - c``, so
``|u_j| <= h_j``, the box's half-widths; centring on the box (not on the data's mean, which is
data-dependent) is what keeps every sensitivity below bounded.

Under add/remove-one-row neighbours one row changes, in L2 norm:

* a count, or the cells of one histogram (the row falls in exactly one cell), or the vector of
  class counts: by 1;
* the sums ``Σ u``: by ``||u|| <= ||h||``;
* the packed upper triangle of ``Σ u uᵀ`` (diagonal included): by
  ``sqrt((||u||⁴ + Σ u_j⁴) / 2) <= sqrt((||h||⁴ + Σ h_j⁴) / 2)``, each term growing with ``|u_j|``.

Per-class sums and cross products change for one class only, so they share the pooled bounds.

A release is ``k`` such blocks, each with its own sensitivity ``Δ_b``. It is released as ONE
Gaussian mechanism with noise multiplier ``z``: block ``b`` gets noise of standard deviation
``σ_b = z · √k · Δ_b``. Dividing each block by its ``σ_b`` gives unit noise on a vector whose
sensitivity is ``sqrt(Σ_b Δ_b² / σ_b²) = 1 / z``, so the whole release is accounted as one
Gaussian event of multiplier ``z`` (:class:`~fedlearn.privacy.ledger.Charge`), each block taking
an equal share of it. One joint standard deviation for every coordinate would instead drown a
count (sensitivity 1) in noise scaled for products of incomes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedlearn.core.checks import POSITIVE, Interval, check
from fedlearn.core.errors import ConfigError
from fedlearn.privacy.accountant import Accountant, Method, PoissonSampling

FloatArray = NDArray[np.float64]
MAX_DELTA = 1e-3
"""The largest δ a release is accounted at: above it a mechanism may fail outright for one row in a thousand."""
_DELTA = Interval(0, MAX_DELTA, closed="right")
DEFAULT_MAX_RELEASE_EPSILON = 10.0
"""The most ε one release of statistics may spend unless a node's policy says otherwise."""


def check_bounds(low: ArrayLike, high: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """``low`` and ``high`` as float arrays, once every column's box is finite and non-empty."""
    lo, hi = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    if lo.shape != hi.shape or lo.ndim != 1:
        raise ConfigError(f"row bounds need one low and one high per column; got shapes {lo.shape} and {hi.shape}")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()) or (lo >= hi).any():
        raise ConfigError("row bounds must be finite with low < high for every column")
    return lo, hi


def clip_rows(rows: FloatArray, low: FloatArray, high: FloatArray) -> FloatArray:
    """``rows`` clipped into the box, about the box's centre: ``clip(x, low, high) - (low + high) / 2``."""
    return np.clip(rows, low, high) - (low + high) / 2


def sum_sensitivity(half_width: FloatArray) -> float:
    """How far one row moves the column sums about the centre, in L2 norm: ``||h||``."""
    return float(np.linalg.norm(half_width))


def cross_sensitivity(half_width: FloatArray) -> float:
    """How far one row moves the packed upper triangle of ``Σ u uᵀ``: ``sqrt((||h||⁴ + Σ h⁴) / 2)``."""
    squares = np.asarray(half_width, dtype=np.float64) ** 2
    return float(math.sqrt((squares.sum() ** 2 + (squares**2).sum()) / 2))


def block_stddevs(noise_multiplier: float, sensitivities: Sequence[float]) -> list[float]:
    """The noise of each block of one release of multiplier ``noise_multiplier``: ``z · √k · Δ_b``."""
    z = check("noise_multiplier", noise_multiplier, POSITIVE)
    if not sensitivities:
        raise ConfigError("a release needs at least one block of statistics")
    share = z * math.sqrt(len(sensitivities))
    return [share * float(delta) for delta in sensitivities]


def release_epsilon(noise_multiplier: float, delta: float, method: Method = "rdp") -> float:
    """ε at ``delta`` of one Gaussian release of multiplier ``noise_multiplier`` (not sampled)."""
    check("delta", delta, _DELTA)
    return Accountant(delta=delta, method=method).epsilon(
        noise_multiplier=noise_multiplier, sampling=PoissonSampling(rate=1.0), rounds=1
    )


def calibrate_release(epsilon: float, delta: float, method: Method = "rdp") -> float:
    """The smallest noise multiplier whose single release spends at most ``epsilon`` at ``delta``."""
    check("delta", delta, _DELTA)
    return Accountant(delta=delta, method=method).calibrate(
        target_epsilon=epsilon, sampling=PoissonSampling(rate=1.0), rounds=1
    )


def pack_upper(matrix: FloatArray) -> FloatArray:
    """The upper triangle (diagonal included) of the last two axes, row by row, as one axis."""
    d = matrix.shape[-1]
    rows, cols = np.triu_indices(d)
    return np.asarray(matrix[..., rows, cols])


def unpack_upper(packed: FloatArray, d: int) -> FloatArray:
    """The symmetric matrices whose upper triangles :func:`pack_upper` packed."""
    rows, cols = np.triu_indices(d)
    out = np.zeros((*packed.shape[:-1], d, d))
    out[..., rows, cols] = packed
    out[..., cols, rows] = packed
    return out


def project_psd(matrix: FloatArray) -> FloatArray:
    """The nearest (Frobenius) positive semi-definite matrix: negative eigenvalues set to 0, per matrix.

    Noise makes a released co-moment matrix indefinite; a covariance, a least-squares system or
    a PCA needs it semi-definite. Projecting is post-processing, so it costs no privacy.
    """
    symmetric = (matrix + np.swapaxes(matrix, -1, -2)) / 2
    values, vectors = np.linalg.eigh(symmetric)
    projected = (vectors * np.maximum(values, 0.0)[..., None, :]) @ np.swapaxes(vectors, -1, -2)
    return np.asarray((projected + np.swapaxes(projected, -1, -2)) / 2)
