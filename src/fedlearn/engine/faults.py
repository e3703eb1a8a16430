"""Inject dropouts, stragglers and partial work into any fleet, so the engine's deadline and
quorum paths, and algorithms built for uneven work, run in simulation as against real nodes.

Which node drops, straggles or works less in which round is drawn from the run seed, so a faulty
run is as reproducible as a clean one. A dropped node never answers (as a crashed phone would
not); a straggler answers ``delay`` seconds late, which the engine's deadline may or may not
cover. A node doing partial work answers on time but after a random share of its local steps,
drawn uniformly from (0, 1): the systems heterogeneity of FedProx (Li et al. 2020), where slow
devices send back whatever they managed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from fedlearn.core.checks import COUNT, NON_NEGATIVE, UNIT, check_fields
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import FIT, WORK_FRACTION_KEY, Reply, Task
from fedlearn.engine import seeding
from fedlearn.engine.fleet import Fleet
from fedlearn.engine.stage import Clock


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultPlan:
    """Per-task probabilities of dropping out or straggling, and the straggler delay."""

    seed: int
    dropout: float = 0.0
    straggler: float = 0.0
    delay: float = 1.0
    partial_work: float = 0.0

    def __post_init__(self) -> None:
        check_fields(
            self, {"seed": COUNT, "dropout": UNIT, "straggler": UNIT, "delay": NON_NEGATIVE, "partial_work": UNIT}
        )
        if self.dropout + self.straggler > 1:
            raise ConfigError(f"`dropout` + `straggler` must be <= 1; got {self.dropout + self.straggler}")

    @property
    def active(self) -> bool:
        return self.dropout > 0 or self.straggler > 0 or self.partial_work > 0

    def work_fraction(self, node_id: str, task: Task) -> float:
        """The share of its local steps this node does for a fit task: 1, or a draw from (0, 1).

        Drawn from a stream of its own, so turning partial work on changes no drop or straggle draw.
        """
        if task.kind != FIT or self.partial_work == 0:
            return 1.0
        draw = seeding.round_rng(seeding.node_seed(self.seed, task.round, node_id), task.round, seeding.WORK)
        partial, fraction = draw.random(2)
        return 1.0 - float(fraction) if partial < self.partial_work else 1.0  # 1 - [0, 1) lies in (0, 1]

    def fate(self, node_id: str, task: Task) -> str:
        """``"drop"``, ``"straggle"`` or ``"ok"`` for this node's task, fixed by the seed."""
        draw = seeding.round_rng(seeding.node_seed(self.seed, task.round, node_id), task.round, seeding.FAULTS)
        u = float(draw.random())
        if u < self.dropout:
            return "drop"
        if u < self.dropout + self.straggler:
            return "straggle"
        return "ok"


class FaultyFleet:
    """A fleet wrapper that applies a :class:`FaultPlan` to every task it forwards."""

    def __init__(self, inner: Fleet, plan: FaultPlan, *, clock: Clock = time.monotonic) -> None:
        self._inner = inner
        self._plan = plan
        self._clock = clock
        self._stragglers: set[tuple[str, str, int]] = set()
        self._held: list[tuple[float, Reply]] = []

    def available(self) -> Sequence[str]:
        return self._inner.available()

    def send(self, node_id: str, task: Task) -> None:
        fate = self._plan.fate(node_id, task)
        if fate == "drop":
            return
        if fate == "straggle":
            self._stragglers.add((node_id, task.kind, task.round))
        fraction = self._plan.work_fraction(node_id, task)
        if fraction < 1:
            task = replace(task, config={**task.config, WORK_FRACTION_KEY: fraction})
        self._inner.send(node_id, task)

    def receive(self, timeout: float) -> list[Reply]:
        deadline = self._clock() + timeout
        while True:
            ready = self._release()
            if ready:
                return ready
            remaining = deadline - self._clock()
            if remaining <= 0:
                return []
            next_release = min((t for t, _ in self._held), default=deadline)
            for reply in self._inner.receive(timeout=max(0.0, min(remaining, next_release - self._clock()))):
                key = (reply.node_id, reply.kind, reply.round)
                if key in self._stragglers:
                    self._stragglers.discard(key)
                    self._held.append((self._clock() + self._plan.delay, reply))
                else:
                    self._held.append((self._clock(), reply))

    def _release(self) -> list[Reply]:
        now = self._clock()
        ready = [reply for t, reply in self._held if t <= now]
        self._held = [(t, reply) for t, reply in self._held if t > now]
        return ready

    def close(self) -> None:
        self._inner.close()
