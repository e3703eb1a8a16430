"""scikit-learn estimators as federated models.

The parameters are the estimator's fitted arrays: ``coef`` and ``intercept`` for the SGD linear
models, ``coefs_<i>`` and ``intercepts_<i>`` for the MLP. Each fit sets them into a fresh
estimator, runs ``partial_fit`` over the node's rows and reads them back, so no estimator state
survives between rounds and every node trains exactly what the coordinator sent.

The classes are fixed up front (``n_classes``) and passed to ``partial_fit``, so a node that lacks
some classes still produces arrays of the agreed shape. Local optimisation is plain SGD with a
constant step (``learning_rate`` from the fit config): a decaying or momentum schedule would carry
state that a fresh estimator cannot restore. ``partial_fit`` owns the gradient, so FedProx and
SCAFFOLD cannot be applied here; asking for them raises ``ConfigError``.

scikit-learn is imported only when a trainer is built or parameters are evaluated.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

from fedlearn.client.local_sgd import FIT_OPTIONS, LocalConfig, batch_indices
from fedlearn.client.trainer import EvalResult, FitResult, NodeState
from fedlearn.core.checks import NON_NEGATIVE, POSITIVE, Constraint, Options, check, check_int, check_ints, check_real
from fedlearn.core.errors import ConfigError, TrainerError
from fedlearn.core.messages import Config
from fedlearn.core.params import ParamSet, Spec
from fedlearn.data.dataset import Dataset, TaskType

Array = NDArray[Any]

_CLASSIFICATION_LOSSES = ("log_loss", "modified_huber")  # the ones with predict_proba
_REGRESSION_LOSSES = ("squared_error", "huber", "epsilon_insensitive", "squared_epsilon_insensitive")


class SklearnModel(Protocol):
    """What ``SklearnTrainer`` needs from a learner: shapes, and estimators holding given arrays."""

    @property
    def task(self) -> TaskType: ...

    @property
    def n_features(self) -> int: ...

    @property
    def n_classes(self) -> int: ...

    @property
    def learning_rate(self) -> float: ...

    def spec(self) -> Spec: ...

    def estimator(self, params: ParamSet, *, x: Array, y: Array, learning_rate: float, seed: int) -> Any:
        """A fresh estimator holding ``params``, ready for ``partial_fit`` and prediction."""
        ...

    def partial_fit(self, estimator: Any, x: Array, y: Array, *, batch_size: int) -> None:
        """One ``partial_fit`` call on these rows."""
        ...

    def read(self, estimator: Any) -> dict[str, Array]: ...


class SklearnTrainer:
    """Local training by ``partial_fit`` on one node's data."""

    __slots__ = ("_model", "_x", "_y")

    def __init__(self, data: Dataset, model: SklearnModel) -> None:
        if data.y is None:
            raise TrainerError(f"dataset {data.name!r} has no targets; supervised training needs y")
        if data.n_features != model.n_features:
            raise ConfigError(
                f"dataset {data.name!r} has {data.n_features} features; this model expects {model.n_features}"
            )
        self._model = model
        self._x = np.asarray(data.x, dtype=np.float64)
        self._y = data.y

    def fit(self, params: ParamSet, config: Config, state: NodeState, extras: ParamSet | None = None) -> FitResult:
        local = LocalConfig.from_config(config, learning_rate=self._model.learning_rate)
        for option, active in (("proximal_mu", local.proximal_mu > 0), ("scaffold", local.scaffold)):
            if active:
                raise ConfigError(
                    f"fit config `{option}` is not supported by the scikit-learn trainers: partial_fit owns the "
                    "gradient, so no proximal term or control variate can be added; use the numpy or torch "
                    "trainer (builtin_learner 'numpy.softmax' or 'torch.mlp')"
                )
        self._check(params)
        rng = local.rng()
        estimator = self._model.estimator(
            params, x=self._x, y=self._y, learning_rate=local.learning_rate, seed=int(rng.integers(2**31 - 1))
        )
        for rows in _partial_fit_rows(len(self._x), local, rng):
            self._model.partial_fit(estimator, self._x[rows], self._y[rows], batch_size=local.batch_size)
        return FitResult(params=ParamSet(self._model.read(estimator)), num_examples=len(self._x))

    def evaluate(self, params: ParamSet, config: Config) -> EvalResult:
        if len(self._x) == 0:
            raise TrainerError("this node has no evaluation examples")
        self._check(params)
        # The seed cannot change the outcome: nothing is shuffled and every array is overwritten.
        estimator = self._model.estimator(params, x=self._x, y=self._y, learning_rate=self._model.learning_rate, seed=0)
        if self._model.task == "regression":
            mse = float(np.mean((estimator.predict(self._x) - self._y) ** 2))
            return EvalResult(loss=mse, num_examples=len(self._x), metrics={"mse": mse})
        from sklearn.metrics import log_loss

        proba = estimator.predict_proba(self._x)  # columns are the classes 0 .. n_classes-1
        return EvalResult(
            loss=float(log_loss(self._y, proba, labels=np.arange(self._model.n_classes))),
            num_examples=len(self._x),
            metrics={"accuracy": float(np.mean(proba.argmax(axis=1) == self._y))},
        )

    def _check(self, params: ParamSet) -> None:
        expected = self._model.spec()
        if params.spec() != expected:
            raise TrainerError(f"parameters {params.spec()} do not match this model's {expected}")


