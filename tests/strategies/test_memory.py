"""Streaming reducers keep memory O(model), whatever the number of replies."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest

from fedlearn.core.messages import FIT, Reply
from fedlearn.core.params import ParamSet
from fedlearn.strategies import centered_clipping, fedavg, fltrust, norm_bound, weighted_mean

SIZE = 1_000_000  # float32 values: a 4 MB model


def peak_bytes_while(run) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_weighted_mean_over_many_replies_keeps_memory_within_a_few_model_sizes() -> None:
    model_bytes = SIZE * 4
    reducer = weighted_mean()
    global_model = ParamSet({"w": np.zeros(SIZE, dtype=np.float32)})  # held by the engine anyway

    def run() -> None:
        acc = reducer.init(global_model)
        for i in range(200):  # 200 replies would be 800 MB if they were all held
            acc = reducer.add(acc, ParamSet({"w": np.full(SIZE, i, dtype=np.float32)}), float(i + 1))
        reducer.result(acc)

    peak = peak_bytes_while(run)

    assert peak < 3.5 * model_bytes, f"peak {peak / model_bytes:.1f} model sizes"  # float64 sum + one reply


def test_fedavg_round_over_a_stream_of_replies_holds_one_reply_at_a_time() -> None:
    model_bytes = SIZE * 4
    params = ParamSet({"w": np.zeros(SIZE, dtype=np.float32)})

    def replies() -> Iterator[Reply]:
        for i in range(40):  # 40 replies would be 160 MB if they were all held
            yield Reply(node_id=f"n{i}", kind=FIT, round=1, params=params.map(lambda a: a + 1), num_examples=i + 1)

    peak = peak_bytes_while(
        lambda: fedavg().aggregate(params, ParamSet(), replies(), num_nodes=40, rng=np.random.default_rng(0))
    )

    # float64 sum + one reply + the result: neither a second reply nor a (reply - params) temporary
    assert peak < 4 * model_bytes, f"peak {peak / model_bytes:.1f} model sizes"


def one_step(params: ParamSet, rng: np.random.Generator) -> ParamSet:
    return params.map(lambda a: a + 1)


@pytest.mark.parametrize(
    ("reducer", "model_sizes"),
    [
        (centered_clipping(10.0), 6.5),  # float64 sum and centre, the float32 centre state, one reply
        (fltrust(one_step), 6.5),  # float64 sum and server direction, one reply
        (norm_bound(weighted_mean(), 10.0), 5.0),  # the mean's float64 sum, one reply and its clipped copy
    ],
    ids=["centered_clipping", "fltrust", "norm_bound"],
)
def test_streaming_defence_over_many_replies_keeps_memory_within_a_few_model_sizes(reducer, model_sizes) -> None:
    model_bytes = SIZE * 4
    global_model = ParamSet({"w": np.zeros(SIZE, dtype=np.float32)})
    state = reducer.init_state(global_model)  # held by the strategy anyway

    def run() -> None:
        bound = reducer.bind(state, np.random.default_rng(0))
        acc = bound.init(global_model)
        for i in range(100):  # 100 replies would be 400 MB if they were all held
            acc = bound.add(acc, ParamSet({"w": np.full(SIZE, i, dtype=np.float32)}), 1.0)
        bound.result(acc)

    peak = peak_bytes_while(run)

    assert peak < model_sizes * model_bytes, f"peak {peak / model_bytes:.1f} model sizes"
