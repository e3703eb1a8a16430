"""Evaluation metrics built from sums, so that per-node figures pool into exactly the pooled data's figures.

A node evaluating a registered model on its held-out rows replies :class:`EvaluationSums`, never
rows. Sums add: the coordinator adds the nodes' sums and computes the pooled metrics from the total,
which equal what the pooled rows would give.

Classification
    ``confusion[t, p]``: rows of true class ``t`` predicted ``p``. Accuracy, per-class precision,
    recall and F1 (and their macro means) come from it exactly.
    ``histograms[k, t, b]``: rows of true class ``t`` whose probability of class ``k`` falls in bin
    ``b`` of ``bins`` equal bins over [0, 1] (bin ``floor(p * bins)``, 1.0 in the last). The AUC of
    class ``k`` against the rest is computed from row ``k`` (positives ``t == k``, negatives the
    others); a binary model's AUC is class 1's; a multi-class model reports each class's one-vs-rest
    AUC and their unweighted mean. The AUC is exact for the binned scores: it equals
    ``roc_auc_score`` of the pooled rows with each score replaced by its bin.
Regression
    Row count and the sums of errors, absolute errors, squared errors, targets and squared targets:
    MSE, RMSE, MAE and R² of the pooled rows, up to the rounding of adding floats in another order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedlearn.core.checks import check_int
from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import TaskType

MAX_HISTOGRAM_CELLS = 10_000_000
"""classes × classes × bins cells at most: 80 MB of counts, whatever a request asks."""
REGRESSION_SUMS = ("count", "error", "abs_error", "sq_error", "target", "sq_target")


def histogram_cells(n_classes: int, bins: int) -> int:
    return n_classes * n_classes * bins


def check_bins(bins: object, n_classes: int) -> int:
    """``bins`` as an int, refused when the histograms it implies would be too large."""
    value = check_int("bins", bins, low=1)
    if histogram_cells(n_classes, value) > MAX_HISTOGRAM_CELLS:
        raise ConfigError(
            f"`bins` {value} with {n_classes} classes makes {histogram_cells(n_classes, value):,} histogram cells; "
            f"the limit is {MAX_HISTOGRAM_CELLS:,}"
        )
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationSums:
    """One node's (or the pooled) evaluation sums; see the module docstring."""

    task: TaskType
    confusion: NDArray[np.int64] | None = None
    histograms: NDArray[np.int64] | None = None
    regression: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        if self.task == "classification":
            if self.confusion is None or self.histograms is None or self.regression is not None:
                raise ValidationError("classification sums need `confusion` and `histograms` only")
            k = self.confusion.shape[0]
            if self.confusion.shape != (k, k) or k < 2:
                raise ValidationError(f"`confusion` must be classes × classes; got {list(self.confusion.shape)}")
            if self.histograms.ndim != 3 or self.histograms.shape[:2] != (k, k) or self.histograms.shape[2] < 1:
                raise ValidationError(f"`histograms` must be {k} × {k} × bins; got {list(self.histograms.shape)}")
            for name, array in (("confusion", self.confusion), ("histograms", self.histograms)):
                if array.dtype != np.int64 or (array < 0).any():
                    raise ValidationError(f"`{name}` must hold non-negative int64 counts")
            rows_per_class = self.confusion.sum(axis=1)
            if not (self.histograms.sum(axis=2) == rows_per_class[None, :]).all():
                raise ValidationError("`histograms` must count every row of each true class once per class score")
        elif self.task == "regression":
            sums = self.regression
            if sums is None or self.confusion is not None or self.histograms is not None:
                raise ValidationError("regression sums need `regression` only")
            if sums.shape != (len(REGRESSION_SUMS),) or sums.dtype != np.float64 or not np.isfinite(sums).all():
                raise ValidationError(f"`regression` must be {len(REGRESSION_SUMS)} finite float64 sums")
            if sums[0] < 0 or sums[0] != round(sums[0]) or sums[3] < 0 or sums[2] < 0 or sums[5] < 0:
                raise ValidationError("`regression` sums: the count and the sums of squares must be non-negative")
        else:
            raise ValidationError(f"`task` must be classification or regression; got {self.task!r}")

    @property
    def rows(self) -> int:
        if self.confusion is not None:
            return int(self.confusion.sum())
        assert self.regression is not None
        return int(self.regression[0])

    @property
    def bins(self) -> int:
        return 0 if self.histograms is None else int(self.histograms.shape[2])

    def to_params(self) -> ParamSet:
        if self.task == "classification":
            assert self.confusion is not None and self.histograms is not None
            return ParamSet({"confusion": self.confusion, "histograms": self.histograms})
        assert self.regression is not None
        return ParamSet({"regression": self.regression})

    @classmethod
    def from_params(cls, params: ParamSet, *, task: TaskType, n_classes: int, bins: int) -> EvaluationSums:
        """A node's reply, checked against what was asked: names, shapes, dtypes, counts."""
        if task == "classification":
            expected = {"confusion": (n_classes, n_classes), "histograms": (n_classes, n_classes, bins)}
        else:
            expected = {"regression": (len(REGRESSION_SUMS),)}
        if set(params) != set(expected):
            raise ValidationError(f"evaluation reply must hold {sorted(expected)}; got {sorted(params)}")
        for name, shape in expected.items():
            if params[name].shape != shape:
                raise ValidationError(
                    f"evaluation reply `{name}` must have shape {list(shape)}; got {list(params[name].shape)}"
                )
        arrays = {name: np.array(params[name]) for name in expected}
        return cls(task=task, **arrays)

    def __add__(self, other: EvaluationSums) -> EvaluationSums:
        if self.task != other.task or self.bins != other.bins or self.n_classes != other.n_classes:
            raise ValidationError("only evaluation sums of the same model and bins add up")
        if self.task == "classification":
            assert self.confusion is not None and other.confusion is not None
            assert self.histograms is not None and other.histograms is not None
            return EvaluationSums(
                task=self.task,
                confusion=self.confusion + other.confusion,
                histograms=self.histograms + other.histograms,
            )
        assert self.regression is not None and other.regression is not None
        return EvaluationSums(task=self.task, regression=self.regression + other.regression)

    @property
    def n_classes(self) -> int:
        return 0 if self.confusion is None else int(self.confusion.shape[0])

    def metrics(self) -> dict[str, Any]:
        """The metrics as JSON values; a metric that the rows cannot define (no positives, say) is None."""
        if self.task == "regression":
            return _regression_metrics(self.regression)
        assert self.confusion is not None and self.histograms is not None
        return _classification_metrics(self.confusion, self.histograms)


