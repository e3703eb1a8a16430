"""Builders shared by the strategy tests: small seeded models and the replies nodes would send."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np

from fedlearn.core.messages import CONTROL_DELTA_PREFIX, FIT, Reply
from fedlearn.core.params import ParamSet
from fedlearn.strategies import STRATEGIES, Strategy
from fedlearn.strategies.base import AnyReducer, bind_reducer, reducer_init_state

# Values for the options some builders require (they have no default on purpose).
REQUIRED_OPTIONS = {"mu": 0.01}


def random_model(seed: int, *, dtypes: Sequence[str] = ("float32", "float64")) -> ParamSet:
    """A small model with one array per entry of ``dtypes``, filled from ``seed``."""
    rng = np.random.default_rng(seed)
    shapes = [(4, 3), (5,), (2, 2, 2)]
    arrays: dict[str, np.ndarray] = {}
    for i, dtype in enumerate(dtypes):
        shape = shapes[i % len(shapes)]
        if np.dtype(dtype).kind in "iu":
            arrays[f"layer{i}/{dtype}"] = rng.integers(-50, 50, size=shape).astype(dtype)
        else:
            arrays[f"layer{i}/{dtype}"] = rng.standard_normal(shape).astype(dtype)
    return ParamSet(arrays)


def make_replies(
    params: ParamSet,
    *,
    count: int,
    seed: int,
    weights: Sequence[int] | None = None,
    control_deltas: bool = False,
) -> list[Reply]:
    """``count`` fit replies: ``params`` plus seeded noise, weights 10, 20, ... unless given.

    Noise is drawn in name order, so a model and its codec round-trip (which may list names in
    another order) get the same replies.
    """
    rng = np.random.default_rng(seed)

    def noise(like: ParamSet) -> ParamSet:
        return ParamSet({k: rng.standard_normal(like[k].shape).astype(like[k].dtype) for k in sorted(like)})

    replies = []
    for i in range(count):
        noisy = params + noise(params)
        extras = noise(params).with_prefix(CONTROL_DELTA_PREFIX) if control_deltas else ParamSet()
        replies.append(
            Reply(
                node_id=f"node-{i}",
                kind=FIT,
                round=1,
                params=noisy,
                num_examples=10 * (i + 1) if weights is None else weights[i],
                metrics={"loss": float(i)},
                extras=extras,
            )
        )
    return replies


def build_named(name: str, **options: object) -> Strategy:
    """The named strategy, with its required options filled in from ``REQUIRED_OPTIONS``."""
    builder = STRATEGIES[name]
    parameters = inspect.signature(builder).parameters
    required = {k: REQUIRED_OPTIONS[k] for k, p in parameters.items() if p.default is p.empty}
    return builder(**{**required, **options})


def reduce_arrays(
    reducer: AnyReducer,
    updates: Sequence[np.ndarray],
    weights: Sequence[float] | None = None,
    *,
    state: ParamSet | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Reduce single-array updates named ``w`` (relative to a zero model) and return the result.

    A round reducer is bound to ``state`` (its initial state by default) and a generator from ``seed``.
    """
    template = ParamSet({"w": np.zeros_like(updates[0])})
    bound = bind_reducer(
        reducer, reducer_init_state(reducer, template) if state is None else state, np.random.default_rng(seed)
    )
    acc = bound.init(template)
    for update, weight in zip(updates, weights or [1.0] * len(updates), strict=True):
        acc = bound.add(acc, ParamSet({"w": update}), weight)
    return bound.result(acc)["w"]


HONEST_MEAN = np.linspace(0.5, 1.5, 20)
"""The direction honest nodes agree on, in the attack scenarios."""


def attacked_updates(attack: str, *, honest: int, byzantine: int, seed: int = 0) -> list[np.ndarray]:
    """``honest`` updates scattered around :data:`HONEST_MEAN` and ``byzantine`` ones, mixed together.

    ``"huge"`` attackers send enormous random updates; ``"sign_flip"`` ones send the honest
    direction reversed and scaled up, as if to undo the round.
    """
    rng = np.random.default_rng(seed)
    good = [HONEST_MEAN + 0.1 * rng.standard_normal(HONEST_MEAN.size) for _ in range(honest)]
    if attack == "huge":
        bad = [1e4 * rng.standard_normal(HONEST_MEAN.size) for _ in range(byzantine)]
    elif attack == "sign_flip":
        bad = [-10.0 * HONEST_MEAN + 0.1 * rng.standard_normal(HONEST_MEAN.size) for _ in range(byzantine)]
    else:
        raise ValueError(f"unknown attack {attack!r}")
    mixed = good + bad
    return [mixed[i] for i in rng.permutation(len(mixed))]
