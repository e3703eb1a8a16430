"""Small model packages and node data for the federated scoring tests: no training needed."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from fedlearn.core.params import ParamSet
from fedlearn.data.schema import Column, InputSchema
from fedlearn.registry.package import ModelPackage

FEATURES = ("f0", "f1", "f2")


def softmax_package(classes: int = 2, *, seed: int = 0, schema: InputSchema | None = None) -> ModelPackage:
    """A ``numpy.softmax`` package with fixed random weights over float columns f0..f2."""
    schema = schema or InputSchema.numeric(FEATURES)
    rng = np.random.default_rng(seed)
    params = ParamSet({
        "weight": rng.standard_normal((schema.n_features, classes)).astype(np.float32),
        "bias": rng.standard_normal(classes).astype(np.float32),
    })  # fmt: skip
    return ModelPackage(name="churn", version=1, kind="learner", model="numpy.softmax", task="classification",
                        classes=tuple(range(classes)), schema=schema, params=params)  # fmt: skip


def linear_package(*, seed: int = 0) -> ModelPackage:
    rng = np.random.default_rng(seed)
    params = ParamSet({"weight": rng.standard_normal(len(FEATURES)).astype(np.float32),
                       "bias": np.array([0.5], np.float32)})  # fmt: skip
    return ModelPackage(name="spend", version=2, kind="learner", model="numpy.linear", task="regression",
                        schema=InputSchema.numeric(FEATURES), params=params)  # fmt: skip


def category_package() -> ModelPackage:
    """A classifier over f0 and a category column ``plan`` (basic, pro)."""
    schema = InputSchema((Column(name="f0"), Column(name="plan", type="category", categories=("basic", "pro"))))
    return softmax_package(2, schema=schema)


def rows(n: int, *, seed: int, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels a little separable, so that the metrics are not trivial."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.standard_normal((n, len(FEATURES))) + y[:, None] * 0.8
    return x.astype(np.float32), y


def write_csv(path: Path, x: np.ndarray, y: np.ndarray, *, first_id: int = 0) -> Path:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["id", *FEATURES, "label"])
        for i, (features, label) in enumerate(zip(x.tolist(), y.tolist(), strict=True)):
            out.writerow([first_id + i, *(repr(v) for v in features), label])
    return path
