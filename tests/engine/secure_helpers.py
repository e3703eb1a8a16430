"""Small real nodes and fleets for secure-aggregation tests: fixed updates, stage-wise dropouts, hostile nodes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from fedlearn.client.node_app import NodeApp
from fedlearn.client.secure_aggregation import SecureAggregationNode
from fedlearn.client.trainer import EvalResult, FitResult
from fedlearn.core.messages import SEED_KEY, Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.engine.fleet import Fleet
from fedlearn.engine.secure_round import SecureOutcome, SecureRound
from fedlearn.privacy.keys import generate_identity, identity_key
from fedlearn.privacy.protocol import SecureAggregation
from fedlearn.simulation.inprocess import InProcessFleet


class FixedTrainer:
    """'Trains' by adding a fixed update, so the expected sum is known exactly."""

    def __init__(self, update: Mapping[str, np.ndarray], examples: int) -> None:
        self.update = update
        self.examples = examples

    def fit(self, params: ParamSet, config: object, state: object, extras: ParamSet | None = None) -> FitResult:
        return FitResult(params=params + ParamSet(self.update), num_examples=self.examples)

    def evaluate(self, params: ParamSet, config: object) -> EvalResult:
        return EvalResult(loss=0.0, num_examples=self.examples)


Tamper = Callable[[Task, Reply], Reply]


class Hostile:
    """A node that answers like ``inner`` but rewrites its reply to tasks of ``kind``."""

    def __init__(self, inner: NodeApp, kind: str, tamper: Tamper) -> None:
        self.inner, self.kind, self.tamper = inner, kind, tamper

    def handle(self, task: Task) -> Reply:
        reply = self.inner.handle(task)
        return self.tamper(task, reply) if task.kind == self.kind and reply.ok else reply


@dataclass
class StageDrops:
    """A fleet wrapper: a node listed under a task kind dies at that stage and stays dead for the round.

    A dead node is reported at once (as a fleet may report a node known to be gone), so tests need
    not wait for deadlines. ``tasks`` and ``replies`` record what crossed the wrapper.
    """

    inner: Fleet
    drops: Mapping[str, set[str]] = field(default_factory=dict)
    tamper_task: Callable[[str, Task], Task] | None = None
    tasks: dict[tuple[str, str], Task] = field(default_factory=dict)
    replies: dict[tuple[str, str], Reply] = field(default_factory=dict)
    dead: set[tuple[str, int]] = field(default_factory=set)
    record: bool = True
    _gone: list[Reply] = field(default_factory=list)

    def available(self) -> Sequence[str]:
        return self.inner.available()

    def send(self, node_id: str, task: Task) -> None:
        if node_id in self.drops.get(task.kind, set()):
            self.dead.add((node_id, task.round))
        if (node_id, task.round) in self.dead:
            self._gone.append(
                Reply(node_id=node_id, kind=task.kind, round=task.round, run_id=task.run_id, error="gone")
            )
            return
        if self.tamper_task is not None:
            task = self.tamper_task(node_id, task)
        self.tasks[(node_id, task.kind)] = task
        self.inner.send(node_id, task)

    def receive(self, timeout: float) -> list[Reply]:
        if self._gone:
            gone, self._gone = self._gone, []
            return gone
        replies = self.inner.receive(timeout)
        for reply in replies if self.record else ():
            self.replies[(reply.node_id, reply.kind)] = reply
        return replies

    def close(self) -> None:
        self.inner.close()


@dataclass
class Federation:
    ids: list[str]
    fleet: StageDrops
    registry: dict[str, bytes]
    updates: list[dict[str, np.ndarray]]
    weights: list[int]
    params: ParamSet

    def node(self, node_id: str) -> NodeApp:
        inner = self.fleet.inner
        assert isinstance(inner, InProcessFleet)
        app = inner._nodes.get(node_id)
        return app.inner if isinstance(app, Hostile) else app  # type: ignore[return-value]

    def run(self, settings: SecureAggregation, *, number: int = 1, timeout: float = 5.0) -> SecureOutcome:
        secure = SecureRound(
            self.fleet,
            settings,
            identity_keys=self.registry,
            graph_seed=12345,
            run_id="run",
            timeout=timeout,
            min_replies=1,
            clock=__import__("time").monotonic,
            buffer_bytes=1 << 20,
            block_elements=7,  # tiny blocks, so every block boundary is exercised
        )
        return secure.run(
            number,
            self.params,
            self.ids,
            fit_config=lambda node: {SEED_KEY: 11},
            fit_extras=ParamSet(),
            control_variates=False,
        )

    def expected_mean(self, survivors: Sequence[str], clip: float) -> tuple[dict[str, np.ndarray], int]:
        total = sum(self.weights[self.ids.index(u)] for u in survivors)
        mean = {
            name: sum(
                self.weights[self.ids.index(u)] * np.clip(self.updates[self.ids.index(u)][name], -clip, clip)
                for u in survivors
            )
            / total
            for name in self.params
        }
        return mean, total


def federation(
    n: int,
    *,
    seed: int = 0,
    size: int = 10,
    drops: Mapping[str, set[str]] | None = None,
    hostile: Mapping[str, tuple[str, Tamper]] | None = None,
    tamper_task: Callable[[str, Task], Task] | None = None,
    scale: float = 1.0,
    vouched: frozenset[str] = frozenset(),
) -> Federation:
    """``n`` nodes with random updates in ``[-scale, scale]`` and random weights, over an in-process fleet.

    Nodes pin the registry of identity keys, as simulated nodes do, except those in ``vouched``,
    which take the identity keys the coordinator relays, as a deployed node without a registry does.
    """
    rng = np.random.default_rng(seed)
    ids = [f"n{i:02d}" for i in range(n)]
    params = ParamSet({"w": rng.normal(size=(size,)), "b": rng.normal(size=(2, 2))})
    updates = [{k: rng.uniform(-scale, scale, size=v.shape) for k, v in params.items()} for _ in ids]
    weights = [int(w) for w in rng.integers(1, 50, size=n)]

    def plain(node_id: str) -> NodeApp:
        i = ids.index(node_id)
        return NodeApp(node_id=node_id, trainer=FixedTrainer(updates[i], weights[i]))

    identities = {node: generate_identity() for node in ids}
    registry = {node: identity_key(key) for node, key in identities.items()}

    def build(node_id: str) -> NodeApp:
        node = SecureAggregationNode(identities[node_id], None if node_id in vouched else registry)
        app = plain(node_id)
        return replace(app, handlers={**app.handlers, **node.handlers()}, require_secure_aggregation=True)

    hostile = dict(hostile or {})

    def factory(node_id: str) -> NodeApp | Hostile:
        app = build(node_id)
        if node_id in hostile:
            kind, tamper = hostile[node_id]
            return Hostile(app, kind, tamper)
        return app

    fleet = StageDrops(InProcessFleet(ids, factory), drops=dict(drops or {}), tamper_task=tamper_task)
    return Federation(ids, fleet, registry, updates, weights, params)


def with_extra(reply: Reply, name: str, array: np.ndarray) -> Reply:
    extras = reply.extras.to_dict(writable=True)
    extras[name] = array
    return replace(reply, extras=ParamSet(extras))