def _partial_fit_rows(num_examples: int, local: LocalConfig, rng: np.random.Generator) -> Iterator[Array]:
    """One ``partial_fit`` call per minibatch with ``local_steps``, else one per shuffled epoch."""
    if local.local_steps > 0:
        yield from batch_indices(num_examples, local, rng)
        return
    if num_examples < 1:
        raise TrainerError("this node has no training examples")
    remaining = local.partial(local.local_epochs * num_examples)  # rows, so partial work can end mid-epoch
    while remaining > 0:
        rows = rng.permutation(num_examples)[:remaining]
        remaining -= len(rows)
        yield rows


def _check_shape(n_features: int, n_classes: int, task: TaskType) -> None:
    check_int("n_features", n_features, low=1)
    check("task", task, Options(("classification", "regression")))
    if task == "classification":
        check_int("n_classes", n_classes, low=2)


def _check_rate(learning_rate: float, alpha: float) -> None:
    check_real("learning_rate", learning_rate, POSITIVE)
    check_real("alpha", alpha, NON_NEGATIVE)


@dataclass(frozen=True, slots=True, kw_only=True)
class SGDLearner:
    """A linear model trained by ``SGDClassifier`` (log-loss by default) or ``SGDRegressor``.

    Parameters start at zero, as scikit-learn's do: the problem is convex and zeros keep every
    seed on the same, reproducible starting point.
    """

    fit_options: ClassVar[Mapping[str, Constraint]] = FIT_OPTIONS

    n_features: int
    n_classes: int = 0
    task: TaskType = "classification"
    loss: str = ""
    alpha: float = 1e-4
    learning_rate: float = 0.1

    def __post_init__(self) -> None:
        _check_shape(self.n_features, self.n_classes, self.task)
        _check_rate(self.learning_rate, self.alpha)
        allowed = _CLASSIFICATION_LOSSES if self.task == "classification" else _REGRESSION_LOSSES
        if not self.loss:
            object.__setattr__(self, "loss", allowed[0])
        elif self.loss not in allowed:
            raise ConfigError(f"`loss` for {self.task} must be one of {list(allowed)}; got {self.loss!r}")

    def spec(self) -> Spec:
        rows = 1 if self.task == "regression" or self.n_classes == 2 else self.n_classes
        coef_shape = (self.n_features,) if self.task == "regression" else (rows, self.n_features)
        return {"coef": (coef_shape, "<f8"), "intercept": ((rows,), "<f8")}

    def init_params(self, seed: int) -> ParamSet:
        del seed  # zeros whatever the seed; see the class docstring
        return ParamSet({name: np.zeros(shape, dtype=dtype) for name, (shape, dtype) in self.spec().items()})

    def trainer(self, data: Dataset) -> SklearnTrainer:
        return SklearnTrainer(data, self)

    def estimator(self, params: ParamSet, *, x: Array, y: Array, learning_rate: float, seed: int) -> Any:
        from sklearn.linear_model import SGDClassifier, SGDRegressor

        common = {
            "loss": self.loss,
            "alpha": self.alpha,
            "learning_rate": "constant",
            "eta0": learning_rate,
            "shuffle": False,  # the trainer shuffles with the fit seed
            "random_state": seed,
        }
        estimator = SGDClassifier(**common) if self.task == "classification" else SGDRegressor(**common)
        # With ``average=False`` partial_fit continues from coef_/intercept_ when they are set.
        estimator.coef_ = np.array(params["coef"])
        estimator.intercept_ = np.array(params["intercept"])
        if self.task == "classification":
            estimator.classes_ = np.arange(self.n_classes)  # prediction needs them; partial_fit checks them
        return estimator

    def partial_fit(self, estimator: Any, x: Array, y: Array, *, batch_size: int) -> None:
        """Per-sample SGD over the rows: ``batch_size`` only sizes the calls made for ``local_steps``."""
        if self.task == "classification":
            estimator.partial_fit(x, y, classes=np.arange(self.n_classes))
        else:
            estimator.partial_fit(x, y)

    def read(self, estimator: Any) -> dict[str, Array]:
        return {"coef": estimator.coef_, "intercept": estimator.intercept_}


