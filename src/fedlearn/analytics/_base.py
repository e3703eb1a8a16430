"""What every summary-solved estimator shares: two ways to fit, one way to solve.

``fit_summary(summary)`` solves from a (federated) summary; ``fit(X, y)`` summarises local arrays
and then does exactly the same, which is what lets scikit-learn's ``check_estimator`` and plain
scikit-learn workflows exercise the very code that runs in a federation.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg
from scipy.special import logsumexp
from sklearn.base import BaseEstimator
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from fedlearn.analytics.rfactor import RFactor
from fedlearn.analytics.scan import accumulate
from fedlearn.analytics.summary import Summary, SummarySpec
from fedlearn.core.errors import ConfigError


class SummaryEstimator(BaseEstimator):
    """Base for estimators solved from a :class:`~fedlearn.analytics.Summary`.

    Subclasses set ``_target`` to ``None`` (features only), ``"value"`` (a regression target)
    or ``"class"`` (per-class moments), and implement ``_solve``.
    """

    _target: ClassVar[str | None] = None

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> Self:
        """Summarise local arrays in one pass, then solve as :meth:`fit_summary` does."""
        if self._target is None:
            x = np.asarray(validate_data(self, X, dtype=np.float64))
            spec = SummarySpec(columns=tuple(f"x{i}" for i in range(x.shape[1])))
            return self._fit(accumulate(x, spec), labels=None)
        x, target = validate_data(self, X, y, dtype=np.float64, y_numeric=self._target == "value")
        x = np.asarray(x)
        labels = None
        if self._target == "class":
            check_classification_targets(target)
            labels, target = np.unique(target, return_inverse=True)
        spec = SummarySpec(
            columns=tuple(f"x{i}" for i in range(x.shape[1])), target="y", by_class=self._target == "class"
        )
        return self._fit(accumulate(np.column_stack([x, target]), spec), labels=labels)

    def fit_summary(self, summary: Summary) -> Self:
        """Solve from a summary, e.g. the merged summary of a federation; returns ``self``."""
        if not isinstance(summary, Summary):
            raise ConfigError(f"`summary` must be a Summary; got {type(summary).__name__}")
        name = type(self).__name__
        if self._target == "value" and summary.spec.target is None:
            raise ConfigError(f"{name} needs a summary with a `target` column; this one has none")
        if self._target == "class" and summary.by_class is None:
            raise ConfigError(f"{name} needs per-class statistics; summarise with `by_class=True`")
        self.n_features_in_ = summary.spec.n_features
        return self._fit(summary, labels=None)

    def _fit(self, summary: Summary, labels: NDArray[Any] | None) -> Self:
        if summary.count == 0:
            raise ConfigError(f"{type(self).__name__} cannot be fitted on a summary of 0 rows")
        self._solve(summary)
        if self._target == "class":
            codes = summary.by_class.classes if summary.by_class is not None else np.zeros(0, np.int64)
            self.classes_ = codes if labels is None else labels[codes]
        self.n_samples_seen_ = summary.count
        return self

    def _solve(self, summary: Summary) -> None:
        raise NotImplementedError

    def _validated(self, X: ArrayLike) -> NDArray[np.float64]:
        check_is_fitted(self)
        return np.asarray(validate_data(self, X, dtype=np.float64, reset=False))


class ProbabilisticClassifierMixin:
    """``predict``/``predict_proba``/``predict_log_proba`` from per-class log scores.

    Subclasses implement ``_joint_log_likelihood(X) -> (n, K)``: the unnormalised log posterior.
    """

    classes_: NDArray[Any]

    def _joint_log_likelihood(self, X: ArrayLike) -> NDArray[np.float64]:
        raise NotImplementedError

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        scores = self._joint_log_likelihood(X)  # checks fitted-ness before classes_ is touched
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_log_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        jll = self._joint_log_likelihood(X)
        return jll - logsumexp(jll, axis=1, keepdims=True)

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        return np.exp(self.predict_log_proba(X))


def solve_psd(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Solve ``a x = b`` for symmetric positive semi-definite ``a``.

    Cholesky when ``a`` is positive definite. When it is singular (collinear columns), the
    minimum-norm least-squares solution, which for normal equations is also the minimum-norm
    solution of the original least-squares problem, the one ``numpy.linalg.lstsq`` gives.
    """
    try:
        return np.asarray(linalg.cho_solve(linalg.cho_factor(a), b))
    except linalg.LinAlgError:
        return np.asarray(linalg.lstsq(a, b)[0])


FALLBACK_ACCURACY = 1e-8
"""Above this expected relative error, a model solved from the moments instead of R warns."""


def solving_factor(summary: Summary, n_columns: int, model: str) -> RFactor:
    """The R factor of the first ``n_columns`` columns that ``model`` is solved from.

    When rows were removed without a rescan (the file-backed CLI), ``R`` is unknown and is
    rebuilt from the co-moment matrix, whose rounding is relative to ``cond(Xc)²``. Solving is
    then as accurate as the normal equations: fine for well-conditioned data, so this warns only
    when the expected relative error, ``cond(Xc)² × machine epsilon``, exceeds
    :data:`FALLBACK_ACCURACY`.
    """
    if summary.factor.known:
        return summary.factor.leading(n_columns)
    factor = RFactor.from_moments(summary.moments.select(range(n_columns)))
    d = summary.spec.n_features  # the design's conditioning, not that of [X | y]
    singular = linalg.svdvals(factor.r[:d, :d])
    cond = float(singular[0] / singular[-1]) if singular[-1] > 0 else np.inf
    expected = cond**2 * np.finfo(np.float64).eps
    if expected > FALLBACK_ACCURACY:
        warnings.warn(
            f"{model} is solved from the moments, because rows were removed and the R factor of the remaining "
            f"rows is unknown; with condition number {cond:.3g} expect a relative error near {expected:.1g}. "
            "For full accuracy, summarise the current rows of each node that removed rows afresh (in a job "
            "directory: delete that node's summary file, then join again from one CSV of its current rows)",
            UserWarning,
            stacklevel=2,
        )
    return factor


def check_priors(priors: ArrayLike | None, counts: NDArray[np.int64]) -> NDArray[np.float64]:
    """Class priors: the given ones (renormalised), or the class frequencies."""
    if priors is None:
        return counts / counts.sum()
    p = np.asarray(priors, dtype=np.float64)
    if p.shape != counts.shape or (p < 0).any() or p.sum() <= 0:
        raise ConfigError(f"`priors` must be {len(counts)} non-negative numbers, one per class; got {priors!r}")
    return p / p.sum()
