"""scikit-learn's own estimator checks, and the fitted-before-use contract."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from fedlearn.analytics import (
    FederatedCovariance,
    FederatedGaussianNB,
    FederatedLinearDiscriminantAnalysis,
    FederatedLinearRegression,
    FederatedLogisticRegression,
    FederatedPCA,
    FederatedQuadraticDiscriminantAnalysis,
    FederatedRidge,
)

ESTIMATORS = [
    FederatedLinearRegression(),
    FederatedRidge(),
    FederatedPCA(),
    FederatedGaussianNB(),
    FederatedLinearDiscriminantAnalysis(),
    FederatedQuadraticDiscriminantAnalysis(),
    FederatedLogisticRegression(),
    FederatedCovariance(),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_estimator_checks(estimator: object, check: object) -> None:
    check(estimator)  # type: ignore[operator]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_using_an_estimator_before_fit_raises_not_fitted(estimator: object) -> None:
    method = next(getattr(estimator, m) for m in ("predict", "transform", "mahalanobis") if hasattr(estimator, m))
    with pytest.raises(NotFittedError):
        method(np.ones((2, 3)))
