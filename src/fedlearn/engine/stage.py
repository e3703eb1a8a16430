"""Send one stage's tasks and gather the replies: the only waiting loop in fedlearn.

Replies are yielded in the order the tasks were given, not the order they arrive, so the same
seed aggregates the same floats in the same order whatever the transport or worker count.
Replies that arrive early wait in a reorder buffer; a node that misses the deadline is skipped
and everything buffered behind it is released. The buffer holds at most ``buffer_bytes`` of
parameters in memory and spills the rest to a temporary file, read back at its turn, so a round
over many nodes with a large model needs memory for a few models, not one per node. Every reply
is validated before it is buffered, and each rejection is recorded with its reason instead of
stopping the stage.
"""

from __future__ import annotations

import itertools
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from fedlearn.core.codec import decode, encode
from fedlearn.core.errors import FedlearnError, QuorumError
from fedlearn.core.limits import DEFAULT_REORDER_BUFFER_BYTES
from fedlearn.core.messages import Reply, Task, pack, unpack
from fedlearn.core.params import ParamSet
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
    spilled: int = 0


class _ReorderBuffer:
    """Early replies by node, in memory up to a byte budget and in a temporary file beyond it."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._held: dict[str, Reply] = {}
        self._spilled: dict[str, tuple[Reply, Path]] = {}  # the reply without arrays, and where they are
        self._in_memory = 0
        self._spill_dir: tempfile.TemporaryDirectory[str] | None = None
        self._spill_names = itertools.count()  # never reused: a name counted from what is held could be

    def __contains__(self, node_id: str) -> bool:
        return node_id in self._held or node_id in self._spilled

    def put(self, reply: Reply) -> bool:
        """Hold ``reply``; True when it had to go to disk. One reply always fits, however large."""
        if not self._held or self._in_memory + reply.nbytes <= self._budget:
            self._held[reply.node_id] = reply
            self._in_memory += reply.nbytes
            return False
        if self._spill_dir is None:
            self._spill_dir = tempfile.TemporaryDirectory(prefix="fedlearn-replies-")
        path = Path(self._spill_dir.name) / f"{next(self._spill_names)}.safetensors"
        path.write_bytes(encode(pack(reply.params, reply.extras)))
        self._spilled[reply.node_id] = (replace(reply, params=ParamSet(), extras=ParamSet()), path)
        return True

    def pop(self, node_id: str) -> Reply:
        if node_id in self._held:
            reply = self._held.pop(node_id)
            self._in_memory -= reply.nbytes
            return reply
        reply, path = self._spilled.pop(node_id)
        data = path.read_bytes()
        params, extras = unpack(decode(data, max_bytes=len(data)))  # our own file: no wire size limit applies
        path.unlink()
        return replace(reply, params=params, extras=extras)

    def close(self) -> None:
        if self._spill_dir is not None:
            self._spill_dir.cleanup()


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
        buffer_bytes: int = DEFAULT_REORDER_BUFFER_BYTES,
    ) -> None:
        self._fleet = fleet
        self._buffer_bytes = buffer_bytes
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
        buffered = _ReorderBuffer(self._buffer_bytes)
        settled: set[str] = set()
        position = 0
        try:
            while position < len(order):
                node_id = order[position]
                if node_id in buffered:
                    position += 1
                    self.report.accepted.append(node_id)
                    yield buffered.pop(node_id)
                    continue
                if node_id in settled:
                    position += 1
                    continue
                remaining = deadline - self._clock()
                if remaining <= 0:
                    self._expire(order[position:], settled, buffered)
                    continue
                self._receive(remaining, buffered, settled)
        finally:
            buffered.close()
        if len(self.report.accepted) < self._quorum:
            raise QuorumError(self._quorum_message())

    def _receive(self, timeout: float, buffered: _ReorderBuffer, settled: set[str]) -> None:
        """Admit what the fleet delivers within ``timeout``.

        A method of its own so that no frame of the suspended iterator keeps a reply alive: a
        reply the engine has folded must be freed before the next node's work allocates (and,
        in the process pool, before the worker can reuse the reply's shared-memory slot).
        """
        for reply in self._fleet.receive(timeout=timeout):
            self._admit(reply, buffered, settled)

    def _admit(self, reply: Reply, buffered: _ReorderBuffer, settled: set[str]) -> None:
        task = self._tasks.get(reply.node_id)
        if task is None or reply.node_id in settled or reply.node_id in buffered:
            return  # a late or duplicate reply from an earlier stage: ignore it
        if (reply.round, reply.kind, reply.run_id) != (task.round, task.kind, task.run_id):
            return  # an answer to another stage, round or run that happens to share the node
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
        self.report.spilled += buffered.put(reply)

    def _expire(self, pending: list[str], settled: set[str], buffered: _ReorderBuffer) -> None:
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
