"""Gaussian naive Bayes from per-class means and variances."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import ClassifierMixin

from fedlearn.analytics._base import ProbabilisticClassifierMixin, SummaryEstimator, check_priors
from fedlearn.analytics.summary import Summary
from fedlearn.core.checks import NON_NEGATIVE, check_real


class FederatedGaussianNB(ProbabilisticClassifierMixin, ClassifierMixin, SummaryEstimator):
    """Gaussian naive Bayes equal to :class:`sklearn.naive_bayes.GaussianNB` on the pooled data.

    As in scikit-learn, ``var_smoothing`` times the largest feature variance of the pooled data
    is added to every class variance, so a feature that is constant within a class cannot
    produce a zero variance.

    Attributes: ``classes_``, ``class_count_``, ``class_prior_``, ``theta_`` (class means),
    ``var_`` (class variances), ``epsilon_``.
    """

    _target = "class"

    def __init__(self, *, priors: ArrayLike | None = None, var_smoothing: float = 1e-9) -> None:
        self.priors = priors
        self.var_smoothing = var_smoothing

    def _solve(self, summary: Summary) -> None:
        smoothing = check_real("var_smoothing", self.var_smoothing, NON_NEGATIVE)
        assert summary.by_class is not None  # guaranteed by fit and fit_summary
        per_class = summary.by_class.moments
        self.epsilon_ = smoothing * float(np.max(summary.features.variance(ddof=0)))
        self.class_count_ = per_class.count.astype(np.float64)
        self.class_prior_ = check_priors(self.priors, per_class.count)
        self.theta_ = per_class.mean.copy()
        self.var_ = per_class.variance(ddof=0) + self.epsilon_

    def _joint_log_likelihood(self, X: ArrayLike) -> NDArray[np.float64]:
        x = self._validated(X)
        log_norm = -0.5 * np.sum(np.log(2.0 * np.pi * self.var_), axis=1)
        scores: list[Any] = [
            np.log(self.class_prior_[k]) + log_norm[k] - 0.5 * np.sum((x - self.theta_[k]) ** 2 / self.var_[k], axis=1)
            for k in range(len(self.theta_))
        ]
        return np.stack(scores, axis=1)
