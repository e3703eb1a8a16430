from __future__ import annotations

import logging

import numpy as np
import pytest

from fedlearn.core.codec import decode, encode
from fedlearn.core.errors import ConfigError, QuorumError
from fedlearn.core.messages import Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.engine import Engine, EngineConfig, RunState, history_from_json, history_to_json
from fedlearn.strategies import fedadam, fedavg
from tests.engine.conftest import ScriptedFleet, shift_fleet


def test_fedavg_round_gives_example_weighted_mean_of_offsets(params: ParamSet) -> None:
    fleet = shift_fleet([1.0, 2.0, 4.0], [10, 30, 60])
    engine = Engine(fleet, fedavg(), EngineConfig(rounds=1, seed=0))

    state = engine.run(engine.initial_state(params))

    expected = (1 * 10 + 2 * 30 + 4 * 60) / 100
    np.testing.assert_allclose(state.params["w"], np.full((2, 3), expected), rtol=1e-6)


def test_round_records_history_with_counts_bytes_and_metrics(params: ParamSet) -> None:
    fleet = shift_fleet([1.0, 3.0], [1, 1])
    engine = Engine(fleet, fedavg(), EngineConfig(rounds=2, seed=0, evaluate_fraction=1.0))

    state = engine.run(engine.initial_state(params))

    first = state.history[0]
    assert (first.round, first.sampled, first.replies, first.num_examples) == (1, 2, 2, 2)
    assert first.bytes_sent == 2 * params.nbytes * 2  # fit + evaluate send the model to both nodes
    assert first.bytes_received == 2 * params.nbytes
    assert first.fit_metrics["loss"] == pytest.approx(2.0)
    assert first.federated_metrics["loss"] == pytest.approx(2.0)
    assert len(state.history) == 2


def test_nan_reply_is_rejected_with_reason_and_round_goes_on(params: ParamSet) -> None:
    def answer(node: str, task: Task) -> Reply:
        value = np.nan if node == "bad" else 1.0
        return Reply(
            node_id=node, kind=task.kind, round=task.round, params=task.params.map(lambda a: a + value), num_examples=5
        )

    engine = Engine(ScriptedFleet(["a", "bad", "c"], answer), fedavg(), EngineConfig(rounds=1, seed=0))

    state = engine.run(engine.initial_state(params))

    assert "NaN" in state.history[0].failures["bad"]
    assert state.history[0].replies == 2
    assert state.history[0].contributors == ("a", "c")
    assert history_from_json(history_to_json(state.history)) == list(state.history)  # contributors survive JSON
    np.testing.assert_allclose(state.params["b"], 1.0)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda p: ParamSet({"w": np.zeros((3, 2), np.float32), "b": p["b"]}), "shape"),
        (lambda p: ParamSet({"w": p["w"].astype(np.float64), "b": p["b"]}), "dtype"),
        (lambda p: p.merged(ParamSet({"evil": np.zeros(1, np.float32)})), "unknown"),
        (lambda p: ParamSet({"w": p["w"]}), "missing"),
        (lambda p: p.map(lambda a: a + np.inf), "NaN or Inf"),
    ],
)
def test_malformed_reply_is_rejected_with_reason(params: ParamSet, mangle, reason: str) -> None:
    def answer(node: str, task: Task) -> Reply:
        out = mangle(task.params) if node == "bad" else task.params
        return Reply(node_id=node, kind=task.kind, round=task.round, params=out, num_examples=1)

    engine = Engine(ScriptedFleet(["ok", "bad"], answer), fedavg(), EngineConfig(rounds=1, seed=0))

    state = engine.run(engine.initial_state(params))

    assert reason in state.history[0].failures["bad"]


def test_absurd_example_count_is_rejected(params: ParamSet) -> None:
    def answer(node: str, task: Task) -> Reply:
        count = 10**15 if node == "bad" else 3
        return Reply(node_id=node, kind=task.kind, round=task.round, params=task.params, num_examples=count)

    engine = Engine(ScriptedFleet(["ok", "bad"], answer), fedavg(), EngineConfig(rounds=1, seed=0))

    state = engine.run(engine.initial_state(params))

    assert "num_examples" in state.history[0].failures["bad"]


