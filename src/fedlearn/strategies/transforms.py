"""Server transforms: the combined update in, the step added to the global model out.

Each transform is an optax-style ``(init, update)`` pair. Its state is a flat ``ParamSet`` (moment
``m`` of parameter ``w`` is named ``m/w``), so the engine checkpoints it with the same safetensors
codec as the model, and continuing from a decoded checkpoint is bit-identical to never stopping.
Nothing is mutated: every call returns a new step and a new state.

The update a transform receives is the reduced client delta, ``mean(client params) - params``.
Reddi et al. 2021 ("Adaptive Federated Optimization") call it the pseudo-gradient; its sign is
such that ``params + step`` moves towards the clients, which is why the adaptive transforms add
rather than subtract. Arithmetic and moments are float32 for float16/float32 parameters and
float64 for float64 and integer ones, fixed by each parameter's dtype so that every run computes
the same bits; each step is cast back to its parameter's dtype (rounded for integers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar

import numpy as np

from fedlearn.core.checks import BOOL, POSITIVE, Interval, check, check_real, name_mismatch
from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.core.params import ParamSet
from fedlearn.strategies.base import ServerTransform


def _work_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float32) if dtype.kind == "f" and dtype.itemsize <= 4 else np.dtype(np.float64)


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind in "iu":
        values = np.rint(values)
    return values.astype(dtype, copy=False)


def _zeros(params: ParamSet, fill: float = 0.0) -> ParamSet:
    return params.map(lambda p: np.full(p.shape, fill, _work_dtype(p.dtype)))


def _moments(state: ParamSet, prefix: str, update: ParamSet) -> ParamSet:
    """The moments named ``prefix + name``, checked to cover exactly the update's names."""
    moments = state.select(prefix)
    mismatch = name_mismatch(moments, update)
    if mismatch:
        raise ValidationError(
            f"transform state under {prefix!r} does not match the model: {mismatch}; "
            "was it created by this transform's init for this model?"
        )
    return moments


# [0, 1): a decay rate of 1 would never forget the first update, and one above 1 would amplify it.
_DECAY = Interval(0, 1, closed="left")


def _check_lr(value: object) -> float:
    return check_real("learning_rate", value, POSITIVE)


@dataclass(frozen=True, slots=True, kw_only=True)
class SGD:
    """``step = learning_rate * update``; stateless. With learning rate 1 the strategy is FedAvg."""

    learning_rate: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "learning_rate", _check_lr(self.learning_rate))

    def init(self, params: ParamSet) -> ParamSet:
        return ParamSet()

    def update(
        self, update: ParamSet, state: ParamSet, params: ParamSet, rng: np.random.Generator
    ) -> tuple[ParamSet, ParamSet]:
        lr = self.learning_rate
        if lr == 1.0:  # FedAvg: the step is the update itself, shared safely since ParamSets are immutable
            return update, state
        return update.map(lambda u: _cast(np.multiply(u, lr, dtype=_work_dtype(u.dtype)), u.dtype)), state


@dataclass(frozen=True, slots=True, kw_only=True)
class Momentum:
    """Server momentum (FedAvgM, Hsu et al. 2019): ``v = beta * v + update``, ``step = lr * v``.

    With ``nesterov`` the step looks one round ahead: ``lr * (beta * v + update)``.
    """

    learning_rate: float
    beta: float = 0.9
    nesterov: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "learning_rate", _check_lr(self.learning_rate))
        object.__setattr__(self, "beta", check_real("beta", self.beta, _DECAY))
        check("nesterov", self.nesterov, BOOL)

    def init(self, params: ParamSet) -> ParamSet:
        return _zeros(params).with_prefix("v/")

    def update(
        self, update: ParamSet, state: ParamSet, params: ParamSet, rng: np.random.Generator
    ) -> tuple[ParamSet, ParamSet]:
        velocity = _moments(state, "v/", update)
        lr, beta = self.learning_rate, self.beta
        new_v: dict[str, np.ndarray] = {}
        step: dict[str, np.ndarray] = {}
        for name, u in update.items():
            g = u.astype(velocity[name].dtype)
            v = beta * velocity[name] + g
            new_v[name] = v
            step[name] = _cast(lr * (beta * v + g if self.nesterov else v), u.dtype)
        return ParamSet(step), ParamSet(new_v).with_prefix("v/")


