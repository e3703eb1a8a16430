from __future__ import annotations

import numpy as np

from fedlearn.core.messages import Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.engine.stage import Gather, _ReorderBuffer
from tests.engine.conftest import ScriptedFleet

MODEL = ParamSet({"w": np.zeros(1000, np.float32)})


def _answer(node: str, task: Task) -> Reply:
    return Reply(node_id=node, kind=task.kind, round=task.round, params=task.params.map(lambda a: a + int(node[1:])),
                 num_examples=1)  # fmt: skip


def _gather(budget: int) -> tuple[list[Reply], Gather]:
    ids = [f"n{i}" for i in range(5)]
    tasks = {n: Task(kind="fit", round=1, params=MODEL) for n in ids}
    gather = Gather(ScriptedFleet(ids, _answer, reverse=True), tasks, quorum=1, timeout=5, buffer_bytes=budget)
    return list(gather), gather


def test_replies_come_out_in_task_order_whatever_the_arrival_order() -> None:
    replies, _ = _gather(10**9)

    assert [r.node_id for r in replies] == ["n0", "n1", "n2", "n3", "n4"]


def test_replies_beyond_the_memory_budget_are_spilled_and_restored_exactly() -> None:
    kept, _ = _gather(10**9)
    restored, gather = _gather(2 * MODEL.nbytes)

    assert gather.report.spilled == 3  # the first early reply stays in memory, whatever the budget
    assert all(a.params.bitwise_equal(b.params) for a, b in zip(kept, restored, strict=True))


def _reply(node: str, value: float) -> Reply:
    return Reply(node_id=node, kind="fit", round=1, params=MODEL.map(lambda a: a + value), num_examples=1)


def test_a_spill_after_a_pop_never_overwrites_a_reply_still_waiting() -> None:
    buffer = _ReorderBuffer(budget=0)  # everything but the first reply goes to disk
    try:
        for node, value in (("a", 1.0), ("b", 2.0), ("c", 3.0)):
            buffer.put(_reply(node, value))
        buffer.pop("b")
        buffer.put(_reply("d", 4.0))

        assert buffer.pop("c").params["w"][0] == 3.0
        assert buffer.pop("d").params["w"][0] == 4.0
        assert buffer.pop("a").params["w"][0] == 1.0
    finally:
        buffer.close()
