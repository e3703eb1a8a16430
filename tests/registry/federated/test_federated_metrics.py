"""Pooled evaluation sums give the pooled rows' metrics: checked against scikit-learn on the pooled data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    confusion_matrix,
    mean_squared_error,
    precision_recall_fscore_support,
    r2_score,
    roc_auc_score,
)

from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.registry.federated_metrics import EvaluationSums, binned_auc, check_bins, node_sums

BINS = 1000


def _parts(classes: int, sizes: tuple[int, ...] = (40, 75, 33)) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(classes)
    parts = []
    for n in sizes:
        y = rng.integers(0, classes, n)
        logits = rng.standard_normal((n, classes)) + np.eye(classes)[y] * 1.5
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        parts.append((y, probs))
    return parts


def _pool(parts: list[tuple[np.ndarray, np.ndarray]], classes: int) -> EvaluationSums:
    sums = [node_sums("classification", y, p.argmax(axis=1), p, n_classes=classes, bins=BINS) for y, p in parts]
    total = sums[0]
    for s in sums[1:]:
        total = total + s
    return total


def _binned(p: np.ndarray) -> np.ndarray:
    return np.minimum((p * BINS).astype(np.int64), BINS - 1)


def test_pooled_binary_confusion_and_auc_equal_the_pooled_rows() -> None:
    parts = _parts(2)
    y = np.concatenate([y for y, _ in parts])
    p = np.concatenate([p for _, p in parts])
    metrics = _pool(parts, 2).metrics()
    assert metrics["confusion"] == confusion_matrix(y, p.argmax(axis=1)).tolist()
    assert metrics["auc"] == pytest.approx(roc_auc_score(y, _binned(p[:, 1])), rel=1e-12)
    precision, recall, f1, _ = precision_recall_fscore_support(y, p.argmax(axis=1))
    assert metrics["precision"] == pytest.approx(precision.tolist())
    assert metrics["recall"] == pytest.approx(recall.tolist())
    assert metrics["f1"] == pytest.approx(f1.tolist())
    assert metrics["accuracy"] == pytest.approx(float((y == p.argmax(axis=1)).mean()))


def test_pooled_multiclass_auc_is_the_mean_of_one_vs_rest_on_the_pooled_rows() -> None:
    parts = _parts(3)
    y = np.concatenate([y for y, _ in parts])
    p = np.concatenate([p for _, p in parts])
    metrics = _pool(parts, 3).metrics()
    expected = [roc_auc_score(y == k, _binned(p[:, k])) for k in range(3)]
    assert metrics["auc_per_class"] == pytest.approx(expected, rel=1e-12)
    assert metrics["auc"] == pytest.approx(np.mean(expected), rel=1e-12)
    assert metrics["confusion"] == confusion_matrix(y, p.argmax(axis=1)).tolist()


def test_pooled_regression_metrics_equal_the_pooled_rows() -> None:
    rng = np.random.default_rng(3)
    parts = [(rng.standard_normal(n) * 3 + 1, rng.standard_normal(n)) for n in (20, 51, 9)]
    total = None
    for y, noise in parts:
        s = node_sums("regression", y, y + noise, None, n_classes=0, bins=0)
        total = s if total is None else total + s
    assert total is not None
    y = np.concatenate([y for y, _ in parts])
    prediction = np.concatenate([y + noise for y, noise in parts])
    metrics = total.metrics()
    assert metrics["rows"] == len(y)
    assert metrics["mse"] == pytest.approx(mean_squared_error(y, prediction), rel=1e-12)
    assert metrics["mae"] == pytest.approx(float(np.abs(prediction - y).mean()), rel=1e-12)
    assert metrics["r2"] == pytest.approx(r2_score(y, prediction), rel=1e-12)


def test_binned_auc_without_negatives_is_undefined() -> None:
    assert binned_auc(np.array([1, 2]), np.array([0, 0])) is None


def test_sums_whose_histograms_disagree_with_the_confusion_matrix_are_rejected() -> None:
    (y, p), *_ = _parts(2)
    good = node_sums("classification", y, p.argmax(axis=1), p, n_classes=2, bins=10)
    lying = good.histograms.copy()
    lying[0, 0, 0] += 5
    with pytest.raises(ValidationError, match="every row"):
        EvaluationSums(task="classification", confusion=good.confusion, histograms=lying)


def test_negative_counts_are_rejected() -> None:
    confusion = np.array([[1, -1], [0, 2]], np.int64)
    with pytest.raises(ValidationError, match="non-negative"):
        EvaluationSums(task="classification", confusion=confusion, histograms=np.zeros((2, 2, 4), np.int64))


def test_huge_bins_are_refused_before_any_allocation() -> None:
    with pytest.raises(ConfigError, match="histogram cells"):
        check_bins(10**9, 10)
