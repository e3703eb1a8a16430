"""Models written as plain NumPy functions.

The user supplies ``loss_and_grad(params, x, y) -> (loss, grads)`` and optionally
``metrics(params, x, y) -> dict``; ``NumpyLearner`` and ``NumpyTrainer`` wrap them with the shared
local SGD loop, so FedProx and SCAFFOLD work for any such model without extra code. Three models
are built in: softmax regression and a ReLU perceptron (``loss``, ``accuracy``), and linear
regression (``mse``).

Built-in functions compute in the parameters' dtype (float32), so a float64 feature matrix is
cast once when the trainer is built rather than widening every step.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

from fedlearn.client.local_sgd import FIT_OPTIONS, LocalConfig, LossAndGrad, local_sgd
from fedlearn.client.trainer import EvalResult, FitResult, NodeState
from fedlearn.core.checks import NON_NEGATIVE, POSITIVE, Constraint, check_int, check_ints, check_real
from fedlearn.core.errors import ConfigError, TrainerError
from fedlearn.core.messages import Config
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset

Array = NDArray[Any]


class InitFn(Protocol):
    """Initial parameters from an explicit seed; the same seed must give the same arrays."""

    def __call__(self, seed: int) -> Mapping[str, Array]: ...


class MetricsFn(Protocol):
    """Metrics of ``params`` on ``(x, y)``; a ``"loss"`` entry spares a gradient evaluation."""

    def __call__(self, params: Mapping[str, Array], x: Array, y: Array) -> Mapping[str, float]: ...


class NumpyTrainer:
    """A ``Trainer`` for one node's data driven by NumPy functions."""

    __slots__ = ("_learning_rate", "_loss_and_grad", "_metrics", "_x", "_y")

    def __init__(
        self,
        data: Dataset,
        loss_and_grad: LossAndGrad,
        *,
        metrics: MetricsFn | None = None,
        learning_rate: float = 0.1,
        feature_dtype: str | None = None,
    ) -> None:
        if data.y is None:
            raise TrainerError(f"dataset {data.name!r} has no targets; supervised training needs y")
        self._x = data.x if feature_dtype is None else np.asarray(data.x, dtype=feature_dtype)
        self._y = data.y
        self._loss_and_grad = loss_and_grad
        self._metrics = metrics
        self._learning_rate = learning_rate

    def fit(self, params: ParamSet, config: Config, state: NodeState, extras: ParamSet | None = None) -> FitResult:
        local = LocalConfig.from_config(config, learning_rate=self._learning_rate)
        return local_sgd(
            params, self._x, self._y, loss_and_grad=self._loss_and_grad, config=local, state=state, extras=extras
        )

    def evaluate(self, params: ParamSet, config: Config) -> EvalResult:
        if len(self._x) == 0:
            raise TrainerError("this node has no evaluation examples")
        metrics = dict(self._metrics(params, self._x, self._y)) if self._metrics else {}
        loss = metrics.pop("loss", None)
        if loss is None:
            loss, _ = self._loss_and_grad(params, self._x, self._y)
        return EvalResult(loss=float(loss), num_examples=len(self._x), metrics=metrics)


@dataclass(frozen=True, slots=True, kw_only=True)
class NumpyLearner:
    """A model given as NumPy functions; ``n_features``, when set, is checked against node data."""

    fit_options: ClassVar[Mapping[str, Constraint]] = FIT_OPTIONS

    init: InitFn
    loss_and_grad: LossAndGrad
    metrics: MetricsFn | None = None
    learning_rate: float = 0.1
    feature_dtype: str | None = None
    n_features: int | None = None

    def __post_init__(self) -> None:
        check_real("learning_rate", self.learning_rate, POSITIVE)

    def init_params(self, seed: int) -> ParamSet:
        return ParamSet(self.init(seed))

    def trainer(self, data: Dataset) -> NumpyTrainer:
        if self.n_features is not None and data.n_features != self.n_features:
            raise ConfigError(
                f"dataset {data.name!r} has {data.n_features} features; this model expects {self.n_features}"
            )
        return NumpyTrainer(
            data,
            self.loss_and_grad,
            metrics=self.metrics,
            learning_rate=self.learning_rate,
            feature_dtype=self.feature_dtype,
        )