@dataclass(frozen=True, slots=True, kw_only=True)
class MLPLearner:
    """A multi-layer perceptron classifier trained by ``MLPClassifier.partial_fit`` (solver "sgd")."""

    fit_options: ClassVar[Mapping[str, Constraint]] = FIT_OPTIONS

    n_features: int
    n_classes: int
    hidden: tuple[int, ...] = (64,)
    activation: str = "relu"
    alpha: float = 1e-4
    learning_rate: float = 0.2

    def __post_init__(self) -> None:
        _check_shape(self.n_features, self.n_classes, "classification")
        _check_rate(self.learning_rate, self.alpha)
        object.__setattr__(self, "hidden", check_ints("hidden", self.hidden, low=1))
        check("activation", self.activation, Options(("relu", "tanh", "logistic", "identity")))

    @property
    def task(self) -> TaskType:
        return "classification"

    def _layer_units(self) -> list[int]:
        n_out = 1 if self.n_classes == 2 else self.n_classes  # scikit-learn uses one logistic unit for 2 classes
        return [self.n_features, *self.hidden, n_out]

    def spec(self) -> Spec:
        units = self._layer_units()
        coefs = {f"coefs_{i}": ((a, b), "<f8") for i, (a, b) in enumerate(itertools.pairwise(units))}
        intercepts = {f"intercepts_{i}": ((b,), "<f8") for i, b in enumerate(units[1:])}
        return {**coefs, **intercepts}

    def init_params(self, seed: int) -> ParamSet:
        """Glorot-uniform weights and biases, scikit-learn's own rule, drawn from ``seed``."""
        rng = np.random.default_rng(seed)
        factor = 2.0 if self.activation == "logistic" else 6.0
        units = self._layer_units()
        out: dict[str, Array] = {}
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(units)):
            bound = math.sqrt(factor / (fan_in + fan_out))
            out[f"coefs_{i}"] = rng.uniform(-bound, bound, (fan_in, fan_out))
            out[f"intercepts_{i}"] = rng.uniform(-bound, bound, fan_out)
        return ParamSet({name: out[name] for name in self.spec()})

    def trainer(self, data: Dataset) -> SklearnTrainer:
        return SklearnTrainer(data, self)

    def estimator(self, params: ParamSet, *, x: Array, y: Array, learning_rate: float, seed: int) -> Any:
        from sklearn.neural_network import MLPClassifier

        estimator = MLPClassifier(
            hidden_layer_sizes=self.hidden,
            activation=self.activation,
            solver="sgd",
            alpha=self.alpha,
            batch_size=1,
            learning_rate="constant",
            learning_rate_init=learning_rate,
            momentum=0.0,  # momentum would leave state behind from the priming call below
            shuffle=False,
            random_state=seed,
        )
        # MLPClassifier has no public way to build its layers without data: prime it with one
        # row, then overwrite every array with ``params``. With momentum 0 and a constant step,
        # the priming step leaves nothing behind that the next partial_fit would read.
        estimator.partial_fit(x[:1], y[:1], classes=np.arange(self.n_classes))
        layers = len(self.hidden) + 1
        for i in range(layers):
            estimator.coefs_[i][...] = params[f"coefs_{i}"]
            estimator.intercepts_[i][...] = params[f"intercepts_{i}"]
        return estimator

    def partial_fit(self, estimator: Any, x: Array, y: Array, *, batch_size: int) -> None:
        # Capped at the rows given: scikit-learn warns when a call holds less than one batch.
        estimator.set_params(batch_size=min(batch_size, len(x)))
        estimator.partial_fit(x, y)

    def read(self, estimator: Any) -> dict[str, Array]:
        coefs = {f"coefs_{i}": c for i, c in enumerate(estimator.coefs_)}
        intercepts = {f"intercepts_{i}": b for i, b in enumerate(estimator.intercepts_)}
        return {**coefs, **intercepts}
