"""The conformance suite every reducer, server transform and named strategy passes.

A new built-in joins by adding one line to ``REDUCERS``, ``TRANSFORMS`` or (for named strategies)
``fedlearn.strategies.STRATEGIES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from fedlearn.core.codec import decode, encode
from fedlearn.core.params import ParamSet
from fedlearn.strategies import (
    STRATEGIES,
    ServerTransform,
    Strategy,
    adagrad,
    adam,
    bucketing,
    bulyan,
    centered_clipping,
    chain,
    clip_by_global_norm,
    coordinate_median,
    fltrust,
    fraction_sampler,
    geometric_median,
    krum,
    momentum,
    norm_bound,
    sgd,
    trimmed_mean,
    unweighted_mean,
    weighted_mean,
    yogi,
)
from fedlearn.strategies.base import AnyReducer, bind_reducer, reducer_init_state, reducer_next_state

from .helpers import build_named, make_replies, random_model


@dataclass(frozen=True)
class ReducerCase:
    reducer: AnyReducer
    ignores_zero_weight: bool = True  # false only for reducers that ignore weights altogether
    min_replies: int = 1
    identity: bool = True  # false for reducers that move even agreeing updates (clipping, rescaling)


def toward_ones(params: ParamSet, rng: np.random.Generator) -> ParamSet:
    """An FLTrust server model: the global model plus one everywhere, plus a little seeded noise."""
    return params.map(lambda a: (a + 1 + (rng.random(a.shape) if a.dtype.kind == "f" else 0)).astype(a.dtype))


REDUCERS = {
    "weighted_mean": ReducerCase(weighted_mean()),
    "unweighted_mean": ReducerCase(unweighted_mean(), ignores_zero_weight=False),
    "coordinate_median": ReducerCase(coordinate_median()),
    "trimmed_mean": ReducerCase(trimmed_mean(0.2)),
    "krum": ReducerCase(krum(1), min_replies=5),
    "multi_krum": ReducerCase(krum(1, multi=3), min_replies=5),
    "bulyan": ReducerCase(bulyan(1), min_replies=7),
    "geometric_median": ReducerCase(geometric_median()),
    "centered_clipping": ReducerCase(centered_clipping(1e6)),  # a radius no update reaches: the plain mean
    "centered_clipping_3": ReducerCase(centered_clipping(0.5, iterations=3), identity=False),
    "fltrust": ReducerCase(fltrust(toward_ones), identity=False),
    "norm_bound": ReducerCase(norm_bound(weighted_mean(), 1e6)),
    "norm_bound_trimmed": ReducerCase(norm_bound(trimmed_mean(0.2), 1.0), identity=False),
    "bucketing_median": ReducerCase(bucketing(coordinate_median(), 2)),
    "bucketing_bulyan": ReducerCase(bucketing(bulyan(1), 2), min_replies=13),
    "bucketing_clipping": ReducerCase(bucketing(centered_clipping(0.5), 3), identity=False),
}

TRANSFORMS: dict[str, ServerTransform] = {
    "sgd": sgd(),
    "sgd_half": sgd(0.5),
    "momentum": momentum(0.5),
    "nesterov": momentum(0.5, nesterov=True),
    "adam": adam(0.1),
    "yogi": yogi(0.1),
    "adagrad": adagrad(0.1),
    "clip_by_global_norm": clip_by_global_norm(1.0),
    "chain": chain(clip_by_global_norm(1.0), adam(0.1)),
}


def reducer_cases(keep: Callable[[ReducerCase], bool] = lambda case: True) -> pytest.MarkDecorator:
    names = [name for name, case in REDUCERS.items() if keep(case)]
    return pytest.mark.parametrize("case", [REDUCERS[name] for name in names], ids=names)


transforms = pytest.mark.parametrize("transform", list(TRANSFORMS.values()), ids=list(TRANSFORMS))
strategy_names = pytest.mark.parametrize("name", sorted(STRATEGIES))


def reduce(
    reducer: AnyReducer,
    template: ParamSet,
    models: list[tuple[ParamSet, float]],
    *,
    state: ParamSet | None = None,
    seed: int = 0,
) -> ParamSet:
    """The combined update of weighted client ``models`` relative to ``template``.

    A round reducer is bound to ``state`` (its initial state by default) and a generator from ``seed``.
    """
    if state is None:
        state = reducer_init_state(reducer, template)
    bound = bind_reducer(reducer, state, np.random.default_rng(seed))
    acc = bound.init(template)
    for model, weight in models:
        acc = bound.add(acc, model, weight)
    return bound.result(acc)


def weighted_models(template: ParamSet, count: int, seed: int) -> list[tuple[ParamSet, float]]:
    return [(random_model(seed + i, dtypes=_dtypes(template)), float(i + 1)) for i in range(count)]


def _dtypes(template: ParamSet) -> list[str]:
    return [a.dtype.name for a in template.values()]


def assert_same_values(actual: ParamSet, expected: ParamSet, *, rtol: float) -> None:
    assert actual.keys() == expected.keys()
    for name in expected:
        assert actual[name].dtype == expected[name].dtype
        np.testing.assert_allclose(actual[name], expected[name], rtol=rtol, atol=rtol)


# Reducers ---------------------------------------------------------------------------------------


@reducer_cases()
def test_reducer_result_does_not_depend_on_reply_order(case: ReducerCase) -> None:
    template = random_model(0, dtypes=["float64", "float64"])
    updates = weighted_models(template, max(7, case.min_replies), seed=1)
    shuffled = [updates[i] for i in np.random.default_rng(2).permutation(len(updates))]

    in_order = reduce(case.reducer, template, updates)
    reordered = reduce(case.reducer, template, shuffled)

    assert_same_values(reordered, in_order, rtol=1e-12)


@reducer_cases(lambda case: case.ignores_zero_weight)
def test_reducer_zero_weight_reply_changes_nothing(case: ReducerCase) -> None:
    template = random_model(0)
    updates = weighted_models(template, max(6, case.min_replies), seed=1)
    outlier = template.map(lambda a: np.full_like(a, 1e6))

    without = reduce(case.reducer, template, updates)
    with_zero = reduce(case.reducer, template, [*updates[:3], (outlier, 0.0), *updates[3:]])

    assert with_zero.bitwise_equal(without)


@reducer_cases(lambda case: case.min_replies == 1 and case.identity)
def test_reducer_single_reply_gives_its_difference_from_the_template(case: ReducerCase) -> None:
    template = random_model(0, dtypes=["float32", "float16", "int64"])
    model = random_model(1, dtypes=["float32", "float16", "int64"])

    result = reduce(case.reducer, template, [(model, 3.0)])

    assert result.bitwise_equal(model - template)


@reducer_cases(lambda case: case.identity)
def test_reducer_identical_replies_give_their_difference_from_the_template(case: ReducerCase) -> None:
    template = random_model(0, dtypes=["float32", "float16", "int64"])
    model = random_model(1, dtypes=["float32", "float16", "int64"])

    result = reduce(case.reducer, template, [(model, float(w)) for w in range(1, case.min_replies + 4)])

    assert result.bitwise_equal(model - template)


@reducer_cases()
def test_reducer_same_inputs_give_bit_identical_results(case: ReducerCase) -> None:
    template = random_model(0)

    count = max(6, case.min_replies)

    first = reduce(case.reducer, template, weighted_models(template, count, seed=1), seed=4)
    second = reduce(case.reducer, template, weighted_models(template, count, seed=1), seed=4)

    assert first.bitwise_equal(second)


@reducer_cases()
def test_reducer_result_keeps_each_dtype(case: ReducerCase) -> None:
    template = random_model(0, dtypes=["float16", "float32", "float64", "int32"])

    result = reduce(case.reducer, template, weighted_models(template, max(6, case.min_replies), seed=1))

    assert result.spec() == template.spec()


def reducer_rounds(
    case: ReducerCase, template: ParamSet, state: ParamSet, rounds: range
) -> tuple[list[ParamSet], ParamSet]:
    """Reduce a round of fresh replies per round in ``rounds``, carrying the reducer's state along."""
    results = []
    for r in rounds:
        models = weighted_models(template, max(6, case.min_replies), seed=10 * r)
        update = reduce(case.reducer, template, models, state=state, seed=r)
        state = reducer_next_state(case.reducer, state, update)
        results.append(update)
    return results, state