def test_too_few_valid_replies_fails_round_with_counts(params: ParamSet) -> None:
    def answer(node: str, task: Task) -> Reply:
        return Reply(node_id=node, kind=task.kind, round=task.round, error="disk full")

    config = EngineConfig(rounds=1, seed=0, min_replies=2)
    engine = Engine(ScriptedFleet(["a", "b", "c"], answer), fedavg(), config)

    with pytest.raises(QuorumError, match=r"0 of 3 nodes gave a valid reply, but the quorum is 2.*disk full"):
        engine.run(engine.initial_state(params))


def test_silent_nodes_time_out_and_round_completes_with_quorum(params: ParamSet) -> None:
    def answer(node: str, task: Task) -> Reply | None:
        if node == "silent":
            return None
        return Reply(node_id=node, kind=task.kind, round=task.round, params=task.params, num_examples=1)

    config = EngineConfig(rounds=1, seed=0, round_timeout=0.2)
    engine = Engine(ScriptedFleet(["a", "silent", "b"], answer), fedavg(), config)

    state = engine.run(engine.initial_state(params))

    assert state.history[0].replies == 2
    assert "no reply within 0.2 s" in state.history[0].failures["silent"]


def test_wait_for_nodes_fails_with_needed_and_available_counts(params: ParamSet) -> None:
    fleet = ScriptedFleet(["only"], lambda n, t: None)
    config = EngineConfig(rounds=1, seed=0, min_available_nodes=3, wait_for_nodes_timeout=0.1)
    engine = Engine(fleet, fedavg(), config)

    with pytest.raises(QuorumError, match="needed 3 nodes but only 1 were available"):
        engine.run(engine.initial_state(params))


def test_late_reply_from_earlier_round_is_ignored(params: ParamSet) -> None:
    def answer(node: str, task: Task) -> Reply:
        return Reply(
            node_id=node, kind=task.kind, round=task.round, params=task.params.map(lambda a: a + 1), num_examples=1
        )

    fleet = ScriptedFleet(["a"], answer)
    fleet.outbox.append(Reply(node_id="a", kind="fit", round=0, params=params.map(lambda a: a + 100), num_examples=1))
    engine = Engine(fleet, fedavg(), EngineConfig(rounds=1, seed=0))

    state = engine.run(engine.initial_state(params))

    np.testing.assert_allclose(state.params["w"], 1.0)


def test_reply_order_does_not_change_result(params: ParamSet) -> None:
    rng = np.random.default_rng(0)
    offsets = {f"n{i}": rng.normal(size=()).astype(np.float32) for i in range(7)}

    def answer(node: str, task: Task) -> Reply:
        return Reply(
            node_id=node,
            kind=task.kind,
            round=task.round,
            params=task.params.map(lambda a: a + offsets[node]),
            num_examples=int(node[1:]) + 1,
        )

    results = []
    for reverse in (False, True):
        engine = Engine(
            ScriptedFleet(list(offsets), answer, reverse=reverse), fedadam(), EngineConfig(rounds=3, seed=1)
        )
        results.append(engine.run(engine.initial_state(params)).params)

    assert results[0].bitwise_equal(results[1])


def test_resume_from_codec_round_tripped_checkpoint_is_bit_identical(params: ParamSet) -> None:
    checkpoints: list[RunState] = []
    full = Engine(
        shift_fleet([0.5, -1.0, 2.0], [3, 4, 5]),
        fedadam(fraction=0.67),
        EngineConfig(rounds=6, seed=7),
        checkpoint=checkpoints.append,
    )
    uninterrupted = full.run(full.initial_state(params))
    saved = checkpoints[2]
    restored = RunState(
        round=saved.round,
        params=decode(encode(saved.params)),
        strategy_state=decode(encode(saved.strategy_state)),
        history=saved.history,
    )

    resumed_engine = Engine(
        shift_fleet([0.5, -1.0, 2.0], [3, 4, 5]), fedadam(fraction=0.67), EngineConfig(rounds=6, seed=7)
    )
    resumed = resumed_engine.run(restored)

    assert resumed.params.bitwise_equal(uninterrupted.params)
    assert resumed.strategy_state.bitwise_equal(uninterrupted.strategy_state)


