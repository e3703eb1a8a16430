"""A user's learner with a ``predictor``, imported only by a test that passes ``trust_code``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fedlearn.client.learners import builtin_learner


@dataclass(frozen=True)
class _Threshold:
    scale: float
    weight: Any

    def predict(self, x: Any) -> Any:
        return (np.asarray(x) @ self.weight[:, 1] * self.scale > 0).astype(np.int64)

    def predict_proba(self, x: Any) -> Any:
        p = 1 / (1 + np.exp(-np.asarray(x) @ self.weight[:, 1] * self.scale))
        return np.column_stack([1 - p, p])


@dataclass(frozen=True)
class _Learner:
    scale: float
    base: Any

    def init_params(self, seed: int) -> Any:
        return self.base.init_params(seed)

    def trainer(self, data: Any) -> Any:
        return self.base.trainer(data)

    def predictor(self, params: Any) -> _Threshold:
        return _Threshold(self.scale, params["weight"])


def make(data: Any, scale: float = 1.0) -> _Learner:
    return _Learner(scale, builtin_learner("numpy.softmax", data))
