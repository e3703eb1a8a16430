"""The MLflow export: a pyfunc model directory that MLflow itself loads, holding the package and no pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedlearn.analytics import FederatedLinearRegression
from fedlearn.core.errors import ConfigError
from fedlearn.registry.mlflow_model import PACKAGE_FILE, write_mlflow_model
from fedlearn.registry.package import ModelPackage
from fedlearn.registry.predictors import analytics_package
from tests.registry.conftest import line, schema_of

mlflow_pyfunc = pytest.importorskip("mlflow.pyfunc")


def _package() -> tuple[ModelPackage, FederatedLinearRegression]:
    data = line()
    estimator = FederatedLinearRegression().fit(data.x.astype(np.float64), data.y)
    return analytics_package(estimator, name="prices", version=4, schema=schema_of(data)), estimator


def test_mlflow_loads_the_exported_model_and_predicts_as_fitted(tmp_path: Path) -> None:
    package, estimator = _package()
    data = line()

    write_mlflow_model(package, tmp_path / "prices")
    loaded = mlflow_pyfunc.load_model(str(tmp_path / "prices"))

    assert np.array_equal(loaded.predict(data.x), estimator.predict(data.x))
    columns = {name: data.x[:, i] for i, name in enumerate(data.feature_names)}
    assert np.array_equal(loaded.predict(columns), estimator.predict(data.x))


def test_exported_directory_holds_the_package_unchanged_and_no_pickle(tmp_path: Path) -> None:
    package, _ = _package()

    write_mlflow_model(package, tmp_path / "prices")

    files = sorted(p.name for p in (tmp_path / "prices").iterdir())
    assert (tmp_path / "prices" / PACKAGE_FILE).read_bytes() == package.to_bytes()
    assert not [name for name in files if name.endswith((".pkl", ".pickle", ".cloudpickle"))]
    assert "loader_module: fedlearn.registry.mlflow_model" in (tmp_path / "prices" / "MLmodel").read_text()


def test_export_never_overwrites_a_directory(tmp_path: Path) -> None:
    (tmp_path / "prices").mkdir()

    with pytest.raises(ConfigError, match="already exists"):
        write_mlflow_model(_package()[0], tmp_path / "prices")
