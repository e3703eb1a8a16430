"""A model version as an MLflow pyfunc model, with no pickle (the optional ``mlflow`` extra).

MLflow's usual Python models are cloudpickled objects, which run code when they are loaded. This
one is a directory holding the package file unchanged and an ``MLmodel`` whose ``python_function``
flavour names this module as its ``loader_module``: ``mlflow.pyfunc.load_model(DIR)`` imports
fedlearn and calls :func:`_load_pyfunc` on the package, which is read and checked like any other.
So the model loads wherever fedlearn is installed, and only built-in learners and analytics
models load (a user learner would need ``trust_code``, which MLflow cannot pass).

``predict`` takes what :meth:`~fedlearn.registry.predictors.RegisteredModel.predict` takes (a
DataFrame, a mapping of columns or a feature matrix) and returns class indices or values.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from fedlearn.core.errors import ConfigError
from fedlearn.registry.package import ModelPackage
from fedlearn.registry.predictors import RegisteredModel, load_package

PACKAGE_FILE = "model.safetensors"


def write_mlflow_model(package: ModelPackage, path: str | Path) -> Path:
    """Write ``package`` as an MLflow model directory at ``path``, which must not exist yet."""
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError("exporting an MLflow model needs MLflow; install the extra: pip install 'fedlearn[mlflow]'")
    from mlflow.models import Model
    from mlflow.pyfunc import add_to_model

    from fedlearn import __version__

    target = Path(path)
    if target.exists():
        raise ConfigError(f"{target} already exists; an MLflow model is written to a new directory")
    target.mkdir(parents=True)
    package.write(target / PACKAGE_FILE)
    model = Model(metadata={"fedlearn_model": package.ref})
    add_to_model(model, loader_module=__name__, data=PACKAGE_FILE)
    model.save(str(target / "MLmodel"))
    (target / "requirements.txt").write_text(f"fedlearn=={__version__}\n")
    return target


class _PyFunc:
    """What MLflow calls ``predict`` on: the loaded model, behind MLflow's calling convention."""

    def __init__(self, model: RegisteredModel) -> None:
        self.model = model

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        return self.model.predict(model_input)


def _load_pyfunc(data_path: str) -> _PyFunc:
    """MLflow's entry point (``loader_module``): ``data_path`` is the package file in the model directory."""
    return _PyFunc(load_package(ModelPackage.read(data_path)))
