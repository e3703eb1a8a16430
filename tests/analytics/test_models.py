"""Every summary-solved model equals scikit-learn fitted on the pooled data, to 1e-8 relative.

Each case splits a real dataset at random into 2 to 50 nodes of unequal sizes, summarises each
node on its own, merges the summaries in a random order and compares with scikit-learn.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.covariance import EmpiricalCovariance
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis, QuadraticDiscriminantAnalysis
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.naive_bayes import GaussianNB

from fedlearn.analytics import (
    FederatedCovariance,
    FederatedGaussianNB,
    FederatedLinearDiscriminantAnalysis,
    FederatedLinearRegression,
    FederatedPCA,
    FederatedQuadraticDiscriminantAnalysis,
    FederatedRidge,
    describe,
)
from fedlearn.core import ConfigError
from tests.analytics.conftest import assert_close, federated, load, spec_for

SPLITS = [(2, 0), (7, 1), (50, 2)]  # (nodes, seed)


@pytest.mark.parametrize(("nodes", "seed"), SPLITS)
@pytest.mark.parametrize("name", ["diabetes", "make_regression", "breast_cancer", "wine"])
def test_linear_regression_matches_sklearn_on_unequal_splits(name: str, nodes: int, seed: int) -> None:
    x, y = load("regression", name)
    ours = FederatedLinearRegression().fit_summary(federated(x, y, spec_for(x.shape[1]), nodes, seed))
    ref = LinearRegression().fit(x, y)
    assert_close(ours.coef_, ref.coef_)
    assert_close(ours.intercept_, ref.intercept_)
    assert_close(ours.predict(x), ref.predict(x))


# Without an intercept the raw cross-products of breast_cancer (feature scales 1e-3..1e3) are too
# ill-conditioned for normal equations to reach 1e-8 (cond(X)² ~ 1e16); centring fixes that above.
@pytest.mark.parametrize(("nodes", "seed"), SPLITS)
@pytest.mark.parametrize("name", ["diabetes", "make_regression", "wine"])
def test_linear_regression_without_intercept_matches_sklearn(name: str, nodes: int, seed: int) -> None:
    x, y = load("regression", name)
    ours = FederatedLinearRegression(fit_intercept=False).fit_summary(
        federated(x, y, spec_for(x.shape[1]), nodes, seed)
    )
    ref = LinearRegression(fit_intercept=False).fit(x, y)
    assert_close(ours.coef_, ref.coef_)
    assert ours.intercept_ == 0.0
    assert_close(ours.predict(x), ref.predict(x))


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize(("nodes", "seed"), SPLITS)
@pytest.mark.parametrize("name", ["diabetes", "make_regression", "breast_cancer", "wine"])
def test_ridge_matches_sklearn_on_unequal_splits(name: str, nodes: int, seed: int, fit_intercept: bool) -> None:
    x, y = load("regression", name)
    summary = federated(x, y, spec_for(x.shape[1]), nodes, seed)
    ours = FederatedRidge(alpha=0.7, fit_intercept=fit_intercept).fit_summary(summary)
    ref = Ridge(alpha=0.7, fit_intercept=fit_intercept).fit(x, y)
    assert_close(ours.coef_, ref.coef_)
    assert_close(ours.intercept_, ref.intercept_)
    assert_close(ours.predict(x), ref.predict(x))


@pytest.mark.parametrize(("nodes", "seed"), SPLITS)
@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer", "digits"])
def test_pca_matches_sklearn_on_unequal_splits(name: str, nodes: int, seed: int) -> None:
    x, _ = load("classification", name)
    summary = federated(x, None, spec_for(x.shape[1], target=False), nodes, seed)
    ours = FederatedPCA(n_components=3).fit_summary(summary)
    ref = PCA(n_components=3).fit(x)
    assert_close(ours.components_, ref.components_)
    assert_close(ours.explained_variance_, ref.explained_variance_)
    assert_close(ours.explained_variance_ratio_, ref.explained_variance_ratio_)
    assert_close(ours.singular_values_, ref.singular_values_)
    assert_close(ours.noise_variance_, ref.noise_variance_)
    assert_close(ours.transform(x), ref.transform(x))


def test_pca_whitening_and_inverse_transform_match_sklearn() -> None:
    x, _ = load("classification", "wine")
    ours = FederatedPCA(n_components=0.95, whiten=True).fit_summary(
        federated(x, None, spec_for(13, target=False), 5, 3)
    )
    ref = PCA(n_components=0.95, whiten=True).fit(x)
    assert ours.n_components_ == ref.n_components_
    assert_close(ours.transform(x), ref.transform(x))
    assert_close(ours.inverse_transform(ours.transform(x)), ref.inverse_transform(ref.transform(x)))


@pytest.mark.parametrize(("nodes", "seed"), SPLITS)
@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer", "digits"])
def test_gaussian_nb_matches_sklearn_on_unequal_splits(name: str, nodes: int, seed: int) -> None:
    x, y = load("classification", name)
    ours = FederatedGaussianNB().fit_summary(federated(x, y, spec_for(x.shape[1], by_class=True), nodes, seed))
    ref = GaussianNB().fit(x, y)
    np.testing.assert_array_equal(ours.classes_, ref.classes_)
    assert_close(ours.theta_, ref.theta_)
    assert_close(ours.var_, ref.var_)
    assert_close(ours.class_prior_, ref.class_prior_)
    assert_close(ours.epsilon_, ref.epsilon_)
    assert_close(ours.predict_proba(x), ref.predict_proba(x))
    np.testing.assert_array_equal(ours.predict(x), ref.predict(x))


LDA_CASES = [
    (name, solver)
    for name in ("iris", "wine", "breast_cancer", "digits")
    for solver in ("svd", "lsqr", "eigen")
    if (name, solver) != ("digits", "eigen")  # digits has constant pixels: eigen needs shrinkage
]


@pytest.mark.parametrize(("nodes", "seed"), SPLITS)
@pytest.mark.parametrize(("name", "solver"), LDA_CASES)
def test_lda_matches_sklearn_on_unequal_splits(name: str, solver: str, nodes: int, seed: int) -> None:
    x, y = load("classification", name)
    summary = federated(x, y, spec_for(x.shape[1], by_class=True), nodes, seed)
    ours = FederatedLinearDiscriminantAnalysis(solver=solver).fit_summary(summary)
    ref = LinearDiscriminantAnalysis(solver=solver).fit(x, y)
    assert_close(ours.coef_, ref.coef_)
    assert_close(ours.intercept_, ref.intercept_)
    assert_close(ours.predict_proba(x), ref.predict_proba(x))
    np.testing.assert_array_equal(ours.predict(x), ref.predict(x))
    if solver != "lsqr":
        assert_close(ours.explained_variance_ratio_, ref.explained_variance_ratio_)
        # a projection axis is defined up to its sign, by scikit-learn's SVD as by ours
        assert_close(np.abs(ours.transform(x)), np.abs(ref.transform(x)))


def test_lda_with_fixed_shrinkage_matches_sklearn() -> None:
    x, y = load("classification", "digits")
    summary = federated(x, y, spec_for(64, by_class=True), 4, 0)
    ours = FederatedLinearDiscriminantAnalysis(solver="eigen", shrinkage=0.2).fit_summary(summary)
    ref = LinearDiscriminantAnalysis(solver="eigen", shrinkage=0.2).fit(x, y)
    assert_close(ours.coef_, ref.coef_)
    assert_close(ours.predict_proba(x), ref.predict_proba(x))


QDA_CASES = [("iris", 0.0), ("wine", 0.0), ("breast_cancer", 0.1), ("digits", 0.1)]


@pytest.mark.parametrize(("nodes", "seed"), SPLITS)
@pytest.mark.parametrize(("name", "reg_param"), QDA_CASES)
def test_qda_matches_sklearn_on_unequal_splits(name: str, reg_param: float, nodes: int, seed: int) -> None:
    x, y = load("classification", name)
    summary = federated(x, y, spec_for(x.shape[1], by_class=True), nodes, seed)
    ours = FederatedQuadraticDiscriminantAnalysis(reg_param=reg_param, store_covariance=True).fit_summary(summary)
    ref = QuadraticDiscriminantAnalysis(reg_param=reg_param, store_covariance=True).fit(x, y)
    assert_close(ours.means_, ref.means_)
    assert_close(np.concatenate(ours.scalings_), np.concatenate(ref.scalings_))
    assert_close(np.stack(ours.covariance_), np.stack(ref.covariance_))
    assert_close(ours.decision_function(x), ref.decision_function(x))
    assert_close(ours.predict_proba(x), ref.predict_proba(x))
    np.testing.assert_array_equal(ours.predict(x), ref.predict(x))


@pytest.mark.parametrize("assume_centered", [False, True])
@pytest.mark.parametrize(("name", "nodes"), [("diabetes", 3), ("wine", 50), ("make_regression", 11)])
def test_covariance_matches_sklearn_on_unequal_splits(name: str, nodes: int, assume_centered: bool) -> None:
    x, _ = load("regression", name)
    ours = FederatedCovariance(assume_centered=assume_centered).fit_summary(
        federated(x, None, spec_for(x.shape[1], target=False), nodes, 4)
    )
    ref = EmpiricalCovariance(assume_centered=assume_centered).fit(x)
    # diabetes is centred already: its means are rounding noise, so compare on the data's scale
    np.testing.assert_allclose(ours.location_, ref.location_, rtol=1e-8, atol=1e-12 * np.abs(x).max())
    assert_close(ours.covariance_, ref.covariance_)
    assert_close(ours.mahalanobis(x), ref.mahalanobis(x), rtol=1e-7)  # precision of a wine-scaled matrix
    assert_close(ours.score(x), ref.score(x))
    assert_close(ours.correlation_, np.corrcoef(x, rowvar=False))


def test_describe_matches_numpy_on_the_pooled_columns() -> None:
    x, y = load("regression", "diabetes")
    table = describe(federated(x, y, spec_for(10), 9, 5))
    pooled = np.column_stack([x, y])
    assert table.columns == (*(f"x{i}" for i in range(10)), "y")
    assert table.count == len(pooled)
    assert_close(table.mean, pooled.mean(axis=0))
    assert_close(table.std, pooled.std(axis=0, ddof=1))
    np.testing.assert_array_equal(table.min, pooled.min(axis=0))
    np.testing.assert_array_equal(table.max, pooled.max(axis=0))
    assert_close(table.sum, pooled.sum(axis=0))


def test_refitting_from_summaries_takes_milliseconds() -> None:
    import time

    x, y = load("regression", "make_regression")
    summary = federated(x, y, spec_for(15), 10, 6)
    started = time.perf_counter()
    for _ in range(20):
        FederatedRidge(alpha=0.1).fit_summary(summary)
    assert (time.perf_counter() - started) / 20 < 0.05


def test_regressor_refuses_a_summary_without_a_target() -> None:
    summary = federated(np.ones((20, 2)), None, spec_for(2, target=False), 2, 0)
    with pytest.raises(ConfigError, match="needs a summary with a `target`"):
        FederatedLinearRegression().fit_summary(summary)


def test_classifier_refuses_a_summary_without_classes() -> None:
    x, y = load("classification", "iris")
    with pytest.raises(ConfigError, match="per-class statistics"):
        FederatedGaussianNB().fit_summary(federated(x, y, spec_for(4), 2, 0))


def test_fit_summary_refuses_something_that_is_not_a_summary() -> None:
    with pytest.raises(ConfigError, match="must be a Summary; got dict"):
        FederatedPCA().fit_summary({})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("estimator", "message"),
    [
        (FederatedRidge(alpha=-1.0), "`alpha` must be in [0, inf); got -1.0"),
        (FederatedPCA(n_components=99), "`n_components` must be an integer in [0, 4]; got 99"),
        (FederatedLinearDiscriminantAnalysis(solver="magic"), "`solver` must be one of svd, lsqr, eigen; got 'magic'"),
        (FederatedLinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"), "needs fourth moments"),
        (FederatedQuadraticDiscriminantAnalysis(reg_param=-0.5), "`reg_param` must be"),
        (FederatedGaussianNB(priors=[1.0]), "`priors` must be 3 non-negative numbers"),
    ],
)
def test_bad_parameters_are_config_errors_naming_the_parameter(estimator: object, message: str) -> None:
    x, y = load("classification", "iris")
    with pytest.raises(ConfigError, match=re.escape(message)):
        estimator.fit(x, y)  # type: ignore[attr-defined]


def test_string_class_labels_work_when_fitting_local_arrays() -> None:
    x, y = load("classification", "iris")
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    ours = FederatedGaussianNB().fit(x, names)
    assert set(ours.predict(x)) <= set(names)
    np.testing.assert_array_equal(ours.predict(x), GaussianNB().fit(x, names).predict(x))
