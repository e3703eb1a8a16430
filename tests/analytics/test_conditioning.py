"""Least squares and PCA keep their digits on ill-conditioned data.

Each case builds a design whose centred columns have a known condition number, splits it over 7
nodes sorted by a column (so the nodes' means differ, which is what the merge must get right),
merges the summaries in a random order and compares with the exact answer for the stored data,
computed in rational arithmetic (``tests/analytics/exact.py``). The target is 1e-8 relative up
to a condition number of 1e6; solving from the co-moments (the normal equations) gives 1e-6
to 1e-4 there, since its error grows with the square of the condition number.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.analytics import FederatedLinearRegression, FederatedPCA, FederatedRidge, Summary, summarize
from tests.analytics import exact
from tests.analytics.conftest import merge_randomly, spec_for

CONDITION_NUMBERS = [1e2, 1e4, 2.5e5, 1e6]
ROWS, FEATURES, NODES = 300, 5, 7


def _federated(x: np.ndarray, y: np.ndarray | None, seed: int = 0) -> Summary:
    """Nodes holding slices of the rows sorted by the first column, merged in a random order."""
    columns = x if y is None else np.column_stack([x, y])
    spec = spec_for(x.shape[1], target=y is not None)
    parts = np.array_split(np.argsort(x[:, 0], kind="stable"), NODES)
    return merge_randomly([summarize(columns[p], spec, min_rows=0) for p in parts], seed)


def _relative(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(ours) - reference) / np.linalg.norm(reference))


@pytest.mark.parametrize("cond", CONDITION_NUMBERS)
def test_linear_regression_is_within_1e_minus_8_of_the_exact_answer(cond: float) -> None:
    x, y = exact.ill_conditioned(ROWS, FEATURES, cond)
    coef, intercept = exact.least_squares(x, y)

    model = FederatedLinearRegression().fit_summary(_federated(x, y))

    assert _relative(model.coef_, coef) < 1e-8
    assert abs(model.intercept_ - intercept) < 1e-8 * abs(intercept)


@pytest.mark.parametrize("cond", CONDITION_NUMBERS)
def test_linear_regression_without_intercept_is_within_1e_minus_8_of_the_exact_answer(cond: float) -> None:
    x, y = exact.ill_conditioned(ROWS, FEATURES, cond, offset=0.0, intercept=0.0)  # so cond(X) is cond too
    coef, _ = exact.least_squares(x, y, fit_intercept=False)

    model = FederatedLinearRegression(fit_intercept=False).fit_summary(_federated(x, y))

    assert _relative(model.coef_, coef) < 1e-8


@pytest.mark.parametrize("cond", CONDITION_NUMBERS)
def test_ridge_with_a_small_penalty_is_within_1e_minus_8_of_the_exact_answer(cond: float) -> None:
    x, y = exact.ill_conditioned(ROWS, FEATURES, cond)
    alpha = 1e-3 * ROWS / cond**2  # small beside the smallest squared singular value: still ill-conditioned
    coef, intercept = exact.least_squares(x, y, alpha=alpha)

    model = FederatedRidge(alpha=alpha).fit_summary(_federated(x, y))

    assert _relative(model.coef_, coef) < 1e-8
    assert abs(model.intercept_ - intercept) < 1e-8 * abs(intercept)


@pytest.mark.parametrize("cond", [2.5e5, 1e6])
def test_linear_regression_keeps_its_digits_when_the_data_sit_far_from_zero(cond: float) -> None:
    """Means of 1e6 and a spread of 1: δ between nodes must not carry 1e-16 × the mean."""
    x, y = exact.ill_conditioned(ROWS, FEATURES, cond, offset=1e6)
    coef, _ = exact.least_squares(x, y)

    model = FederatedLinearRegression().fit_summary(_federated(x, y))

    assert _relative(model.coef_, coef) < 1e-8


@pytest.mark.parametrize("cond", CONDITION_NUMBERS)
def test_pca_variances_are_each_within_1e_minus_8_of_the_exact_eigenvalues(cond: float) -> None:
    x, _ = exact.ill_conditioned(ROWS, FEATURES, cond)
    comoment, _ = exact.comoment(x)
    variance = exact.eigenvalues(comoment) / (ROWS - 1)

    pca = FederatedPCA().fit_summary(_federated(x, None))

    np.testing.assert_allclose(pca.explained_variance_, variance, rtol=1e-8, atol=0)  # the smallest too
    np.testing.assert_allclose(pca.singular_values_, np.sqrt(variance * (ROWS - 1)), rtol=1e-8, atol=0)


@pytest.mark.parametrize("cond", CONDITION_NUMBERS)
def test_pca_components_are_within_1e_minus_8_of_the_exact_eigenvectors(cond: float) -> None:
    x, _ = exact.ill_conditioned(ROWS, FEATURES, cond)
    comoment, _ = exact.comoment(x)
    vectors = [exact.eigenvector(comoment, value) for value in exact.eigenvalues(comoment)]

    pca = FederatedPCA().fit_summary(_federated(x, None))

    for ours, reference in zip(pca.components_, vectors, strict=True):
        assert min(np.linalg.norm(ours - reference), np.linalg.norm(ours + reference)) < 1e-8