# --- softmax regression ---------------------------------------------------------------------


def _softmax_init(seed: int, *, n_features: int, n_classes: int, init_scale: float) -> dict[str, Array]:
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((n_features, n_classes), dtype=np.float32)
    weight *= np.float32(init_scale)
    return {"weight": weight, "bias": np.zeros(n_classes, dtype=np.float32)}


def _shifted_logits(params: Mapping[str, Array], x: Array) -> tuple[Array, Array]:
    """Logits minus their row maximum, and the row log-sum-exp of those (for a stable softmax)."""
    w, b = params["weight"], params["bias"]
    z = x.astype(w.dtype, copy=False) @ w
    z += b
    z -= z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z, lse


def softmax_loss_and_grad(params: Mapping[str, Array], x: Array, y: Array) -> tuple[float, dict[str, Array]]:
    """Mean cross-entropy and its gradient; labels are integers in ``[0, n_classes)``."""
    z, lse = _shifted_logits(params, x)
    rows = np.arange(len(y))
    labels = y.astype(np.intp, copy=False)
    loss = float((lse[:, 0] - z[rows, labels]).sum()) / len(y)  # np.mean's wrapper costs more than the sum
    z -= lse
    probs = np.exp(z, out=z)  # reuse the logits buffer: d loss / d logits = (p - onehot) / n
    probs[rows, labels] -= 1
    probs /= len(y)
    xb = x.astype(probs.dtype, copy=False)
    return loss, {"weight": xb.T @ probs, "bias": probs.sum(axis=0)}


def softmax_metrics(params: Mapping[str, Array], x: Array, y: Array) -> dict[str, float]:
    z, lse = _shifted_logits(params, x)
    labels = y.astype(np.intp, copy=False)
    rows = np.arange(len(y))
    return {
        "loss": float(np.mean(lse[:, 0] - z[rows, labels])),
        "accuracy": float(np.mean(z.argmax(axis=1) == labels)),
    }


def softmax_regression(
    n_features: int, n_classes: int, init_scale: float = 0.01, learning_rate: float = 0.1
) -> NumpyLearner:
    """Multinomial logistic regression: ``weight`` (n_features, n_classes) and ``bias``, float32."""
    check_int("n_features", n_features, low=1)
    check_int("n_classes", n_classes, low=2)
    check_real("init_scale", init_scale, NON_NEGATIVE)
    return NumpyLearner(
        init=partial(_softmax_init, n_features=n_features, n_classes=n_classes, init_scale=init_scale),
        loss_and_grad=softmax_loss_and_grad,
        metrics=softmax_metrics,
        learning_rate=learning_rate,
        feature_dtype="float32",
        n_features=n_features,
    )


# --- multi-layer perceptron -----------------------------------------------------------------


