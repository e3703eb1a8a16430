"""A package written, read back and loaded predicts what the trained model predicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fedlearn
from fedlearn.analytics import (
    FederatedGaussianNB,
    FederatedLinearDiscriminantAnalysis,
    FederatedLinearRegression,
    FederatedLogisticRegression,
    FederatedQuadraticDiscriminantAnalysis,
    FederatedRidge,
)
from fedlearn.client.learners import builtin_learner
from fedlearn.core.errors import ConfigError, SchemaError
from fedlearn.data.dataset import Dataset
from fedlearn.data.schema import Column, InputSchema
from fedlearn.registry.package import ModelPackage
from fedlearn.registry.predictor import Predictor
from fedlearn.registry.predictors import RegisteredModel, analytics_package, load_package
from tests.registry.conftest import blobs, line, schema_of, train

LEARNERS = [
    ("numpy.softmax", 3, {}),
    ("numpy.softmax", 2, {}),
    ("numpy.mlp", 3, {"hidden": [8]}),
    ("numpy.mlp", 2, {"hidden": [8, 4]}),
    ("sklearn.sgd", 3, {}),
    ("sklearn.sgd", 2, {}),
    ("sklearn.mlp", 3, {"hidden": [8]}),
    ("sklearn.mlp", 2, {"hidden": [8], "activation": "tanh"}),
    ("torch.mlp", 3, {"hidden": [8]}),
]


def _exported(model: str, data: Dataset, options: dict[str, Any], tmp_path: Path) -> tuple[Any, RegisteredModel]:
    params = train(model, data, **options)
    package = ModelPackage(
        name="blobs",
        version=1,
        kind="learner",
        model=model,
        options=options,
        task=data.task,
        classes=tuple(range(data.n_classes)),
        schema=schema_of(data),
        params=params,
    )
    return params, fedlearn.load_model(package.write(tmp_path / "model.safetensors"))


@pytest.mark.parametrize(("model", "classes", "options"), LEARNERS, ids=str)
def test_loaded_classifier_predicts_as_the_learner_evaluates(
    model: str, classes: int, options: dict[str, Any], tmp_path: Path
) -> None:
    if model.startswith("torch"):
        pytest.importorskip("torch")
    data = blobs(classes)
    params, loaded = _exported(model, data, options, tmp_path)

    evaluated = builtin_learner(model, data, **options).trainer(data).evaluate(params, {})
    predicted = loaded.predict(data.x)
    proba = loaded.predict_proba(data.x)

    assert np.mean(predicted == data.y) == pytest.approx(evaluated.metrics["accuracy"], abs=1e-12)
    assert -np.mean(np.log(proba[np.arange(len(data.y)), data.y])) == pytest.approx(evaluated.loss, rel=1e-4)
    assert np.array_equal(predicted, proba.argmax(axis=1))


@pytest.mark.parametrize(("model", "options"), [("numpy.linear", {}), ("sklearn.sgd", {"loss": "huber"})])
def test_loaded_regressor_predicts_as_the_learner_evaluates(
    model: str, options: dict[str, Any], tmp_path: Path
) -> None:
    data = line()
    params, loaded = _exported(model, data, options, tmp_path)

    evaluated = builtin_learner(model, data, **options).trainer(data).evaluate(params, {})

    assert np.mean((loaded.predict(data.x) - data.y) ** 2) == pytest.approx(evaluated.loss, rel=1e-5)
    with pytest.raises(ConfigError, match="regression model"):
        loaded.predict_proba(data.x)


def test_native_estimators_are_the_libraries_own(tmp_path: Path) -> None:
    data = blobs(3)
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    assert isinstance(_exported("numpy.softmax", data, {}, tmp_path)[1].estimator, LogisticRegression)
    assert isinstance(_exported("numpy.mlp", data, {"hidden": [4]}, tmp_path)[1].estimator, MLPClassifier)


def test_torch_package_loads_an_eval_mode_module(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    _, loaded = _exported("torch.mlp", blobs(3), {"hidden": [4]}, tmp_path)

    assert isinstance(loaded.estimator, torch.nn.Module)
    assert not loaded.estimator.training


def test_loaded_model_is_a_predictor_named_by_its_version(tmp_path: Path) -> None:
    _, loaded = _exported("numpy.softmax", blobs(3), {}, tmp_path)

    assert isinstance(loaded, Predictor)
    assert loaded.version == "blobs/1"
    assert loaded.schema.names == ("f0", "f1", "f2", "f3")


def test_predict_takes_named_columns_and_dataframe_like_tables(tmp_path: Path) -> None:
    data = blobs(3)
    _, loaded = _exported("numpy.softmax", data, {}, tmp_path)
    columns = {name: data.x[:, i] for i, name in enumerate(data.feature_names)}

    class Frame:  # the two things a pandas or polars DataFrame offers that the encoder reads
        columns = (*data.feature_names, "extra")

        def __getitem__(self, name: str) -> Any:
            return columns[name] if name != "extra" else np.zeros(len(data.x))

    expected = loaded.predict(data.x)
    assert np.array_equal(loaded.predict(columns), expected)
    assert np.array_equal(loaded.predict(Frame()), expected)


def test_categorical_schema_encodes_named_rows_before_predicting() -> None:
    schema = InputSchema((Column(name="size"), Column(name="color", type="category", categories=("red", "blue"))))
    x = np.array([[1.0, 1.0, 0.0], [2.0, 0.0, 1.0], [3.0, 1.0, 0.0]])
    estimator = FederatedLinearRegression().fit(x, np.array([1.0, 5.0, 3.0]))
    loaded = load_package(analytics_package(estimator, name="sizes", schema=schema))

    predicted = loaded.predict({"size": [1.0, 2.0, 3.0], "color": ["red", "blue", "red"]})

    assert np.allclose(predicted, estimator.predict(x))
    with pytest.raises(SchemaError, match="'green' is not one of its categories"):
        loaded.predict({"size": [1.0], "color": ["green"]})


@pytest.mark.parametrize(
    "features", [np.zeros((2, 3)), np.zeros(4), np.array([["a"] * 4]), np.array([[np.nan, 0, 0, 0]])], ids=str
)
def test_predict_refuses_features_of_the_wrong_shape_or_kind(features: Any, tmp_path: Path) -> None:
    _, loaded = _exported("numpy.softmax", blobs(3), {}, tmp_path)

    with pytest.raises(SchemaError):
        loaded.predict(features)


ESTIMATORS = [
    (FederatedLinearRegression, "regression"),
    (lambda: FederatedRidge(alpha=0.5), "regression"),
    (lambda: FederatedLogisticRegression(C=2.0), "classification"),
    (FederatedGaussianNB, "classification"),
    (FederatedLinearDiscriminantAnalysis, "classification"),
    (FederatedQuadraticDiscriminantAnalysis, "classification"),
]


@pytest.mark.parametrize(("make", "task"), ESTIMATORS)
def test_analytics_package_predicts_as_the_fitted_estimator(make: Any, task: str, tmp_path: Path) -> None:
    data = blobs(3, rows=120) if task == "classification" else line()
    estimator = make().fit(data.x.astype(np.float64), data.y)
    package = analytics_package(estimator, name="fitted", schema=schema_of(data), lineage={"run_id": "a1"})

    loaded = fedlearn.load_model(package.write(tmp_path / "fitted.safetensors"))

    if task == "regression":
        assert np.array_equal(loaded.predict(data.x), estimator.predict(data.x))
    else:
        assert np.array_equal(loaded.predict(data.x), np.searchsorted(estimator.classes_, estimator.predict(data.x)))
        assert np.array_equal(loaded.predict_proba(data.x), estimator.predict_proba(data.x))
        assert loaded.classes == (0, 1, 2)
    assert loaded.lineage["run_id"] == "a1"


def test_analytics_classifier_fitted_on_text_labels_keeps_them_as_its_classes() -> None:
    data = blobs(2)
    labels = np.array(["stay", "leave"])[data.y]
    estimator = FederatedGaussianNB().fit(data.x.astype(np.float64), labels)

    loaded = load_package(analytics_package(estimator, name="churn", schema=schema_of(data)))

    assert loaded.classes == ("leave", "stay")
    assert np.array_equal(np.array(loaded.classes)[loaded.predict(data.x)], estimator.predict(data.x))


def test_analytics_package_of_an_unfitted_or_non_predicting_estimator_is_refused() -> None:
    from fedlearn.analytics import FederatedPCA

    schema = InputSchema.numeric(["a", "b"])
    with pytest.raises(ConfigError, match="not fitted"):
        analytics_package(FederatedLinearRegression(), name="m", schema=schema)
    with pytest.raises(ConfigError, match="only the analytics models that predict"):
        analytics_package(FederatedPCA(1).fit(np.eye(3)[:, :2]), name="m", schema=schema)
