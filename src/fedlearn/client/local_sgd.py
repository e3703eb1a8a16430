"""The local training loop shared by every gradient-based trainer.

A node's fit is minibatch SGD over its own rows, optionally pulled towards the global model
(FedProx) and corrected for client drift (SCAFFOLD). This module holds that loop once, plus the
pieces the PyTorch adapter reuses: parsing the fit config, the minibatch schedule and SCAFFOLD's
control-variate bookkeeping.

It is the hot path of large simulations (a 1M-parameter model × 100 nodes every round), so each
fit copies the global parameters exactly once, updates them in place through one scratch buffer
per array and never widens float32 to float64.

SCAFFOLD (Karimireddy et al., 2020) uses "option II": after ``K`` local steps with learning rate
``lr`` starting from the global ``x`` and ending at ``y_i``, the node's control variate becomes
``c_i+ = c_i - c + (x - y_i) / (K * lr)``. ``c_i`` lives in the node's state (zeros at first) and
only ``delta_c = c_i+ - c_i`` travels back.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from fedlearn.client.trainer import FitResult, NodeState
from fedlearn.core.checks import (
    BOOL,
    COUNT,
    NON_NEGATIVE,
    POSITIVE,
    Constraint,
    Interval,
    check,
    check_fields,
    name_mismatch,
)
from fedlearn.core.errors import ConfigError, TrainerError
from fedlearn.core.messages import (
    CONTROL_DELTA_PREFIX,
    CONTROL_PREFIX,
    PROXIMAL_MU_KEY,
    SCAFFOLD_KEY,
    SEED_KEY,
    WORK_FRACTION_KEY,
    Config,
)
from fedlearn.core.params import ParamSet

Array = NDArray[Any]

CLIENT_CONTROL_KEY = "scaffold/c_i"
"""Where a node keeps its SCAFFOLD control variate ``c_i`` in its ``NodeState``."""


class LossAndGrad(Protocol):
    """Mean loss of a minibatch and its gradient for every floating-point parameter."""

    def __call__(self, params: Mapping[str, Array], x: Array, y: Array) -> tuple[float, Mapping[str, Array]]: ...


_AT_LEAST_ONE = Interval(1, math.inf, integer=True)
_LOCAL_CONSTRAINTS: Mapping[str, Constraint] = {
    "learning_rate": POSITIVE,
    "local_epochs": _AT_LEAST_ONE,
    "local_steps": COUNT,  # 0 means: use local_epochs
    "batch_size": _AT_LEAST_ONE,
    PROXIMAL_MU_KEY: NON_NEGATIVE,
    SCAFFOLD_KEY: BOOL,
    WORK_FRACTION_KEY: Interval(0, 1, closed="right"),
}


FIT_OPTIONS: Mapping[str, Constraint] = MappingProxyType(
    {key: _LOCAL_CONSTRAINTS[key] for key in ("learning_rate", "local_epochs", "local_steps", "batch_size")}
)
"""The fit-config keys a run config's ``[client]`` section may set for the built-in trainers.

