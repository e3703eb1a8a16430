"""fedlearn: federated learning and exact federated analytics over data that never moves.

The names here are the everyday API; each part's own package (``fedlearn.strategies``,
``fedlearn.engine``, ...) exports the rest.
"""

from typing import TYPE_CHECKING

from fedlearn.core import ConfigError, FedlearnError, ParamSet, Reply, Task, decode, encode
from fedlearn.engine import Engine, EngineConfig, FaultPlan, RunState
from fedlearn.simulation import simulate
from fedlearn.strategies import Strategy, build_strategy

if TYPE_CHECKING:
    from pathlib import Path

    from fedlearn.client.learners import builtin_learner
    from fedlearn.registry import Registry, ScoringJob, score
    from fedlearn.registry.predictors import RegisteredModel
    from fedlearn.web.model_server import serving

__version__ = "0.1.0"


def load_model(
    ref: "str | Path", *, coordinator: str | None = None, token: str | None = None, trust_code: bool = False
) -> "RegisteredModel":
    """A registered model version, ready to predict, from an exported file or a coordinator's registry.

    ``ref`` is a package file, or ``NAME``, ``NAME@VERSION`` or ``NAME@ALIAS`` on ``coordinator``
    (default: ``FEDLEARN_COORDINATOR``) with the admin ``token`` (default: ``FEDLEARN_ADMIN_TOKEN``).
    ``trust_code`` allows a package of a user learner (``pkg.mod:fn``) to import that code. See
    :func:`fedlearn.web.models.load_model`. Imported on first call, so ``import fedlearn`` stays light.
    """
    from fedlearn.web.models import load_model as load

    return load(ref, coordinator=coordinator, token=token, trust_code=trust_code)


_LAZY = {
    "Registry": "fedlearn.registry",
    "ScoringJob": "fedlearn.registry",
    "builtin_learner": "fedlearn.client.learners",
    "score": "fedlearn.registry",
    "serving": "fedlearn.web.model_server",
}
"""Names imported on first use, so ``import fedlearn`` stays light (no SQLAlchemy, scikit-learn or uvicorn)."""


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module 'fedlearn' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


__all__ = [
    "ConfigError",
    "Engine",
    "EngineConfig",
    "FaultPlan",
    "FedlearnError",
    "ParamSet",
    "Registry",
    "Reply",
    "RunState",
    "ScoringJob",
    "Strategy",
    "Task",
    "__version__",
    "build_strategy",
    "builtin_learner",
    "decode",
    "encode",
    "load_model",
    "score",
    "serving",
    "simulate",
]
