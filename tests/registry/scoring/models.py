"""A small real predictor for the scoring tests: a fixed linear model over two float columns.

It implements :class:`~fedlearn.registry.predictor.Predictor` with real arithmetic, so a scored
row's prediction can be checked against the formula. ``delay`` slows each chunk down, so that a
test can kill a scoring process while it is in the middle of a job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedlearn.data.dataset import TaskType
from fedlearn.data.schema import InputSchema

SCHEMA = InputSchema.numeric(["x1", "x2"])


@dataclass(frozen=True, slots=True)
class LinearModel:
    """Class 1 when ``x1 - x2 > 0`` (classification), else the value ``2 x1 + x2`` (regression)."""

    version: str = "churn/1"
    task: TaskType = "classification"
    delay: float = 0.0

    @property
    def schema(self) -> InputSchema:
        return SCHEMA

    def predict(self, features: NDArray[np.float32]) -> NDArray[Any]:
        time.sleep(self.delay)
        if self.task == "regression":
            return 2.0 * features[:, 0].astype(np.float64) + features[:, 1]
        return (features[:, 0] - features[:, 1] > 0).astype(np.int64)

    def predict_proba(self, features: NDArray[np.float32]) -> NDArray[np.float64]:
        p = 1.0 / (1.0 + np.exp(-(features[:, 0].astype(np.float64) - features[:, 1])))
        return np.stack([1.0 - p, p], axis=1)


def expected(x1: float, x2: float) -> int:
    """What :class:`LinearModel` predicts for a row, computed independently."""
    return int(x1 - x2 > 0)
