"""Loading an exported package file: a model version, ready to predict, with no coordinator."""

from __future__ import annotations

from pathlib import Path

from fedlearn.registry.package import ModelPackage
from fedlearn.registry.predictors import RegisteredModel, load_package


def load_model_file(path: str | Path, *, trust_code: bool = False) -> RegisteredModel:
    """Load an exported package file (``fedlearn models export``) as a predictor.

    ``trust_code`` allows a package of a user learner (``pkg.mod:fn``) to import that code.
    """
    return load_package(ModelPackage.read(path), trust_code=trust_code)
