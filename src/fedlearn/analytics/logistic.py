"""Logistic regression by federated Newton steps (IRLS).

Logistic regression has no finite summary, but each Newton step does: at the current
coefficients every node returns the sums over its rows of the loss, its gradient and its
Hessian (:class:`NewtonStats`). Sums add, so the coordinator sees the pooled loss, gradient and
Hessian, adds the L2 penalty and takes the pooled Newton step. The iterates are those of a
centralised Newton solver on the pooled data, and converge quadratically to its optimum, the
same optimum scikit-learn's ``LogisticRegression`` finds: the mean loss plus
``||coef||² / (2 C n)``, intercepts unpenalised.

The multinomial model has one coefficient row per class; adding a constant to every class's
intercept (or, with ``C = inf``, to any unpenalised column) changes nothing, so the Hessian is
singular along those directions. A zero-cost gauge term ``ρ/2 (Σ_k θ_kj)²`` on those columns
pins the representative with zero class-sum, the convention scikit-learn reports.

Newton's method is invariant to an affine change of the features in exact arithmetic, but not
in floating point: with features whose means are near 1e6, the columns and the intercept are
nearly collinear, every score ``x·w + b`` cancels six digits and the Hessian is too
ill-conditioned to give a descent direction. So the solver works on standardized features
(:class:`FeatureScaling`: centred, when there is an intercept, and scaled, from the federated
moments), which each node applies to its rows before anything is summed; the penalty is mapped
to that space, so the optimum is the same, and the coefficients are mapped back at the end.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import expit, log_softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from fedlearn.analytics._base import ProbabilisticClassifierMixin, solve_psd
from fedlearn.analytics.classes import class_codes
from fedlearn.analytics.moments import Moments
from fedlearn.core.checks import NON_NEGATIVE, POSITIVE, check_int, check_real
from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.core.params import ParamSet

_BLOCK_VALUES = 1 << 22  # rows × parameters per block when forming the Hessian: ~32 MB of float64


@dataclass(frozen=True, slots=True, kw_only=True)
class NewtonStats:
    """Row sums of the unpenalised loss, gradient and Hessian at one coefficient point."""

    count: int
    loss: float
    gradient: NDArray[np.float64]
    hessian: NDArray[np.float64]

    def merge(self, other: NewtonStats) -> NewtonStats:
        return NewtonStats(
            count=self.count + other.count,
            loss=self.loss + other.loss,
            gradient=self.gradient + other.gradient,
            hessian=self.hessian + other.hessian,
        )

    def to_params(self) -> ParamSet:
        return ParamSet(
            {
                "count": np.int64(self.count),
                "loss": np.float64(self.loss),
                "gradient": self.gradient,
                "hessian": self.hessian,
            }
        )

    @classmethod
    def from_params(cls, params: ParamSet, size: int) -> NewtonStats:
        expected = {"count": (), "loss": (), "gradient": (size,), "hessian": (size, size)}
        for name, shape in expected.items():
            if name not in params or params[name].shape != shape:
                raise ValidationError(f"Newton statistics: {name!r} must have shape {shape}")
            if not np.isfinite(params[name]).all():
                raise ValidationError(f"Newton statistics: {name!r} is not finite")
        return cls(
            count=int(params["count"]),
            loss=float(params["loss"]),
            gradient=np.array(params["gradient"]),
            hessian=np.array(params["hessian"]),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureScaling:
    """The affine map ``(x - shift) / scale`` under which Newton's method works on the features.

    ``scale`` is positive; ``shift`` is zero for a model without intercept, which centring
    would change.
    """

    shift: NDArray[np.float64]
    scale: NDArray[np.float64]

    def __post_init__(self) -> None:
        shift, scale = np.array(self.shift, dtype=np.float64), np.array(self.scale, dtype=np.float64)
        if shift.ndim != 1 or scale.shape != shift.shape:
            raise ConfigError(f"`shift` and `scale` must be 1-D of one length; got shapes {shift.shape}, {scale.shape}")
        if not (np.isfinite(shift).all() and np.isfinite(scale).all() and (scale > 0).all()):
            raise ConfigError("`shift` must be finite and `scale` finite and positive; got other values")
        shift.flags.writeable = scale.flags.writeable = False
        object.__setattr__(self, "shift", shift)
        object.__setattr__(self, "scale", scale)

    @classmethod
    def of(cls, moments: Moments, *, centre: bool) -> FeatureScaling:
        """Each feature's mean (if ``centre``) and spread about it: standard deviation, or RMS if not centred.

        A feature whose variance is within rounding of zero is left unscaled, as scikit-learn's
        ``StandardScaler`` leaves it: dividing by rounding noise would only magnify the noise.
        """
        n, eps = float(moments.count), np.finfo(np.float64).eps
        variance = moments.variance(ddof=0)
        if centre:
            constant = variance <= n * eps * variance + (n * moments.mean * eps) ** 2
            spread = np.where(constant, 0.0, np.sqrt(variance))
        else:
            spread = np.sqrt(variance + moments.mean**2)
        scale = np.where(spread > 0, spread, 1.0)
        return cls(shift=moments.mean if centre else np.zeros(moments.n_features), scale=scale)

    def apply(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        return (features - self.shift) / self.scale

    def to_model(self, theta: NDArray[np.float64], *, fit_intercept: bool) -> NDArray[np.float64]:
        """Coefficients for the original features from those for the scaled ones (intercept last)."""
        d = len(self.scale)
        coef = theta[:, :d] / self.scale
        if not fit_intercept:
            return coef
        return np.column_stack([coef, theta[:, d] - coef @ self.shift])

    def to_params(self) -> ParamSet:
        return ParamSet({"shift": self.shift, "scale": self.scale})

    @classmethod
    def from_params(cls, params: ParamSet, n_features: int) -> FeatureScaling:
        """The scaling a task carries; ``shift`` and ``scale`` must each hold ``n_features`` values."""
        for name in ("shift", "scale"):
            if name not in params or params[name].shape != (n_features,):
                got = params[name].shape if name in params else "nothing"
                raise ConfigError(f"task params {name!r} must have shape ({n_features},); got {got}")
        return cls(shift=params["shift"], scale=params["scale"])


class NewtonOracle(Protocol):
    """Pooled :class:`NewtonStats` at ``theta``: local arrays, or one federated round."""

    def __call__(self, theta: NDArray[np.float64]) -> NewtonStats: ...


def logistic_stats(
    chunks: Iterable[NDArray[np.float64]],
    theta: NDArray[np.float64],
    classes: NDArray[np.int64],
    *,
    fit_intercept: bool,
    scaling: FeatureScaling | None = None,
) -> NewtonStats:
    """One pass over ``chunks`` (features then the class-code column) at coefficients ``theta``.

    ``theta`` has one row per class (one row in the binary case) and one column per feature,
    plus a last column for the intercept when ``fit_intercept``. With ``scaling``, the features
    are scaled first and ``theta`` applies to the scaled features.
    """
    rows, width = theta.shape
    size = theta.size
    total = NewtonStats(count=0, loss=0.0, gradient=np.zeros(size), hessian=np.zeros((size, size)))
    block = max(1, _BLOCK_VALUES // size)
    for chunk in chunks:
        for start in range(0, len(chunk), block):
            part = chunk[start : start + block]
            features = part[:, :-1] if scaling is None else scaling.apply(part[:, :-1])
            x = np.column_stack([features, np.ones(len(part))]) if fit_intercept else features
            if x.shape[1] != width:
                raise ConfigError(f"coefficients have {width} columns but the data gives {x.shape[1]}")
            codes = class_codes(part[:, -1])
            index = np.searchsorted(classes, codes)
            if (index >= len(classes)).any() or (classes[np.minimum(index, len(classes) - 1)] != codes).any():
                raise ConfigError(f"the data holds a class outside the agreed classes {classes.tolist()}")
            total = total.merge(_binary(x, index, theta[0]) if rows == 1 else _multinomial(x, index, theta))
    return total


def _binary(x: NDArray[np.float64], y: NDArray[np.intp], w: NDArray[np.float64]) -> NewtonStats:
    z = x @ w
    p = expit(z)
    loss = float(np.sum(np.logaddexp(0.0, z) - y * z))
    return NewtonStats(count=len(x), loss=loss, gradient=x.T @ (p - y), hessian=x.T @ (x * (p * (1.0 - p))[:, None]))


def _multinomial(x: NDArray[np.float64], y: NDArray[np.intp], theta: NDArray[np.float64]) -> NewtonStats:
    n, k = len(x), len(theta)
    z = x @ theta.T
    log_p = log_softmax(z, axis=1)
    p = np.exp(log_p)
    loss = float(-np.sum(log_p[np.arange(n), y]))
    residual = p.copy()
    residual[np.arange(n), y] -= 1.0
    gradient = (residual.T @ x).ravel()
    outer = (p[:, :, None] * x[:, None, :]).reshape(n, -1)  # row i: vec(p_i x_iᵀ)
    hessian = -(outer.T @ outer)
    width = x.shape[1]
    for c in range(k):
        hessian[c * width : (c + 1) * width, c * width : (c + 1) * width] += x.T @ (x * p[:, c : c + 1])
    return NewtonStats(count=n, loss=loss, gradient=gradient, hessian=hessian)


class FederatedLogisticRegression(ProbabilisticClassifierMixin, ClassifierMixin, BaseEstimator):
    """L2-penalised logistic regression (binary or multinomial), solved by Newton's method.

    Equal, at convergence, to :class:`sklearn.linear_model.LogisticRegression` with the same
    ``C`` fitted on the pooled data. ``fit(X, y)`` solves on local arrays; a federation calls
    :meth:`fit_oracle` with an oracle that runs one round per call. ``tol`` bounds the largest
    gradient entry and half the squared Newton decrement of the mean loss, as scikit-learn's
    Newton solvers do; a final Newton step then brings the answer to machine precision.

    Newton's method runs on standardized features (see the module docstring): ``fit`` and
    :class:`~fedlearn.analytics.AnalyticsJob` take the scaling from the data's moments, and
    :meth:`fit_oracle` from its ``scaling`` argument.

    Attributes: ``classes_``, ``coef_`` (1 or n_classes × n_features), ``intercept_``,
    ``n_iter_`` (Newton steps), ``n_rounds_`` (oracle calls, i.e. federated rounds).
    """

    def __init__(self, *, C: float = 1.0, fit_intercept: bool = True, max_iter: int = 100, tol: float = 1e-10) -> None:
        self.C = C
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        x, target = validate_data(self, X, y, dtype=np.float64)
        x = np.asarray(x)
        check_classification_targets(target)
        labels, codes = np.unique(target, return_inverse=True)
        data = np.column_stack([x, codes])
        classes = np.arange(len(labels), dtype=np.int64)
        fit_intercept = bool(self.fit_intercept)
        scaling = FeatureScaling.of(Moments.of(x), centre=fit_intercept)
        self.fit_oracle(
            lambda theta: logistic_stats([data], theta, classes, fit_intercept=fit_intercept, scaling=scaling),
            classes=classes,
            n_features=x.shape[1],
            scaling=scaling,
        )
        self.classes_ = labels
        return self

    def fit_oracle(
        self,
        oracle: NewtonOracle,
        *,
        classes: ArrayLike,
        n_features: int,
        scaling: FeatureScaling | None = None,
    ) -> Self:
        """Newton's method where every evaluation is ``oracle(theta)``; returns ``self``.

        With ``scaling``, ``theta`` applies to the scaled features, so the oracle must scale its
        rows the same way (``logistic_stats(..., scaling=scaling)`` does); the penalty is mapped
        to the scaled space and the coefficients back, so the model is the one of the original
        features. Without it, the oracle sees the features as they are.
        """
        inverse_penalty = self.C  # C = inf (no penalty) is allowed, but an Interval holds only finite numbers
        c = math.inf if inverse_penalty == math.inf else check_real("C", inverse_penalty, POSITIVE)
        tol = check_real("tol", self.tol, NON_NEGATIVE)
        max_iter = check_int("max_iter", self.max_iter, low=1)
        self.classes_ = np.asarray(classes)
        k = len(self.classes_)
        if k < 2:
            raise ConfigError(f"logistic regression needs at least 2 classes; got {k} class")
        fit_intercept = bool(self.fit_intercept)
        rows, width = (1 if k == 2 else k), n_features + int(fit_intercept)
        scale = np.ones(n_features) if scaling is None else scaling.scale
        if scale.shape != (n_features,):
            raise ConfigError(f"`scaling` must be for {n_features} features; got {len(scale)}")
        # ||w||² / (2C) with w = v / scale, for the coefficients v of the scaled features
        weights = np.zeros(n_features) if c == math.inf else 1.0 / (c * scale**2)
        penalty, gauge = self._penalty_masks(rows, width, weights)
        theta = np.zeros((rows, width))
        stats = oracle(theta)
        if stats.count == 0:
            raise ConfigError("logistic regression cannot be fitted on 0 rows")
        objective = _objective(stats, theta, penalty)
        self.n_iter_, self.n_rounds_ = 0, 1
        converged = False
        for _ in range(max_iter):
            gradient, hessian = _derivatives(stats, theta, penalty, gauge)
            step = -solve_psd(hessian, gradient)
            decrement = float(-gradient @ step)
            self.n_iter_ += 1
            if np.max(np.abs(gradient)) / stats.count <= tol and 0.5 * decrement / stats.count <= tol:
                theta = theta + step.reshape(rows, width)  # quadratic convergence: this one is free
                converged = True
                break
            theta, stats, objective = self._line_search(
                oracle, theta, step, objective=objective, slope=-decrement, penalty=penalty
            )
        if not converged:
            warnings.warn(
                f"Newton's method did not converge in {max_iter} iterations; raise `max_iter` or `tol`",
                ConvergenceWarning,
                stacklevel=2,
            )
        if scaling is not None:
            theta = scaling.to_model(theta, fit_intercept=fit_intercept)
        self.n_features_in_ = n_features
        self.coef_ = theta[:, :n_features].copy()
        self.intercept_ = theta[:, n_features].copy() if fit_intercept else np.zeros(rows)
        return self

    @staticmethod
    def _penalty_masks(
        rows: int, width: int, weights: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """The L2 weight of each entry of ``theta`` (``weights`` per feature, none on intercepts), and the gauge."""
        penalised = np.zeros((rows, width))
        penalised[:, : len(weights)] = weights
        # columns along which a multinomial model is invariant: unpenalised ones
        gauge = np.zeros(width, dtype=bool) if rows == 1 else penalised[0] == 0.0
        return penalised.ravel(), gauge

    def _line_search(
        self,
        oracle: NewtonOracle,
        theta: NDArray[np.float64],
        step: NDArray[np.float64],
        *,
        objective: float,
        slope: float,
        penalty: NDArray[np.float64],
    ) -> tuple[NDArray[np.float64], NewtonStats, float]:
        """Backtracking on the pooled objective; each trial point costs one round."""
        t = 1.0
        for _ in range(30):
            trial = theta + t * step.reshape(theta.shape)
            stats = oracle(trial)
            self.n_rounds_ += 1
            value = _objective(stats, trial, penalty)
            if value <= objective + 1e-4 * t * slope or abs(value - objective) <= 1e-14 * abs(objective):
                return trial, stats, value
            t *= 0.5
        raise ConfigError("the Newton line search failed to decrease the loss; the data may be separable: lower `C`")

    def decision_function(self, X: ArrayLike) -> NDArray[np.float64]:
        check_is_fitted(self)
        x = np.asarray(validate_data(self, X, dtype=np.float64, reset=False))
        scores = x @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def _joint_log_likelihood(self, X: ArrayLike) -> NDArray[np.float64]:
        scores = self.decision_function(X)
        return np.column_stack([np.zeros_like(scores), scores]) if scores.ndim == 1 else scores


def _objective(stats: NewtonStats, theta: NDArray[np.float64], penalty: NDArray[np.float64]) -> float:
    """Loss sum plus the L2 penalty: n times scikit-learn's objective, with the same minimiser."""
    flat = theta.ravel()
    return stats.loss + 0.5 * float(np.sum(penalty * flat**2))


def _derivatives(
    stats: NewtonStats, theta: NDArray[np.float64], penalty: NDArray[np.float64], gauge: NDArray[np.bool_]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    rows, width = theta.shape
    gradient = stats.gradient + penalty * theta.ravel()
    hessian = stats.hessian + np.diag(penalty)
    # The gauge term is zero on the iterates (they start at 0 and Newton steps keep every
    # class-sum at zero), so the objective the line search checks can leave it out.
    if gauge.any():
        rho = max(float(np.trace(stats.hessian)) / len(hessian), 1e-12)
        for j in np.flatnonzero(gauge):
            idx = np.arange(rows) * width + j
            gradient[idx] += rho * theta[:, j].sum()
            hessian[np.ix_(idx, idx)] += rho
    return gradient, hessian
