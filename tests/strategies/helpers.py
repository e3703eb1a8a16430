"""Builders shared by the strategy tests: small seeded models and the replies nodes would send."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np

from fedlearn.core.messages import CONTROL_DELTA_PREFIX, FIT, Reply
from fedlearn.core.params import ParamSet
from fedlearn.strategies import STRATEGIES, Strategy

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