class SecondMoment(Enum):
    """How the second moment ``v`` follows the squared update ``g2``.

    This is the only line of Algorithm 2 (Reddi et al. 2021) in which FedAdam, FedYogi and
    FedAdagrad differ, so it is the one parameter of their shared implementation.
    """

    ADAM = "adam"
    """``v = beta2 * v + (1 - beta2) * g2``: an exponential moving average of ``g2``."""
    YOGI = "yogi"
    """``v = v - (1 - beta2) * g2 * sign(v - g2)``: towards ``g2``, by at most ``(1 - beta2) * g2``."""
    ADAGRAD = "adagrad"
    """``v = v + g2``: every squared update so far; ``beta2`` plays no part."""

    def advance(self, v: np.ndarray, g2: np.ndarray, beta2: float) -> np.ndarray:
        """``v`` after one more squared update ``g2``; pure, so every run computes the same bits."""
        match self:
            case SecondMoment.ADAM:
                return beta2 * v + (1 - beta2) * g2
            case SecondMoment.YOGI:
                return v - (1 - beta2) * g2 * np.sign(v - g2)
            case SecondMoment.ADAGRAD:
                return v + g2


@dataclass(frozen=True, slots=True, kw_only=True)
class _Adaptive:
    """Algorithm 2 of Reddi et al. 2021, written once for Adam, Yogi and Adagrad.

    ``m = beta1 * m + (1 - beta1) * update``; ``v = second_moment.advance(v, update**2, beta2)``;
    ``step = learning_rate * m / (sqrt(v) + tau)``. The state is ``m/<name>`` and ``v/<name>``
    per parameter, starting at ``m = 0`` and ``v = tau**2`` (the paper asks for ``v >= tau**2``).

    Flower differs from the paper twice: it starts ``v`` at 0, which matters only while the
    summed squared updates are comparable to ``tau**2``, and its FedAdam scales the learning rate
    by Adam's bias correction, which the paper does not and neither do we (``docs/strategies.md``
    says by how much).

    Subclasses only name their :class:`SecondMoment` and, where they differ, their defaults.
    """

    second_moment: ClassVar[SecondMoment]
    learning_rate: float
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3

    def __post_init__(self) -> None:
        object.__setattr__(self, "learning_rate", _check_lr(self.learning_rate))
        object.__setattr__(self, "beta1", check_real("beta1", self.beta1, _DECAY))
        object.__setattr__(self, "beta2", check_real("beta2", self.beta2, _DECAY))
        object.__setattr__(self, "tau", check_real("tau", self.tau, POSITIVE))

    def init(self, params: ParamSet) -> ParamSet:
        return _zeros(params).with_prefix("m/").merged(_zeros(params, self.tau**2).with_prefix("v/"))

    def update(
        self, update: ParamSet, state: ParamSet, params: ParamSet, rng: np.random.Generator
    ) -> tuple[ParamSet, ParamSet]:
        first, second = _moments(state, "m/", update), _moments(state, "v/", update)
        lr, beta1, beta2, tau = self.learning_rate, self.beta1, self.beta2, self.tau
        new_m: dict[str, np.ndarray] = {}
        new_v: dict[str, np.ndarray] = {}
        step: dict[str, np.ndarray] = {}
        for name, u in update.items():
            g = u.astype(first[name].dtype)
            m = beta1 * first[name] + (1 - beta1) * g
            v = self.second_moment.advance(second[name], g * g, beta2)
            new_m[name], new_v[name] = m, v
            step[name] = _cast(lr * m / (np.sqrt(v) + tau), u.dtype)
        return ParamSet(step), ParamSet(new_m).with_prefix("m/").merged(ParamSet(new_v).with_prefix("v/"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Adam(_Adaptive):
    """FedAdam: ``v = beta2 * v + (1 - beta2) * update**2``. ``tau`` is the adaptivity epsilon."""

    second_moment = SecondMoment.ADAM


@dataclass(frozen=True, slots=True, kw_only=True)
class Yogi(_Adaptive):
    """FedYogi: ``v = v - (1 - beta2) * update**2 * sign(v - update**2)``.

    When updates shrink, Adam's ``v`` falls by ``(1 - beta2) * v`` per round and the effective
    learning rate jumps; Yogi's falls by at most ``(1 - beta2) * update**2``, so it rises gently
    (Zaheer et al. 2018).
    """

    second_moment = SecondMoment.YOGI


@dataclass(frozen=True, slots=True, kw_only=True)
class Adagrad(_Adaptive):
    """FedAdagrad: ``v = v + update**2``, so it has no ``beta2``.

    ``beta1`` defaults to 0 (no momentum: classic Adagrad, as in Flower, which fixes it at 0);
    the paper's Algorithm 2 allows any ``beta1`` in [0, 1).
    """

    second_moment = SecondMoment.ADAGRAD
    beta1: float = 0.0
    beta2: float = field(default=0.0, init=False, repr=False)  # unused by SecondMoment.ADAGRAD


@dataclass(frozen=True, slots=True, kw_only=True)
class ClipByGlobalNorm:
    """Scale the update down so its global L2 norm is at most ``max_norm``; stateless.

    A cheap guard against one bad round blowing up the model, and the clipping half of DP-FedAvg.
    """

    max_norm: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_norm", check_real("max_norm", self.max_norm, POSITIVE))

    def init(self, params: ParamSet) -> ParamSet:
        return ParamSet()

    def update(
        self, update: ParamSet, state: ParamSet, params: ParamSet, rng: np.random.Generator
    ) -> tuple[ParamSet, ParamSet]:
        norm = update.l2_norm()
        if norm <= self.max_norm:
            return update, state
        scale = self.max_norm / norm
        return update.map(lambda u: _cast(np.multiply(u, scale, dtype=_work_dtype(u.dtype)), u.dtype)), state


@dataclass(frozen=True, slots=True, kw_only=True)
class Chain:
    """Apply ``transforms`` in order, each to the previous one's step.

    Transform ``i`` keeps its state under the prefix ``"{i}/"``, so states of several transforms
    (even of the same kind) share one flat ``ParamSet`` without clashing.
    """

    transforms: tuple[ServerTransform, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "transforms", tuple(self.transforms))
        if not self.transforms:
            raise ConfigError("`transforms` must hold at least one transform; got none")
        for i, transform in enumerate(self.transforms):
            if not isinstance(transform, ServerTransform):
                raise ConfigError(
                    f"`transforms[{i}]` must be a server transform (with init and update); "
                    f"got {type(transform).__name__}"
                )

    def init(self, params: ParamSet) -> ParamSet:
        return ParamSet().merged(*(t.init(params).with_prefix(f"{i}/") for i, t in enumerate(self.transforms)))

    def update(
        self, update: ParamSet, state: ParamSet, params: ParamSet, rng: np.random.Generator
    ) -> tuple[ParamSet, ParamSet]:
        step = update
        states: list[ParamSet] = []
        for i, transform in enumerate(self.transforms):
            step, sub_state = transform.update(step, state.select(f"{i}/"), params, rng)
            states.append(sub_state.with_prefix(f"{i}/"))
        return step, ParamSet().merged(*states)


def sgd(learning_rate: float = 1.0) -> SGD:
    """Plain server SGD; ``learning_rate=1`` (the default) makes the strategy FedAvg."""
    return SGD(learning_rate=learning_rate)


def momentum(learning_rate: float, beta: float = 0.9, nesterov: bool = False) -> Momentum:
    """Server momentum, as in FedAvgM."""
    return Momentum(learning_rate=learning_rate, beta=beta, nesterov=nesterov)


def adam(learning_rate: float, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3) -> Adam:
    """The FedAdam server optimizer (Reddi et al. 2021)."""
    return Adam(learning_rate=learning_rate, beta1=beta1, beta2=beta2, tau=tau)


def yogi(learning_rate: float, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3) -> Yogi:
    """The FedYogi server optimizer (Reddi et al. 2021)."""
    return Yogi(learning_rate=learning_rate, beta1=beta1, beta2=beta2, tau=tau)


def adagrad(learning_rate: float, tau: float = 1e-3, beta1: float = 0.0) -> Adagrad:
    """The FedAdagrad server optimizer (Reddi et al. 2021)."""
    return Adagrad(learning_rate=learning_rate, tau=tau, beta1=beta1)


def clip_by_global_norm(max_norm: float) -> ClipByGlobalNorm:
    """Clip the update's global L2 norm to ``max_norm``."""
    return ClipByGlobalNorm(max_norm=max_norm)


def chain(*transforms: ServerTransform) -> Chain:
    """Compose transforms left to right, e.g. ``chain(clip_by_global_norm(1.0), adam(0.01))``."""
    return Chain(transforms=transforms)