def node_sums(
    task: TaskType,
    targets: NDArray[Any],
    predictions: NDArray[Any],
    probabilities: NDArray[np.float64] | None,
    *,
    n_classes: int,
    bins: int,
) -> EvaluationSums:
    """The sums of one batch of rows: class indices (or values) ``targets`` against the model's outputs."""
    if task == "regression":
        y = targets.astype(np.float64)
        error = predictions.astype(np.float64) - y
        sums = [float(len(y)), error.sum(), np.abs(error).sum(), (error * error).sum(), y.sum(), (y * y).sum()]
        return EvaluationSums(task=task, regression=np.array(sums, dtype=np.float64))
    assert probabilities is not None
    t, p = targets.astype(np.int64), predictions.astype(np.int64)
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (t, p), 1)
    cell = np.minimum((probabilities * bins).astype(np.int64), bins - 1).clip(0)  # rows × classes
    histograms = np.zeros((n_classes, n_classes, bins), np.int64)
    for k in range(n_classes):
        np.add.at(histograms[k], (t, cell[:, k]), 1)
    return EvaluationSums(task=task, confusion=confusion, histograms=histograms)


def binned_auc(positives: NDArray[np.int64], negatives: NDArray[np.int64]) -> float | None:
    """P(positive's bin > negative's bin) + ½ P(same bin), in exact integer arithmetic; None without both kinds."""
    pos, neg = [int(v) for v in positives], [int(v) for v in negatives]
    total_pos, total_neg = sum(pos), sum(neg)
    if total_pos == 0 or total_neg == 0:
        return None
    twice, below = 0, 0
    for count_pos, count_neg in zip(pos, neg, strict=True):
        twice += count_pos * (2 * below + count_neg)
        below += count_neg
    return twice / (2 * total_pos * total_neg)


def _classification_metrics(confusion: NDArray[np.int64], histograms: NDArray[np.int64]) -> dict[str, Any]:
    rows = int(confusion.sum())
    k = confusion.shape[0]
    true_positive = np.diag(confusion).astype(np.int64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = [_ratio(int(true_positive[c]), int(predicted[c])) for c in range(k)]
    recall = [_ratio(int(true_positive[c]), int(actual[c])) for c in range(k)]
    f1 = [
        None if p is None or r is None else (0.0 if p + r == 0 else 2 * p * r / (p + r))
        for p, r in zip(precision, recall, strict=True)
    ]
    aucs = [binned_auc(histograms[c, c], histograms[c].sum(axis=0) - histograms[c, c]) for c in range(k)]
    defined = [a for a in aucs if a is not None]
    auc = aucs[1] if k == 2 else (sum(defined) / len(defined) if len(defined) == k else None)
    return {
        "rows": rows,
        "accuracy": _ratio(int(true_positive.sum()), rows),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "macro_f1": _mean(f1),
        "auc": auc,
        "auc_per_class": aucs,
        "confusion": confusion.tolist(),
    }


def _regression_metrics(sums: NDArray[np.float64] | None) -> dict[str, Any]:
    assert sums is not None
    count, error, abs_error, sq_error, target, sq_target = (float(v) for v in sums)
    if count == 0:
        return {"rows": 0, "mse": None, "rmse": None, "mae": None, "r2": None, "mean_error": None}
    total = sq_target - target * target / count
    mse = sq_error / count
    return {
        "rows": int(count),
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": abs_error / count,
        "mean_error": error / count,
        "r2": 1.0 - sq_error / total if total > 0 else None,
    }


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _mean(values: list[float | None]) -> float | None:
    return (
        None if any(v is None for v in values) or not values else sum(v for v in values if v is not None) / len(values)
    )
