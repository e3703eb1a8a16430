"""Send one stage's tasks and gather the replies: the only waiting loop in fedlearn.

Replies are yielded in the order the tasks were given, not the order they arrive, so the same
seed aggregates the same floats in the same order whatever the transport or worker count.
Replies that arrive early wait in a small reorder buffer; a node that misses the deadline is
skipped and everything buffered behind it is released. Every reply is validated before it is
yielded, and each rejection is recorded with its reason instead of stopping the stage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from fedlearn.core.errors import FedlearnError, QuorumError
from fedlearn.core.messages import Reply, Task
from fedlearn.engine.fleet import Fleet

Clock = Callable[[], float]
Validator = Callable[[Reply], None]


@dataclass(slots=True)
class StageReport:
    """What happened while gathering one stage, filled in as replies arrive."""

    sent: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    bytes_sent: int = 0
    bytes_received: int = 0
    timed_out: bool = False


class Gather:
    """Iterate over a stage's valid replies in task order; see the module docstring.

    Iterating sends the tasks first, then waits at most ``timeout`` seconds in total. When the
    iteration ends with fewer than ``quorum`` accepted replies it raises :class:`QuorumError`
    that says how many were needed, how many came and why the others did not.
    """

    def __init__(
        self,
        fleet: Fleet,
        tasks: Mapping[str, Task],
        *,
        quorum: int,
        timeout: float,
        validate: Validator | None = None,
        clock: Clock = time.monotonic,
        label: str = "stage",
    ) -> None:
        self._fleet = fleet
        self._tasks = dict(tasks)
        self._quorum = quorum
        self._timeout = timeout
        self._validate = validate
        self._clock = clock
        self._label = label
        self.report = StageReport()

    def __iter__(self) -> Iterator[Reply]:
        order = list(self._tasks)
        for node_id in order:
            task = self._tasks[node_id]
            self._fleet.send(node_id, task)
            self.report.sent.append(node_id)
            self.report.bytes_sent += task.params.nbytes + task.extras.nbytes
        deadline = self._clock() + self._timeout
        buffered: dict[str, Reply] = {}
        settled: set[str] = set()
        position = 0
        while position < len(order):
            node_id = order[position]
            if node_id in buffered:
                position += 1
                reply = buffered.pop(node_id)
                self.report.accepted.append(node_id)
                yield reply
                continue
            if node_id in settled:
                position += 1
                continue
            remaining = deadline - self._clock()
            if remaining <= 0:
                self._expire(order[position:], settled, buffered)
                continue
            for reply in self._fleet.receive(timeout=remaining):
                self._admit(reply, buffered, settled)
        if len(self.report.accepted) < self._quorum:
            raise QuorumError(self._quorum_message())

    def _admit(self, reply: Reply, buffered: dict[str, Reply], settled: set[str]) -> None:
        task = self._tasks.get(reply.node_id)
        if task is None or reply.node_id in settled or reply.node_id in buffered:
            return  # a late or duplicate reply from an earlier stage: ignore it
        if reply.round != task.round or reply.kind != task.kind:
            return
        self.report.bytes_received += reply.nbytes
        settled.add(reply.node_id)
        if reply.error is not None:
            self.report.failures[reply.node_id] = reply.error
            return
        if self._validate is not None:
            try:
                self._validate(reply)
            except FedlearnError as exc:
                self.report.failures[reply.node_id] = f"rejected: {exc}"
                return
        buffered[reply.node_id] = reply

    def _expire(self, pending: list[str], settled: set[str], buffered: dict[str, Reply]) -> None:
        self.report.timed_out = True
        for node_id in pending:
            if node_id not in settled and node_id not in buffered:
                settled.add(node_id)
                self.report.failures[node_id] = f"no reply within {self._timeout:g} s"

    def _quorum_message(self) -> str:
        got = len(self.report.accepted)
        reasons = "; ".join(f"{n}: {r}" for n, r in list(self.report.failures.items())[:5])
        more = len(self.report.failures) - 5
        if more > 0:
            reasons += f"; and {more} more"
        return (
            f"{self._label}: {got} of {len(self._tasks)} nodes gave a valid reply, "
            f"but the quorum is {self._quorum}" + (f" ({reasons})" if reasons else "")
        )


def quorum_for(num_sampled: int, *, min_replies: int, min_fraction: float) -> int:
    """The number of valid replies a stage needs: the stricter of a count and a fraction."""
    return min(num_sampled, max(min_replies, math.ceil(min_fraction * num_sampled)))


def run_stage(
    fleet: Fleet,
    tasks: Mapping[str, Task],
    *,
    quorum: int,
    timeout: float,
    validate: Validator | None = None,
    clock: Clock = time.monotonic,
) -> Iterator[Reply]:
    """Functional shorthand for ``iter(Gather(...))`` when the report is not needed."""
    return iter(Gather(fleet, tasks, quorum=quorum, timeout=timeout, validate=validate, clock=clock))
