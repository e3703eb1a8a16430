"""The in-memory dataset a node trains on.

A ``Dataset`` is what a node's trainer sees after its data source has been read: a feature
matrix, optional targets and enough metadata (feature names, number of classes) for the
coordinator to build a matching model without ever seeing a row.

``groups`` optionally labels each row with the unit it naturally belongs to (a device, a
hospital, a user). Simulations use it to split a pooled dataset the way it was really
collected, via :func:`fedlearn.data.natural`; it is metadata about rows, never a feature.

``schema`` is the :class:`~fedlearn.data.schema.InputSchema` the rows were encoded with, so a
model trained on them records which columns it takes and how (a category's one-hot order); a
dataset built from bare arrays gets the numeric schema of its feature names (``x0``, ``x1``, …).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from fedlearn.core.errors import ConfigError
from fedlearn.data.schema import InputSchema

TaskType = Literal["classification", "regression"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Dataset:
    """Features ``x`` (rows × features), targets ``y`` and their description."""

    x: NDArray[Any]
    y: NDArray[Any] | None = None
    task: TaskType = "classification"
    n_classes: int = 0
    feature_names: tuple[str, ...] = field(default=())
    name: str = ""
    groups: NDArray[Any] | None = None
    schema: InputSchema | None = None

    def __post_init__(self) -> None:
        if self.x.ndim != 2:
            raise ConfigError(f"dataset {self.name!r}: x must be 2-D (rows × features); got shape {self.x.shape}")
        if self.y is not None and len(self.y) != len(self.x):
            raise ConfigError(f"dataset {self.name!r}: x has {len(self.x)} rows but y has {len(self.y)}")
        if self.feature_names and len(self.feature_names) != self.x.shape[1]:
            raise ConfigError(
                f"dataset {self.name!r}: {len(self.feature_names)} feature names for {self.x.shape[1]} columns"
            )
        if self.task == "classification" and self.y is not None and self.n_classes < 1:
            raise ConfigError(f"dataset {self.name!r}: classification data needs n_classes >= 1")
        if self.groups is not None and (self.groups.ndim != 1 or len(self.groups) != len(self.x)):
            raise ConfigError(
                f"dataset {self.name!r}: groups must be 1-D with one entry per row ({len(self.x)}); "
                f"got shape {self.groups.shape}"
            )
        if self.schema is None:
            if self.n_features:  # a schema has at least one column
                names = self.feature_names or tuple(f"x{i}" for i in range(self.n_features))
                object.__setattr__(self, "schema", InputSchema.numeric(names))
            return
        if not self.feature_names:
            object.__setattr__(self, "feature_names", self.schema.feature_names)
        if self.schema.feature_names != self.feature_names:
            raise ConfigError(
                f"dataset {self.name!r}: the schema's features {list(self.schema.feature_names)} do not match "
                f"its {self.n_features} feature column(s) {list(self.feature_names)}"
            )

    def __len__(self) -> int:
        return len(self.x)

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])

    def subset(self, indices: NDArray[np.integer[Any]]) -> Dataset:
        """The rows at ``indices``, keeping the metadata (so every node agrees on n_classes)."""
        return Dataset(
            x=self.x[indices],
            y=None if self.y is None else self.y[indices],
            task=self.task,
            n_classes=self.n_classes,
            feature_names=self.feature_names,
            name=self.name,
            groups=None if self.groups is None else self.groups[indices],
            schema=self.schema,
        )
