"""Exact references for least squares and PCA, in rational arithmetic.

Every float64 is a rational number, so the centred co-moment matrix of the data is computed
exactly with :class:`fractions.Fraction`. Least squares is then solved exactly. Eigenvalues
cannot be written as fractions, but they can be bracketed exactly: by Sylvester's law of inertia
the number of negative pivots of ``C - μI`` is the number of eigenvalues below ``μ``, so bisection
pins each one down to adjacent floats; a few steps of exact inverse iteration then give its
eigenvector. Errors can thus be measured down to 1e-16 relative, against the exact answer for
the stored data rather than another floating-point solver.

The benchmark ``benchmarks/analytics_conditioning.py`` measures against these same references.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

Matrix = list[list[Fraction]]


def comoment(rows: NDArray[np.float64], *, centred: bool = True) -> tuple[Matrix, list[Fraction]]:
    """The exact co-moment matrix ``Σ (x - x̄)(x - x̄)ᵀ`` of the rows (``XᵀX`` if not ``centred``), and the means."""
    values = [[Fraction(v) for v in row] for row in rows.tolist()]
    n, d = len(values), rows.shape[1]
    sums = [sum((row[j] for row in values), Fraction(0)) for j in range(d)]
    c = [[Fraction(0)] * d for _ in range(d)]
    for j in range(d):
        for k in range(j, d):
            c[j][k] = c[k][j] = sum((row[j] * row[k] for row in values), Fraction(0))
            if centred:
                c[j][k] = c[k][j] = c[j][k] - sums[j] * sums[k] / n
    return c, [s / n for s in sums]


def solve(a: Matrix, b: list[Fraction]) -> list[Fraction]:
    """The exact solution of the square system ``a x = b`` (Gauss-Jordan; ``a`` must be regular)."""
    d = len(b)
    m = [[*row, rhs] for row, rhs in zip(a, b, strict=True)]
    for col in range(d):
        pivot = next(r for r in range(col, d) if m[r][col] != 0)
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(d):
            if r != col and m[r][col] != 0:
                factor = m[r][col] / m[col][col]
                m[r] = [x - factor * y for x, y in zip(m[r], m[col], strict=True)]
    return [m[i][d] / m[i][i] for i in range(d)]


def least_squares(
    x: NDArray[np.float64], y: NDArray[np.float64], *, alpha: float = 0.0, fit_intercept: bool = True
) -> tuple[NDArray[np.float64], float]:
    """The exact coefficients and intercept of ridge regression (``alpha = 0``: least squares), as floats."""
    d = x.shape[1]
    c, means = comoment(np.column_stack([x, y]), centred=fit_intercept)
    gram = [[c[i][j] + (Fraction(alpha) if i == j else 0) for j in range(d)] for i in range(d)]
    coef = solve(gram, [row[d] for row in c[:d]])
    if not fit_intercept:
        return np.array([float(w) for w in coef]), 0.0
    intercept = means[d] - sum((m * w for m, w in zip(means[:d], coef, strict=True)), Fraction(0))
    return np.array([float(w) for w in coef]), float(intercept)


def _below(c: Matrix, mu: Fraction) -> int:
    """How many eigenvalues of the symmetric ``c`` are below ``mu``: the negative pivots of ``c - μI``."""
    d = len(c)
    m = [[c[i][j] - (mu if i == j else 0) for j in range(d)] for i in range(d)]
    negative = 0
    for k in range(d):
        pivot = m[k][k]
        if pivot == 0:
            raise ArithmeticError("an exact zero pivot: μ is an eigenvalue or needs pivoting; shift μ")
        negative += pivot < 0
        for i in range(k + 1, d):
            factor = m[i][k] / pivot
            for j in range(k + 1, d):
                m[i][j] -= factor * m[k][j]
    return negative


def eigenvalues(c: Matrix) -> NDArray[np.float64]:
    """The eigenvalues of the positive semi-definite ``c``, largest first, each to the nearest float."""
    d = len(c)
    top = float(sum((c[i][i] for i in range(d)), Fraction(0))) * 2 + 1.0
    out = []
    for index in range(d):  # the index-th smallest: below(lo) <= index < below(hi)
        lo, hi = 0.0, top
        while hi - lo > 0.5 * math.ulp(hi):
            mid = lo / 2 + hi / 2
            if mid in (lo, hi):
                break
            if _below(c, Fraction(mid)) <= index:
                lo = mid
            else:
                hi = mid
        out.append(hi)
    return np.array(out[::-1])


def eigenvector(c: Matrix, value: float, steps: int = 2) -> NDArray[np.float64]:
    """The unit eigenvector of ``c`` for its eigenvalue nearest ``value``, by exact inverse iteration."""
    d = len(c)
    shifted = [[c[i][j] - (Fraction(value) if i == j else 0) for j in range(d)] for i in range(d)]
    v = [Fraction(1)] * d
    for _ in range(steps):
        v = solve(shifted, v)
        scale = max(abs(x) for x in v)
        v = [x / scale for x in v]
    vector = np.array([float(x) for x in v])
    return vector / np.linalg.norm(vector)


def ill_conditioned(
    rows: int,
    features: int,
    cond: float,
    *,
    offset: float = 50.0,
    intercept: float = 3.0,
    noise: float = 1e-6,
    seed: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A design whose centred columns have exactly the condition number ``cond``, and a linear target.

    The centred design is ``U diag(s) Vᵀ`` with orthonormal ``U`` (orthogonal to the ones vector),
    random orthogonal ``V`` and singular values spread geometrically from ``√rows`` down to
    ``√rows / cond``; each column then gets a mean of up to ``offset``. The target is linear (with
    ``intercept``) plus a little noise: with a large residual, least squares itself is sensitive to ``cond²`` whatever
    the method (Golub and Van Loan, section 5.3.8), and no solver could show its accuracy.
    """
    rng = np.random.default_rng(seed)
    gaussian = rng.standard_normal((rows, features))
    u = np.linalg.qr(gaussian - gaussian.mean(axis=0))[0]
    v = np.linalg.qr(rng.standard_normal((features, features)))[0]
    singular = np.sqrt(rows) * np.geomspace(1.0, 1.0 / cond, features)
    x = (u * singular) @ v.T + offset * rng.uniform(0.5, 1.0, features)
    y = x @ rng.standard_normal(features) + intercept + noise * rng.standard_normal(rows)
    return x, y
