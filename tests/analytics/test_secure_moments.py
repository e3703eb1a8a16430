"""Moments as exact sums: two passes of node vectors, summed exactly, give the pooled models."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.naive_bayes import GaussianNB

from fedlearn.analytics import FederatedGaussianNB, FederatedLinearRegression, FederatedPCA
from fedlearn.analytics.secure_moments import (
    SecureMomentsLayout,
    first_pass,
    pooled_summary,
    read_first_pass,
    second_pass,
)
from fedlearn.analytics.summary import SummarySpec
from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.privacy.exact import decode_exact, encode_exact, exact_encoding
from tests.analytics.conftest import assert_close, load, random_split

NAMES = tuple(f"f{i}" for i in range(10))


def _exact_sum(vectors: list[np.ndarray]) -> np.ndarray:
    """What secure aggregation hands the coordinator: the exact sum of the nodes' vectors."""
    encoding = exact_encoding(len(vectors))
    total = np.zeros(encoding.encoded_length(len(vectors[0])), dtype=np.uint64)
    for vector in vectors:
        np.add(total, encode_exact(vector, encoding), out=total)
    return decode_exact(total, encoding)


def _pooled(parts: list[np.ndarray], layout: SecureMomentsLayout):  # type: ignore[no-untyped-def]
    first = read_first_pass(_exact_sum([first_pass([p], layout)[0] for p in parts]), layout)
    second = _exact_sum([second_pass([p], layout, first.mean, first.class_means)[0] for p in parts])
    return pooled_summary(first, second, layout)


def _regression_parts(nodes: int = 5) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    x, y = load("regression", "diabetes")
    x = x * 10 + 100  # means far from zero: raw sums of squares would lose digits, centred ones do not
    return [np.column_stack([x[p], y[p]]) for p in random_split(len(x), nodes, 3)], x, y


def test_linear_regression_and_pca_from_exact_sums_match_sklearn_on_the_pooled_data() -> None:
    parts, x, y = _regression_parts()
    layout = SecureMomentsLayout(SummarySpec(columns=NAMES, target="y"), ())

    summary = _pooled(parts, layout)

    linear = FederatedLinearRegression().fit_summary(summary)
    reference = LinearRegression().fit(x, y)
    assert_close(linear.coef_, reference.coef_, rtol=1e-9)
    assert_close([linear.intercept_], [reference.intercept_], rtol=1e-9)
    pca_layout = SecureMomentsLayout(SummarySpec(columns=NAMES), ())
    pca = FederatedPCA(n_components=3).fit_summary(_pooled([p[:, :-1] for p in parts], pca_layout))
    ours, theirs = pca.components_, PCA(n_components=3).fit(x).components_
    assert_close(ours * np.sign(ours[:, :1]), theirs * np.sign(theirs[:, :1]), rtol=1e-9)
    assert_close(pca.explained_variance_, PCA(n_components=3).fit(x).explained_variance_, rtol=1e-9)


def test_gaussian_nb_from_exact_sums_matches_sklearn_on_the_pooled_data() -> None:
    x, y = load("classification", "wine")
    parts = [np.column_stack([x[p], y[p]]) for p in random_split(len(x), 4, 1)]
    names = tuple(f"f{i}" for i in range(x.shape[1]))
    layout = SecureMomentsLayout(SummarySpec(columns=names, target="y", by_class=True), (0, 1, 2))

    model = FederatedGaussianNB().fit_summary(_pooled(parts, layout))

    reference = GaussianNB().fit(x, y)
    assert_close(model.theta_, reference.theta_, rtol=1e-9)
    assert_close(model.var_, reference.var_, rtol=1e-9)
    assert_close(model.class_prior_, reference.class_prior_, rtol=1e-12)


def test_a_declared_class_no_node_holds_is_left_out_of_the_pooled_classes() -> None:
    x, y = load("classification", "wine")
    keep = y < 2
    names = tuple(f"f{i}" for i in range(x.shape[1]))
    layout = SecureMomentsLayout(SummarySpec(columns=names, target="y", by_class=True), (0, 1, 2))

    summary = _pooled([np.column_stack([x[keep], y[keep]])], layout)

    assert summary.by_class is not None and summary.by_class.classes.tolist() == [0, 1]


def test_a_row_of_an_undeclared_class_is_refused() -> None:
    layout = SecureMomentsLayout(SummarySpec(columns=("a",), target="y", by_class=True), (0, 1))

    with pytest.raises(ConfigError, match="not among the job's declared `classes`"):
        first_pass([np.array([[1.0, 0.0], [2.0, 7.0]])], layout)


@pytest.mark.parametrize(
    ("by_class", "classes", "message"),
    [(True, (), "must declare its `classes`"), (False, (0, 1), "must declare its `classes`"),
     (True, (1, 0), "ascending order")],
)  # fmt: skip
def test_inconsistent_classes_are_refused(by_class: bool, classes: tuple[int, ...], message: str) -> None:
    spec = SummarySpec(columns=("a",), target="y", by_class=by_class)

    with pytest.raises(ConfigError, match=message):
        SecureMomentsLayout(spec, classes)


def test_summed_vectors_of_the_wrong_length_or_a_fractional_count_are_refused() -> None:
    layout = SecureMomentsLayout(SummarySpec(columns=("a", "b")), ())

    with pytest.raises(ValidationError, match="pass-1 sums must have shape"):
        read_first_pass(np.zeros(2), layout)
    with pytest.raises(ValidationError, match="whole number"):
        read_first_pass(np.array([2.5, 1.0, 1.0]), layout)