The others are set by the engine (``seed``, ``round``) and strategies (``proximal_mu``,
``scaffold``), or by simulated faults (``work_fraction``).
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalConfig:
    """The fit-config keys every built-in trainer understands, checked once per fit."""

    learning_rate: float
    local_epochs: int = 1
    local_steps: int = 0
    batch_size: int = 32
    seed: int | None = None
    proximal_mu: float = 0.0
    scaffold: bool = False
    work_fraction: float = 1.0

    def __post_init__(self) -> None:
        try:
            check_fields(self, _LOCAL_CONSTRAINTS)
            if self.seed is not None:
                check(SEED_KEY, self.seed, COUNT)
        except ConfigError as exc:
            raise ConfigError(f"fit config {exc}") from None

    @classmethod
    def from_config(cls, config: Config, *, learning_rate: float) -> LocalConfig:
        """Read the known keys, ignoring others (strategies and the engine add their own).

        ``learning_rate`` is the trainer's default, used when the config has none. A missing
        ``seed`` means fresh OS entropy, never a fixed default; the engine always sends one.
        """
        known: dict[str, Any] = {key: config[key] for key in (*_LOCAL_CONSTRAINTS, SEED_KEY) if key in config}
        return cls(**{"learning_rate": learning_rate, **known})

    def require_stable_proximal(self, momentum: float = 0.0) -> None:
        """Refuse a proximal term so strong that explicit SGD on it would diverge.

        The term alone contracts ``w - w_global`` by ``1 - mu * lr`` per step, which overshoots
        and grows once ``mu * lr`` reaches ``2 * (1 + momentum)``; a clear error beats NaNs.
        """
        limit = 2.0 * (1.0 + momentum)
        if self.proximal_mu * self.learning_rate >= limit:
            raise ConfigError(
                f"fit config `proximal_mu` * `learning_rate` must be < {limit:g} for local SGD to converge; "
                f"got {self.proximal_mu:g} * {self.learning_rate:g} = {self.proximal_mu * self.learning_rate:g}"
            )

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def num_steps(self, num_examples: int) -> int:
        """``K``: how many minibatch steps one fit takes on ``num_examples`` rows (at least one)."""
        if self.local_steps > 0:
            return self.partial(self.local_steps)
        return self.partial(self.local_epochs * math.ceil(num_examples / self.batch_size))

    def partial(self, full: int) -> int:
        """``work_fraction`` of ``full`` units of work, rounded, and never less than one."""
        return full if self.work_fraction == 1 else max(1, round(full * self.work_fraction))


def batch_indices(num_examples: int, config: LocalConfig, rng: np.random.Generator) -> Iterator[NDArray[np.intp]]:
    """Row indices of each minibatch: fresh permutations, cut into ``batch_size`` slices.

    With ``local_steps`` the schedule runs across epoch boundaries and stops after that many
    batches; otherwise it covers ``local_epochs`` full passes (the last batch may be short).
    """
    if num_examples < 1:
        raise TrainerError("this node has no training examples")
    remaining = config.num_steps(num_examples)
    while remaining > 0:
        order = rng.permutation(num_examples)
        for start in range(0, num_examples, config.batch_size):
            yield order[start : start + config.batch_size]
            remaining -= 1
            if remaining == 0:
                return


def scaffold_inputs(params: ParamSet, extras: ParamSet | None, state: NodeState) -> tuple[ParamSet, ParamSet]:
    """The global control variate ``c`` from the task and this node's ``c_i`` from its state."""
    c = (extras or ParamSet()).select(CONTROL_PREFIX)
    missing = name_mismatch(c, params).missing
    if missing:
        raise TrainerError(
            f"scaffold is on but the task extras lack {CONTROL_PREFIX}{missing[0]!s} "
            f"({len(missing)} missing); the strategy must send its control variate"
        )
    c = ParamSet({k: c[k] for k in params})
    if c.spec() != params.spec():
        raise TrainerError(
            "the SCAFFOLD control variate in the task extras does not match the model's shapes or dtypes"
        )
    c_i = state.get(CLIENT_CONTROL_KEY)
    if c_i is None:
        return c, params.zeros_like()
    if c_i.spec() != params.spec():
        raise TrainerError(
            f"the SCAFFOLD control variate in node state ({CLIENT_CONTROL_KEY!r}) does not match the model; "
            "clear the node state when the model changes"
        )
    return c, c_i


