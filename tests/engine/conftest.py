"""Small real nodes and fleets for engine tests: no mocks, just deterministic arithmetic."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from fedlearn.core.messages import FIT, Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.simulation.inprocess import InProcessFleet


class ShiftNode:
    """A node whose 'training' adds a fixed offset, so the aggregate is easy to predict."""

    def __init__(self, node_id: str, offset: float, examples: int) -> None:
        self.node_id = node_id
        self.offset = offset
        self.examples = examples

    def handle(self, task: Task) -> Reply:
        if task.kind == FIT:
            params = task.params.map(lambda a: a + np.asarray(self.offset, dtype=a.dtype))
            return Reply(
                node_id=self.node_id,
                kind=task.kind,
                round=task.round,
                params=params,
                num_examples=self.examples,
                metrics={"loss": float(self.offset)},
            )
        return Reply(
            node_id=self.node_id,
            kind=task.kind,
            round=task.round,
            num_examples=self.examples,
            metrics={"loss": float(self.offset)},
        )


def shift_fleet(offsets: Sequence[float], examples: Sequence[int]) -> InProcessFleet:
    ids = [f"n{i}" for i in range(len(offsets))]
    table = dict(zip(ids, zip(offsets, examples, strict=True), strict=True))
    return InProcessFleet(ids, lambda node_id: ShiftNode(node_id, *table[node_id]))


class ScriptedFleet:
    """A fleet that answers with a function of the task, in a chosen arrival order."""

    def __init__(self, ids: Sequence[str], answer: Callable[[str, Task], Reply | None], *, reverse: bool = False):
        self.ids = list(ids)
        self.answer = answer
        self.reverse = reverse
        self.outbox: list[Reply] = []
        self.closed = False

    def available(self) -> Sequence[str]:
        return self.ids

    def send(self, node_id: str, task: Task) -> None:
        reply = self.answer(node_id, task)
        if reply is not None:
            self.outbox.append(reply)

    def receive(self, timeout: float) -> list[Reply]:
        if not self.outbox:
            return []
        batch = list(reversed(self.outbox)) if self.reverse else list(self.outbox)
        self.outbox.clear()
        return batch

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def params() -> ParamSet:
    return ParamSet({"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)})
