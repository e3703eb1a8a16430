"""A small real predictor for serving tests: a linear model over a schema, implementing the Predictor protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedlearn.core.errors import ConfigError
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import TaskType
from fedlearn.data.schema import Column, InputSchema
from fedlearn.registry.package import ModelPackage

SCHEMA = InputSchema(
    (Column(name="age"), Column(name="visits", type="int"), Column(name="plan", type="category", categories=("a", "b")))
)

WEIGHTS = np.array([1.0, 10.0, 0.0, 100.0], np.float32)
"""One weight per feature: age, visits, plan=a, plan=b."""


@dataclass(frozen=True, slots=True)
class Linear:
    """``features @ weights + bias`` as a regression; its version names itself, so a test sees who answered."""

    version: str
    weights: NDArray[np.float32]
    bias: float = 0.0
    schema: InputSchema = SCHEMA
    task: TaskType = "regression"
    calls: list[int] = field(default_factory=list)

    def predict(self, features: NDArray[np.float32]) -> NDArray[Any]:
        self.calls.append(len(features))
        return features @ self.weights + self.bias

    def predict_proba(self, features: NDArray[np.float32]) -> NDArray[np.float64]:
        raise ConfigError("a regression model has no class probabilities")


def linear(version: str, bias: float = 0.0) -> Linear:
    """A model over :data:`SCHEMA` whose prediction for a row is ``age + 10 * visits + 100 * [plan = b] + bias``."""
    return Linear(version=version, weights=WEIGHTS, bias=bias)


def linear_package(version: int, bias: float = 0.0, *, name: str = "churn") -> ModelPackage:
    """The same model as :func:`linear`, as a registered ``numpy.linear`` package ``name/version``."""
    return ModelPackage(
        name=name,
        version=version,
        kind="learner",
        model="numpy.linear",
        task="regression",
        schema=SCHEMA,
        params=ParamSet({"weight": WEIGHTS, "bias": np.array([bias], np.float32)}),
    )