def scaffold_update(
    start: Mapping[str, Array],
    end: Mapping[str, Array],
    c: ParamSet,
    c_i: ParamSet,
    *,
    steps: int,
    learning_rate: float,
    trained: frozenset[str] | None = None,
) -> tuple[ParamSet, ParamSet]:
    """Option II: ``(delta_c with the wire prefix, new c_i)``; untrained arrays get zero deltas.

    ``trained`` names the arrays that gradient steps moved (default: every floating-point one);
    buffers such as batch-norm statistics keep ``c_i`` unchanged so their delta is exactly zero.
    """
    scale = 1.0 / (steps * learning_rate)
    new_c_i: dict[str, Array] = {}
    delta: dict[str, Array] = {}
    for name, ci in c_i.items():
        if ci.dtype.kind != "f" or (trained is not None and name not in trained):
            new_c_i[name] = ci
            delta[name] = np.zeros_like(ci)
            continue
        updated = np.subtract(start[name], end[name], dtype=ci.dtype)
        updated *= scale
        updated -= c[name]
        updated += ci
        new_c_i[name] = updated
        delta[name] = updated - ci
    return ParamSet(delta).with_prefix(CONTROL_DELTA_PREFIX), ParamSet(new_c_i)


def local_sgd(
    params: ParamSet,
    x: Array,
    y: Array,
    *,
    loss_and_grad: LossAndGrad,
    config: LocalConfig,
    state: NodeState,
    extras: ParamSet | None = None,
) -> FitResult:
    """Train ``params`` on ``(x, y)`` with minibatch SGD; never mutates ``params``.

    The step for every floating-point array ``w`` is ``w -= lr * (g + mu * (w - w_global) + c - c_i)``,
    where the proximal term is present only when ``proximal_mu > 0`` and the correction only when
    ``scaffold`` is on. Integer arrays are carried through unchanged.
    """
    if len(x) != len(y):
        raise TrainerError(f"features have {len(x)} rows but targets have {len(y)}")
    config.require_stable_proximal()
    weights = {k: np.array(v) for k, v in params.items()}  # the one copy a fit makes
    trained = {k: w for k, w in weights.items() if w.dtype.kind == "f"}
    scratch = {k: np.empty_like(w) for k, w in trained.items()}
    lr, mu = config.learning_rate, config.proximal_mu
    correction: dict[str, Array] = {}
    if config.scaffold:
        c, c_i = scaffold_inputs(params, extras, state)
        correction = {k: np.subtract(c[k], c_i[k], dtype=w.dtype) for k, w in trained.items()}

    total_loss = 0.0
    steps = 0
    for idx in batch_indices(len(x), config, config.rng()):
        loss, grads = loss_and_grad(weights, x[idx], y[idx])
        _check_grads(grads, trained)
        for name, w in trained.items():
            step = scratch[name]  # fewest passes over memory: plain SGD touches each array twice
            if mu > 0:
                np.subtract(w, params[name], out=step)
                step *= mu
                step += grads[name]
                if config.scaffold:
                    step += correction[name]
                step *= lr
            elif config.scaffold:
                np.add(grads[name], correction[name], out=step, casting="same_kind")
                step *= lr
            else:
                np.multiply(grads[name], lr, out=step, casting="same_kind")
            np.subtract(w, step, out=w)
        total_loss += float(loss)
        steps += 1

    result_extras = ParamSet()
    if config.scaffold:
        result_extras, state[CLIENT_CONTROL_KEY] = scaffold_update(
            params, weights, c, c_i, steps=steps, learning_rate=lr
        )
    return FitResult(
        params=ParamSet(weights), num_examples=len(x), metrics={"loss": total_loss / steps}, extras=result_extras
    )


def _check_grads(grads: Mapping[str, Array], trained: Mapping[str, Array]) -> None:
    """Wrong gradients would corrupt the model silently, so name the first mismatch instead."""
    if grads.keys() != trained.keys():
        raise TrainerError(
            f"loss_and_grad must return a gradient for each floating-point parameter; {name_mismatch(grads, trained)}"
        )
    for name, g in grads.items():
        if np.shape(g) != trained[name].shape:
            raise TrainerError(f"gradient for {name!r} has shape {np.shape(g)}; expected {trained[name].shape}")