def test_input_state_is_not_mutated_by_a_round(params: ParamSet) -> None:
    engine = Engine(shift_fleet([1.0], [1]), fedavg(), EngineConfig(rounds=1, seed=0))
    start = engine.initial_state(params)

    engine.round(start)

    assert start.round == 0 and start.history == ()
    np.testing.assert_array_equal(start.params["w"], 0.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rounds", -1),
        ("round_timeout", 0),
        ("min_replies", 0),
        ("min_reply_fraction", 1.5),
        ("evaluate_fraction", -0.1),
    ],
)
def test_engine_config_rejects_bad_values_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"`{field}`"):
        EngineConfig(**{"rounds": 1, "seed": 0, field: value})


def test_out_of_order_replies_beyond_the_buffer_spill_to_disk_and_give_the_same_model(params: ParamSet) -> None:
    rng = np.random.default_rng(3)
    offsets = {f"n{i}": np.float32(rng.normal()) for i in range(6)}

    def answer(node: str, task: Task) -> Reply:
        return Reply(node_id=node, kind=task.kind, round=task.round,
                     params=task.params.map(lambda a: a + offsets[node]), num_examples=2)  # fmt: skip

    results = []
    for budget in (10**9, 0):  # everything in memory, then everything out of order on disk
        engine = Engine(ScriptedFleet(list(offsets), answer, reverse=True), fedavg(),
                        EngineConfig(rounds=2, seed=0, reorder_buffer_bytes=budget))  # fmt: skip
        results.append(engine.run(engine.initial_state(params)).params)

    assert results[0].bitwise_equal(results[1])


def test_fit_and_evaluate_tasks_tell_the_trainer_their_round(params: ParamSet) -> None:
    seen: list[tuple[str, int, object]] = []

    def answer(node: str, task: Task) -> Reply:
        seen.append((task.kind, task.round, task.config.get("round")))
        params_out = task.params if task.kind == "fit" else ParamSet()
        return Reply(node_id=node, kind=task.kind, round=task.round, params=params_out, num_examples=1)

    engine = Engine(ScriptedFleet(["a"], answer), fedavg(), EngineConfig(rounds=2, seed=0, evaluate_fraction=1.0))
    engine.run(engine.initial_state(params))

    assert seen == [("fit", 1, 1), ("evaluate", 1, 1), ("fit", 2, 2), ("evaluate", 2, 2)]


def test_waiting_for_nodes_is_logged_at_once_and_every_ten_seconds(
    params: ParamSet, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += max(seconds, 1.0)  # a fake clock: each poll moves it on by a second

    fleet = ScriptedFleet(["only"], lambda n, t: None)
    config = EngineConfig(rounds=1, seed=0, min_available_nodes=3, wait_for_nodes_timeout=25)
    engine = Engine(fleet, fedavg(), config, clock=lambda: now[0], sleep=sleep)
    caplog.set_level(logging.INFO, logger="fedlearn.engine.engine")

    with pytest.raises(QuorumError):
        engine.run(engine.initial_state(params))

    waits = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting for 3 nodes")]
    assert waits == [
        "waiting for 3 nodes, 1 available; giving up in 25 s (wait_for_nodes_timeout)",
        "waiting for 3 nodes, 1 available; giving up in 15 s (wait_for_nodes_timeout)",
        "waiting for 3 nodes, 1 available; giving up in 5 s (wait_for_nodes_timeout)",
    ]
