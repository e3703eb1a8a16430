"""What every loaded model offers, whatever trained it: its input schema, its version and predictions.

Serving, batch scoring and federated scoring all go through this protocol, so a model trained by
federated SGD, fitted by exact analytics or built from a torch module is used the same way:
:meth:`~fedlearn.data.schema.InputSchema.encode` turns rows into features, then ``predict``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from fedlearn.data.dataset import TaskType
from fedlearn.data.schema import InputSchema


@runtime_checkable
class Predictor(Protocol):
    """A registered model version, loaded and ready to predict."""

    @property
    def schema(self) -> InputSchema:
        """The columns the model takes; encode rows with it before calling ``predict``."""
        ...

    @property
    def version(self) -> str:
        """``NAME/VERSION`` (``churn/3``): what a prediction records as the model that made it."""
        ...

    @property
    def task(self) -> TaskType:
        """``classification`` (predictions are class indices) or ``regression``."""
        ...

    def predict(self, features: NDArray[np.float32]) -> NDArray[Any]:
        """One prediction per row of encoded features (rows × ``schema.n_features``)."""
        ...

    def predict_proba(self, features: NDArray[np.float32]) -> NDArray[np.float64]:
        """Class probabilities (rows × classes) for classification; ``ConfigError`` for regression."""
        ...
