"""Byzantine nodes in a simulation: which nodes attack, with what, knowing what.

A run config's ``[attack]`` section names an attack from :data:`fedlearn.client.attacks.ATTACKS`
with its options, the attackers (a ``fraction`` of the nodes drawn with the run seed, or their
ids as ``nodes``) and their ``knowledge`` (see :mod:`fedlearn.client.byzantine`)::

    [attack]
    name = "alie"
    fraction = 0.2             # or nodes = ["node-003", "node-017"]
    knowledge = "colluders"    # "own" (shards of its own rows), "colluders" or "omniscient"

Every other key is an option of the attack. The simulation fills in ``nodes`` (how many nodes the
run has) and ``byzantine`` (how many attack) for the attacks that take them, such as ALIE's ``z``
and the backdoor's boost, unless the section sets them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fedlearn.client.attacks import Attack, backdoor_test, build_attack
from fedlearn.client.byzantine import KNOWLEDGE, BenignSource, Collusion, Knowledge, OwnShards, byzantine_trainer
from fedlearn.client.node_app import NodeApp
from fedlearn.client.trainer import Learner
from fedlearn.core.checks import Interval, Options, check, check_int, check_real
from fedlearn.core.errors import ConfigError
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset
from fedlearn.engine import seeding
from fedlearn.simulation.nodes import NodeFactory

_CHOOSE_STREAM = 0x62797A  # "byz": the draw of the attacking nodes, apart from every other stream


@dataclass(frozen=True, slots=True, kw_only=True)
class AttackPlan:
    """The attack, the ids of the nodes that mount it, and what they know.

    ``shards`` is how many parts of its own rows a node splits to estimate benign updates when its
    knowledge is ``"own"``.
    """

    attack: Attack
    attackers: tuple[str, ...]
    knowledge: Knowledge = "colluders"
    shards: int = 4

    def __post_init__(self) -> None:
        check("knowledge", self.knowledge, Options(KNOWLEDGE))
        check_int("shards", self.shards, low=2)
        object.__setattr__(self, "attackers", tuple(sorted(set(self.attackers))))
        if self.attack.uses_benign and self.knowledge == "colluders" and len(self.attackers) == 1:
            raise ConfigError(
                f"attack {self.attack.name!r} with knowledge 'colluders' needs at least 2 attackers to estimate "
                "benign statistics from; got 1: use knowledge = 'own' for a lone attacker"
            )

    def describe(self) -> str:
        """``alie (z=0.47), 5 colluding attackers``: for logs and tables."""
        who = {"own": "lone ", "colluders": "colluding ", "omniscient": "omniscient "}[self.knowledge]
        return f"{self.attack.describe()}, {len(self.attackers)} {who if self.attack.uses_benign else ''}attacker(s)"


def choose_attackers(ids: Sequence[str], *, fraction: float, seed: int) -> tuple[str, ...]:
    """``round(fraction * len(ids))`` of the node ids, drawn with ``seed``.

    Halves round up, and any fraction above 0 makes at least one attacker.
    """
    fraction = check_real("fraction", fraction, Interval(0, 1))
    count = 0 if fraction == 0 else max(1, math.floor(fraction * len(ids) + 0.5))
    rng = np.random.default_rng(np.random.SeedSequence([check_int("seed", seed), _CHOOSE_STREAM]))
    return tuple(sorted(str(i) for i in rng.choice(list(ids), size=count, replace=False)))


def attack_plan(
    ids: Sequence[str],
    *,
    name: str,
    seed: int,
    fraction: float | None = None,
    nodes: Sequence[str] | None = None,
    knowledge: str = "colluders",
    shards: int = 4,
    options: Mapping[str, Any] | None = None,
) -> AttackPlan:
    """The plan of an ``[attack]`` section for a run over the nodes ``ids``."""
    if (fraction is None) == (nodes is None):
        raise ConfigError("[attack] needs exactly one of `fraction` (drawn with the run seed) or `nodes` (their ids)")
    if nodes is not None:
        unknown = sorted(set(nodes) - set(ids))
        if unknown:
            raise ConfigError(f"[attack] `nodes` names nodes the run does not have: {unknown}; nodes are {ids[0]}...")
        attackers = tuple(nodes)
    else:
        assert fraction is not None
        attackers = choose_attackers(ids, fraction=fraction, seed=seed)
    context = {"nodes": len(ids), "byzantine": len(set(attackers))}
    try:
        attack = build_attack(name, context=context, **dict(options or {}))
        return AttackPlan(attack=attack, attackers=attackers, knowledge=knowledge, shards=shards)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise ConfigError(f"[attack]: {exc}") from None


def byzantine_nodes(
    learner: Learner,
    partitions: Sequence[Dataset],
    ids: Sequence[str],
    factory: NodeFactory,
    plan: AttackPlan,
    *,
    run_seed: int,
) -> NodeFactory:
    """``factory`` with the attackers' trainers replaced by :class:`~fedlearn.client.byzantine.ByzantineTrainer`.

    Colluding attackers (and omniscient ones) share one :class:`~fedlearn.client.byzantine.Collusion`
    in each process that runs them; it is built on first use there.
    """
    index = {node: i for i, node in enumerate(ids)}
    missing = sorted(set(plan.attackers) - set(index))
    if missing:
        raise ConfigError(f"attackers {missing} are not nodes of this run")
    shared: list[Collusion] = []

    def collusion() -> Collusion:
        if not shared:
            members = plan.attackers if plan.knowledge == "colluders" else [n for n in ids if n not in plan.attackers]
            shared.append(Collusion({m: learner.trainer(partitions[index[m]]) for m in members}, run_seed=run_seed))
        return shared[0]

    def build(node_id: str) -> Any:
        app = factory(node_id)
        if node_id not in plan.attackers:
            return app
        if not isinstance(app, NodeApp):
            raise ConfigError(f"an attack needs NodeApp nodes; the factory built {type(app).__name__}")
        data = partitions[index[node_id]]
        benign: BenignSource | None = None
        if plan.attack.uses_benign:
            benign = (
                OwnShards.split(learner, data, shards=plan.shards, seed=seeding.node_seed(run_seed, 0, node_id))
                if plan.knowledge == "own"
                else collusion()
            )
        seed = seeding.node_seed(run_seed, 0, node_id)
        return replace(app, trainer=byzantine_trainer(node_id, learner, data, plan.attack, seed=seed, benign=benign))

    return build


def backdoor_success(learner: Learner, params: ParamSet, test_data: Dataset, attack: Attack) -> float | None:
    """The share of triggered test rows (of other classes) that ``params`` puts in the backdoor's target class.

    None for an attack without a trigger.
    """
    if attack.trigger is None or attack.target is None:
        return None
    rows = backdoor_test(test_data, attack.trigger, target=attack.target)
    metrics = learner.trainer(rows).evaluate(params, {}).metrics
    if "accuracy" not in metrics:
        raise ConfigError("backdoor success needs a learner whose evaluation reports accuracy")
    return float(metrics["accuracy"])
