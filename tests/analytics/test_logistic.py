"""Federated Newton/IRLS converges to scikit-learn's pooled optimum, binary and multinomial."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from fedlearn.analytics import (
    AnalyticsJob,
    FeatureScaling,
    FederatedLogisticRegression,
    Moments,
    NewtonStats,
    logistic_stats,
    merge_all,
)
from fedlearn.core import ConfigError, ValidationError, decode, encode
from tests.analytics.conftest import OPEN, assert_close, load, random_split


def _federated_fit(
    x: np.ndarray, y: np.ndarray, nodes: int, seed: int, **kwargs: object
) -> FederatedLogisticRegression:
    """Each oracle call is one round: every node returns sums over its own rows only."""
    classes = np.unique(y)
    parts = [np.column_stack([x[p], y[p]]) for p in random_split(len(x), nodes, seed)]

    def oracle(theta: np.ndarray) -> NewtonStats:
        return merge_all(
            [
                logistic_stats([part], theta, classes, fit_intercept=bool(kwargs.get("fit_intercept", True)))
                for part in parts
            ]
        )

    model = FederatedLogisticRegression(**kwargs)  # type: ignore[arg-type]
    return model.fit_oracle(oracle, classes=classes, n_features=x.shape[1])


@functools.cache
def _reference(name: str, c: float, fit_intercept: bool) -> LogisticRegression:
    x, y = load("classification", name, standardize=True)
    return LogisticRegression(C=c, fit_intercept=fit_intercept, solver="newton-cholesky", tol=1e-14, max_iter=1000).fit(
        x, y
    )


@pytest.mark.parametrize(("nodes", "seed"), [(2, 0), (9, 1), (50, 2)])
@pytest.mark.parametrize(
    ("name", "c"), [("breast_cancer", 1.0), ("iris", 1.0), ("wine", 0.1), ("make_classification", 10.0)]
)
def test_logistic_regression_matches_sklearn_on_unequal_splits(name: str, c: float, nodes: int, seed: int) -> None:
    x, y = load("classification", name, standardize=True)
    ours = _federated_fit(x, y, nodes, seed, C=c)
    ref = _reference(name, c, True)
    assert_close(ours.coef_, ref.coef_)
    assert_close(ours.intercept_, ref.intercept_)
    assert_close(ours.predict_proba(x), ref.predict_proba(x))
    np.testing.assert_array_equal(ours.predict(x), ref.predict(x))


@pytest.mark.parametrize("name", ["breast_cancer", "iris"])
def test_logistic_regression_without_intercept_matches_sklearn(name: str) -> None:
    x, y = load("classification", name, standardize=True)
    ours = _federated_fit(x, y, 5, 3, fit_intercept=False)
    ref = _reference(name, 1.0, False)
    assert_close(ours.coef_, ref.coef_)
    np.testing.assert_array_equal(ours.intercept_, np.zeros_like(ref.intercept_))


def test_multinomial_intercepts_follow_sklearns_zero_sum_convention() -> None:
    x, y = load("classification", "wine", standardize=True)
    ours = _federated_fit(x, y, 4, 0)
    assert abs(ours.intercept_.sum()) < 1e-10
    assert np.abs(ours.coef_.sum(axis=0)).max() < 1e-10


def test_newton_converges_in_few_rounds() -> None:
    x, y = load("classification", "breast_cancer", standardize=True)
    ours = _federated_fit(x, y, 10, 4)
    assert ours.n_rounds_ <= 15


def test_local_fit_equals_the_federated_fit() -> None:
    x, y = load("classification", "iris", standardize=True)
    assert_close(FederatedLogisticRegression().fit(x, y).coef_, _federated_fit(x, y, 7, 5).coef_, rtol=1e-12)


def test_too_few_iterations_warn_about_convergence() -> None:
    x, y = load("classification", "iris", standardize=True)
    with pytest.warns(ConvergenceWarning, match="raise `max_iter`"):
        FederatedLogisticRegression(max_iter=1).fit(x, y)


FAR = 1e6  # every feature's mean, with a spread of 1: what used to stop Newton's method


def _far_from_zero(name: str) -> tuple[np.ndarray, np.ndarray, LogisticRegression]:
    """Standardized features moved to a mean of 1e6, and the reference fitted before the move.

    Moving features changes only the intercept: ``b' = b - w·shift``, with the same ``w``.
    """
    x, y = load("classification", name, standardize=True)
    return x + FAR, y, _reference(name, 1.0, True)


def _assert_moved_model(ours: FederatedLogisticRegression, ref: LogisticRegression) -> None:
    assert_close(ours.coef_, ref.coef_)
    assert_close(ours.intercept_, ref.intercept_ - FAR * ref.coef_.sum(axis=1))


@pytest.mark.parametrize("name", ["breast_cancer", "iris"], ids=["binary", "three_classes"])
def test_features_far_from_zero_converge_in_few_rounds_to_the_same_model(name: str) -> None:
    x, y, ref = _far_from_zero(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning
        ours = FederatedLogisticRegression().fit(x, y)
    _assert_moved_model(ours, ref)
    assert ours.n_rounds_ <= 15


@pytest.mark.parametrize("name", ["breast_cancer", "iris"], ids=["binary", "three_classes"])
def test_a_federation_with_features_far_from_zero_fits_the_same_model(name: str) -> None:
    x, y, ref = _far_from_zero(name)
    columns = tuple(f"c{i}" for i in range(x.shape[1]))
    job = AnalyticsJob(columns=columns, target="label", task="classification")
    for i, part in enumerate(random_split(len(x), 3, 11)):
        job.join(f"n{i}", {**dict(zip(columns, x[part].T, strict=True)), "label": y[part]}, policy=OPEN)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = job.fit(FederatedLogisticRegression())
    _assert_moved_model(ours, ref)
    assert ours.n_rounds_ <= 15


def test_scaling_is_undone_so_the_model_is_that_of_the_original_features() -> None:
    """With features scaled from 1e-3 to 1e3 the optimum is unchanged: the penalty is mapped too."""
    x, y = load("classification", "wine", standardize=True)
    scales = np.geomspace(1e-3, 1e3, x.shape[1])
    ours = FederatedLogisticRegression(C=0.1).fit(x * scales, y)
    ref = LogisticRegression(C=0.1, solver="newton-cholesky", tol=1e-14, max_iter=1000).fit(x * scales, y)
    assert_close(ours.predict_proba(x * scales), ref.predict_proba(x * scales))


def test_feature_scaling_centres_only_with_an_intercept_and_leaves_constant_columns_unscaled() -> None:
    rows = np.column_stack([np.full(50, 7.0), np.arange(50.0)])
    centred = FeatureScaling.of(Moments.of(rows), centre=True)
    uncentred = FeatureScaling.of(Moments.of(rows), centre=False)
    np.testing.assert_allclose(centred.shift, [7.0, 24.5])
    np.testing.assert_allclose(centred.scale, [1.0, np.arange(50.0).std()])
    np.testing.assert_array_equal(uncentred.shift, [0.0, 0.0])
    np.testing.assert_allclose(uncentred.scale, [7.0, np.sqrt(np.mean(np.arange(50.0) ** 2))])


def test_newton_statistics_survive_the_codec_and_are_validated() -> None:
    stats = NewtonStats(count=3, loss=1.5, gradient=np.ones(2), hessian=np.eye(2))
    back = NewtonStats.from_params(decode(encode(stats.to_params())), 2)
    assert back.count == 3 and back.loss == 1.5
    with pytest.raises(ValidationError, match="'gradient' must have shape"):
        NewtonStats.from_params(stats.to_params(), 3)


def test_a_class_outside_the_agreed_classes_is_refused() -> None:
    rows = np.array([[0.0, 0.0], [1.0, 5.0]])
    with pytest.raises(ConfigError, match="outside the agreed classes"):
        logistic_stats([rows], np.zeros((1, 2)), np.array([0, 1]), fit_intercept=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"C": 0.0}, r"`C` must be in \(0, inf\); got 0.0"),
        ({"max_iter": 0}, "`max_iter` must be an integer >= 1; got 0"),
        ({"tol": -1.0}, "`tol` must be"),
    ],
)
def test_bad_logistic_parameters_are_config_errors(kwargs: dict[str, float], message: str) -> None:
    x, y = load("classification", "iris", standardize=True)
    with pytest.raises(ConfigError, match=message):
        FederatedLogisticRegression(**kwargs).fit(x, y)  # type: ignore[arg-type]
