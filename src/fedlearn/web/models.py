"""``fedlearn.load_model``: a registered model from a file or from a coordinator's registry.

A reference that names an existing file loads that file, unless a coordinator is given. Anything
else is a registry reference (``churn``, ``churn@3``, ``churn@champion``) fetched from the
coordinator given, or from the one
``FEDLEARN_COORDINATOR`` names, with the admin token given or from ``FEDLEARN_ADMIN_TOKEN``: the
same settings the ``fedlearn`` commands read. The package is checked as a file would be, so a
coordinator is trusted no more than a file: no pickle, and no user code unless ``trust_code``.
"""

from __future__ import annotations

import os
from pathlib import Path

from fedlearn.core.errors import ConfigError
from fedlearn.registry.loading import load_model_file
from fedlearn.registry.package import ModelPackage
from fedlearn.registry.predictors import RegisteredModel, load_package
from fedlearn.web.client import CoordinatorClient

COORDINATOR_ENV = "FEDLEARN_COORDINATOR"
TOKEN_ENV = "FEDLEARN_ADMIN_TOKEN"


def load_model(
    ref: str | Path, *, coordinator: str | None = None, token: str | None = None, trust_code: bool = False
) -> RegisteredModel:
    """The model ``ref`` names, ready to predict; see the module docstring for where it is looked up."""
    if coordinator is None and Path(ref).is_file():
        return load_model_file(ref, trust_code=trust_code)
    url = coordinator or os.environ.get(COORDINATOR_ENV)
    if url is None:
        raise ConfigError(
            f"no model file {str(ref)!r}; to load a registered model pass coordinator=URL (or set "
            f"{COORDINATOR_ENV}) and an admin token (token=... or {TOKEN_ENV})"
        )
    with CoordinatorClient(url, admin_token=token or os.environ.get(TOKEN_ENV, "")) as client:
        data = client.model_package(str(ref))
    return load_package(ModelPackage.from_bytes(data), trust_code=trust_code)
