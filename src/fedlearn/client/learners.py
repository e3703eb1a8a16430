"""Built-in learners by name, for the config layer.

A run config says ``learner = "sklearn.mlp"`` plus options; :func:`builtin_learner` turns that
and the dataset's description (features, classes, task) into a ``Learner``. The description is
all it reads, so the coordinator can call it with metadata alone and never needs rows.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from fedlearn.client.numpy_trainer import linear_regression, mlp_classifier, softmax_regression
from fedlearn.client.sklearn_trainer import MLPLearner, SGDLearner
from fedlearn.client.torch_trainer import torch_mlp
from fedlearn.client.trainer import Learner
from fedlearn.core.checks import Constraint, check, check_call_options, check_options
from fedlearn.core.errors import ConfigError
from fedlearn.data.dataset import TaskType


class DatasetMeta(Protocol):
    """What a learner needs to know about the data; a ``Dataset`` is one."""

    @property
    def n_features(self) -> int: ...

    @property
    def n_classes(self) -> int: ...

    @property
    def task(self) -> TaskType: ...


# name -> (constructor, task it requires or None for either, what it fills in from the metadata)
_BUILTINS: dict[str, tuple[Callable[..., Learner], TaskType | None, tuple[str, ...]]] = {
    "numpy.softmax": (softmax_regression, "classification", ("n_features", "n_classes")),
    "numpy.linear": (linear_regression, "regression", ("n_features",)),
    "numpy.mlp": (mlp_classifier, "classification", ("n_features", "n_classes")),
    "sklearn.sgd": (SGDLearner, None, ("n_features", "n_classes", "task")),
    "sklearn.mlp": (MLPLearner, "classification", ("n_features", "n_classes")),
    "torch.mlp": (torch_mlp, "classification", ("n_features", "n_classes")),
}

BUILTIN_LEARNERS: tuple[str, ...] = tuple(sorted(_BUILTINS))
"""Names :func:`builtin_learner` accepts."""


def builtin_learner(name: str, data: DatasetMeta, **options: Any) -> Learner:
    """The built-in learner ``name`` shaped for ``data``, with constructor ``options``.

    Unknown names, options the learner does not take and data of the wrong task raise
    ``ConfigError`` naming what is accepted.
    """
    if name not in _BUILTINS:
        raise ConfigError(f"unknown learner {name!r}; built-in learners are {list(BUILTIN_LEARNERS)}")
    constructor, task, from_meta = _BUILTINS[name]
    if task is not None and data.task != task:
        raise ConfigError(f"learner {name!r} needs {task} data; got {data.task} data")
    if name.startswith("torch.") and importlib.util.find_spec("torch") is None:
        raise ConfigError(f"learner {name!r} needs PyTorch; install the extra: pip install 'fedlearn[torch]'")
    check_call_options(f"learner {name!r}", constructor, options, supplied=from_meta)
    try:
        return constructor(**{key: getattr(data, key) for key in from_meta}, **options)
    except (TypeError, ConfigError) as exc:  # an option of the wrong type or value, e.g. a string learning rate
        raise ConfigError(f"learner {name!r}: invalid option value: {exc}") from exc


def check_fit_config(learner: Learner, config: Mapping[str, object]) -> None:
    """Refuse ``[client]`` keys the learner's trainers never read, and values they would refuse.

    Checked when a run is submitted, so a typo (``local_epoch``) or a wrong type
    (``learning_rate = "fast"``) fails at once with one line, instead of running with a default
    or failing on every node. A user's learner that does not declare ``fit_options`` is not checked.
    """
    options: Mapping[str, Constraint] | None = getattr(learner, "fit_options", None)
    if options is None:
        return
    check_options("[client]", config, accepted=options)
    try:
        for key, value in config.items():
            check(key, value, options[key])
    except ConfigError as exc:
        raise ConfigError(f"[client] {exc}") from None


def build_learner(name: str, data: DatasetMeta, **options: Any) -> Learner:
    """A built-in learner by name, or a user's ``package.module:function`` returning a Learner.

    A user function is called as ``function(data, **options)``, where ``data`` carries
    ``n_features``, ``n_classes`` and ``task`` (no rows are needed to build a model). Whether a
    user function may be imported at all is the caller's decision: a coordinator allows only
    the entry points its operator named.
    """
    if ":" not in name:
        return builtin_learner(name, data, **options)
    module_name, _, attribute = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"[model] learner {name!r} cannot be loaded: {exc}") from exc
    learner = factory(data, **options)
    if not isinstance(learner, Learner):
        raise ConfigError(f"[model] learner {name!r} returned {type(learner).__name__}, which is not a Learner")
    return learner