def _mlp_init(seed: int, *, units: tuple[int, ...]) -> dict[str, Array]:
    """Glorot-uniform weights and zero biases, float32, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    out: dict[str, Array] = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(units)):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        out[f"weight_{i}"] = rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32)
        out[f"bias_{i}"] = np.zeros(fan_out, dtype=np.float32)
    return out


def _mlp_forward(params: Mapping[str, Array], x: Array) -> tuple[list[Array], Array, Array]:
    """The ReLU activations of every hidden layer, the shifted output logits and their log-sum-exp."""
    layers = len(params) // 2
    activations = [x.astype(params["weight_0"].dtype, copy=False)]
    for i in range(layers - 1):
        h = activations[-1] @ params[f"weight_{i}"]
        h += params[f"bias_{i}"]
        activations.append(np.maximum(h, 0, out=h))
    z = activations[-1] @ params[f"weight_{layers - 1}"]
    z += params[f"bias_{layers - 1}"]
    z -= z.max(axis=1, keepdims=True)
    return activations, z, np.log(np.exp(z).sum(axis=1, keepdims=True))


def mlp_loss_and_grad(params: Mapping[str, Array], x: Array, y: Array) -> tuple[float, dict[str, Array]]:
    """Mean cross-entropy of a ReLU perceptron and its gradient, by backpropagation."""
    activations, z, lse = _mlp_forward(params, x)
    rows = np.arange(len(y))
    labels = y.astype(np.intp, copy=False)
    loss = float((lse[:, 0] - z[rows, labels]).sum()) / len(y)
    z -= lse
    delta = np.exp(z, out=z)
    delta[rows, labels] -= 1
    delta /= len(y)
    grads: dict[str, Array] = {}
    for i in reversed(range(len(activations))):
        grads[f"weight_{i}"] = activations[i].T @ delta
        grads[f"bias_{i}"] = delta.sum(axis=0)
        if i > 0:
            delta = delta @ params[f"weight_{i}"].T
            delta[activations[i] <= 0] = 0
    return loss, grads


def mlp_metrics(params: Mapping[str, Array], x: Array, y: Array) -> dict[str, float]:
    _, z, lse = _mlp_forward(params, x)
    labels = y.astype(np.intp, copy=False)
    rows = np.arange(len(y))
    return {
        "loss": float(np.mean(lse[:, 0] - z[rows, labels])),
        "accuracy": float(np.mean(z.argmax(axis=1) == labels)),
    }


def mlp_classifier(
    n_features: int, n_classes: int, hidden: tuple[int, ...] = (32,), learning_rate: float = 0.1
) -> NumpyLearner:
    """A ReLU multi-layer perceptron in NumPy: ``weight_<i>`` and ``bias_<i>`` per layer, float32.

    The same model as ``torch.mlp`` without PyTorch: small and fast, for simulations that need a
    model that is not convex (robustness experiments, say) on a machine without torch.
    """
    check_int("n_features", n_features, low=1)
    check_int("n_classes", n_classes, low=2)
    widths = check_ints("hidden", hidden, low=1)
    return NumpyLearner(
        init=partial(_mlp_init, units=(n_features, *widths, n_classes)),
        loss_and_grad=mlp_loss_and_grad,
        metrics=mlp_metrics,
        learning_rate=learning_rate,
        feature_dtype="float32",
        n_features=n_features,
    )


# --- linear regression ----------------------------------------------------------------------


def _linear_init(seed: int, *, n_features: int) -> dict[str, Array]:
    """Zeros: the problem is convex, so no symmetry needs breaking and ``seed`` has nothing to do."""
    del seed
    return {"weight": np.zeros(n_features, dtype=np.float32), "bias": np.zeros(1, dtype=np.float32)}


def _residuals(params: Mapping[str, Array], x: Array, y: Array) -> tuple[Array, Array]:
    w = params["weight"]
    xb = x.astype(w.dtype, copy=False)
    r = xb @ w
    r += params["bias"]
    r -= y.astype(w.dtype, copy=False)
    return xb, r


def linear_loss_and_grad(params: Mapping[str, Array], x: Array, y: Array) -> tuple[float, dict[str, Array]]:
    """Mean squared error and its gradient."""
    xb, r = _residuals(params, x, y)
    loss = float(np.dot(r, r) / len(r))
    r *= 2 / len(r)
    return loss, {"weight": xb.T @ r, "bias": r.sum(keepdims=True)}


def linear_metrics(params: Mapping[str, Array], x: Array, y: Array) -> dict[str, float]:
    _, r = _residuals(params, x, y)
    mse = float(np.dot(r, r) / len(r))
    return {"loss": mse, "mse": mse}


def linear_regression(n_features: int, learning_rate: float = 0.01) -> NumpyLearner:
    """Least-squares regression: ``weight`` (n_features,) and ``bias`` (1,), float32."""
    check_int("n_features", n_features, low=1)
    return NumpyLearner(
        init=partial(_linear_init, n_features=n_features),
        loss_and_grad=linear_loss_and_grad,
        metrics=linear_metrics,
        learning_rate=learning_rate,
        feature_dtype="float32",
        n_features=n_features,
    )