@reducer_cases()
def test_reducer_state_survives_codec_and_continues_bit_identically(case: ReducerCase) -> None:
    template = random_model(0, dtypes=["float32", "float64", "int64"])
    _, state = reducer_rounds(case, template, reducer_init_state(case.reducer, template), range(2))
    expected, final = reducer_rounds(case, template, state, range(2, 4))

    decoded = decode(encode(state))
    resumed, resumed_final = reducer_rounds(case, template, decoded, range(2, 4))

    assert decoded.bitwise_equal(state)
    assert all(a.bitwise_equal(b) for a, b in zip(resumed, expected, strict=True))
    assert resumed_final.bitwise_equal(final)


# Server transforms ------------------------------------------------------------------------------


def run_transform(
    transform: ServerTransform, params: ParamSet, state: ParamSet, rounds: range, rng: np.random.Generator
) -> tuple[list[ParamSet], ParamSet]:
    steps = []
    for r in rounds:
        update = random_model(100 + r, dtypes=_dtypes(params))
        step, state = transform.update(update, state, params, rng)
        steps.append(step)
    return steps, state


@transforms
def test_transform_state_survives_codec_and_continues_bit_identically(transform: ServerTransform) -> None:
    params = random_model(0, dtypes=["float32", "float64", "int64"])
    _, state = run_transform(transform, params, transform.init(params), range(2), np.random.default_rng(7))
    steps, final = run_transform(transform, params, state, range(2, 4), np.random.default_rng(8))

    decoded = decode(encode(state))
    resumed_steps, resumed_final = run_transform(transform, params, decoded, range(2, 4), np.random.default_rng(8))

    assert decoded.bitwise_equal(state)
    assert all(a.bitwise_equal(b) for a, b in zip(resumed_steps, steps, strict=True))
    assert resumed_final.bitwise_equal(final)


@transforms
def test_transform_same_seed_gives_same_result(transform: ServerTransform) -> None:
    params = random_model(0)

    steps_a, state_a = run_transform(transform, params, transform.init(params), range(3), np.random.default_rng(5))
    steps_b, state_b = run_transform(transform, params, transform.init(params), range(3), np.random.default_rng(5))

    assert all(a.bitwise_equal(b) for a, b in zip(steps_a, steps_b, strict=True))
    assert state_a.bitwise_equal(state_b)


@transforms
def test_transform_zero_update_from_init_gives_zero_step(transform: ServerTransform) -> None:
    params = random_model(0)
    zero = params.zeros_like()

    step, _ = transform.update(zero, transform.init(params), params, np.random.default_rng(0))

    assert step.bitwise_equal(zero)


@transforms
def test_transform_step_keeps_each_dtype(transform: ServerTransform) -> None:
    params = random_model(0, dtypes=["float16", "float32", "float64", "int64"])
    update = random_model(1, dtypes=["float16", "float32", "float64", "int64"])

    step, _ = transform.update(update, transform.init(params), params, np.random.default_rng(0))

    assert step.spec() == params.spec()


@transforms
def test_transform_leaves_its_inputs_unchanged(transform: ServerTransform) -> None:
    params = random_model(0)
    update = random_model(1)
    state = transform.init(params)
    copies = [ParamSet(x.to_dict(writable=True)) for x in (update, state, params)]

    transform.update(update, state, params, np.random.default_rng(0))

    assert all(x.bitwise_equal(c) for x, c in zip((update, state, params), copies, strict=True))


@transforms
def test_transform_strategy_result_does_not_depend_on_reply_order(transform: ServerTransform) -> None:
    strategy = Strategy(name="t", sampler=fraction_sampler(), reducer=weighted_mean(), transform=transform)
    params = random_model(0)
    replies = make_replies(params, count=6, seed=1)

    state = strategy.init_state(params)

    forward = strategy.aggregate(params, state, replies, num_nodes=6, rng=np.random.default_rng(0))
    backward = strategy.aggregate(params, state, replies[::-1], num_nodes=6, rng=np.random.default_rng(0))

    for name, value in forward.params.items():
        eps = 8 * np.finfo(value.dtype).eps  # a few roundings of the final casts, nothing more
        np.testing.assert_allclose(backward.params[name], value, rtol=eps, atol=eps * np.abs(value).max())


@transforms
def test_transform_strategy_zero_weight_reply_changes_nothing(transform: ServerTransform) -> None:
    strategy = Strategy(name="t", sampler=fraction_sampler(), reducer=weighted_mean(), transform=transform)
    params = random_model(0)
    replies = make_replies(params, count=4, seed=1)
    idle = make_replies(params, count=1, seed=9, weights=[0])

    without = strategy.aggregate(
        params, strategy.init_state(params), replies, num_nodes=5, rng=np.random.default_rng(0)
    )
    with_idle = strategy.aggregate(
        params, strategy.init_state(params), [*replies, *idle], num_nodes=5, rng=np.random.default_rng(0)
    )

    assert with_idle.params.bitwise_equal(without.params)
    assert with_idle.state.bitwise_equal(without.state)


# Named strategies -------------------------------------------------------------------------------


def run_rounds(strategy: Strategy, params: ParamSet, state: ParamSet, rounds: range) -> tuple[ParamSet, ParamSet]:
    for r in rounds:
        replies = make_replies(params, count=4, seed=r, control_deltas=strategy.control_variates)
        update = strategy.aggregate(params, state, replies, num_nodes=8, rng=np.random.default_rng(r))
        params, state = update.params, update.state
    return params, state


@strategy_names
def test_strategy_state_survives_codec_and_continues_bit_identically(name: str) -> None:
    strategy = build_named(name)
    params = random_model(0)
    params, state = run_rounds(strategy, params, strategy.init_state(params), range(2))
    expected = run_rounds(strategy, params, state, range(2, 4))

    resumed = run_rounds(strategy, decode(encode(params)), decode(encode(state)), range(2, 4))

    assert resumed[0].bitwise_equal(expected[0])
    assert resumed[1].bitwise_equal(expected[1])


@strategy_names
def test_strategy_same_seed_samples_the_same_nodes(name: str) -> None:
    strategy = build_named(name, fraction=0.2)
    nodes = [f"node-{i}" for i in range(50)]

    first = strategy.sample(nodes, np.random.default_rng(3))
    second = strategy.sample(nodes, np.random.default_rng(3))

    assert first == second
    assert len(first) == 10
