"""Byzantine nodes: a trainer that attacks, and what the attacker knows of benign updates.

:class:`ByzantineTrainer` wraps the trainer of an honest node. It trains as that node would (on
poisoned rows, for a data-poisoning attack), then sends what its :class:`~fedlearn.client.attacks.Attack`
crafts from the honest update. It is a ``Trainer`` like any other, so the same wrapper runs in a
simulated node and in a real node process (``[attack]`` in NODE.toml, for red-team exercises).

The rules that estimate benign statistics (ALIE, IPM, min-max, min-sum) need a sample of benign
updates. Where it comes from is the attacker's *knowledge*:

- ``"own"``: what a lone node knows, its own rows. It splits them into ``shards`` parts and trains
  honestly on each (:class:`OwnShards`). This is the only knowledge a deployed node has.
- ``"colluders"``: collusion among Byzantine nodes. Each attacker trains honestly on its own rows
  and the colluders share these benign updates (:class:`Collusion`). In a simulation the
  colluders share one object in each process; an attacker whose colluder has not trained yet
  this round trains for it, on that colluder's rows with that colluder's seed, which gives
  exactly the update the colluder would have shared. Under the pool executor every worker process
  does so for itself, so the result does not depend on the executor; only the work is repeated.
- ``"omniscient"``: the attacker sees every honest node's update of the round (the omniscient
  variants of the papers): a :class:`Collusion` whose members are the honest nodes. Simulation only.

Every attacker in a collusion sends the same crafted update, as in the papers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import numpy as np

from fedlearn.client.attacks import Attack, Matrix, Vector, apply_update, flat_update
from fedlearn.client.trainer import EvalResult, FitResult, Learner, NodeState, Trainer
from fedlearn.core.checks import check_int
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import ROUND_KEY, SEED_KEY, WORK_FRACTION_KEY, Config
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset
from fedlearn.engine.seeding import node_seed

Knowledge = Literal["own", "colluders", "omniscient"]
KNOWLEDGE: tuple[str, ...] = ("own", "colluders", "omniscient")
"""What a Byzantine node may know of benign updates; see the module docstring."""

_ATTACK_STREAM = 0x617474616B  # "attak": the seed stream of an attacker's own draws, apart from training's
_SHARD_STREAM = 0x7368617264  # "shard"


class BenignSource(Protocol):
    """Benign updates (one per row) that the attacker ``node_id`` knows of, for the round of ``params``.

    ``own`` is the attacker's honest update, which it shares with its colluders.
    """

    def benign_updates(
        self, node_id: str, params: ParamSet, config: Config, extras: ParamSet | None, own: Vector
    ) -> Matrix: ...


def fit_with(
    trainer: Trainer, params: ParamSet, config: Config, state: NodeState, extras: ParamSet | None
) -> FitResult:
    """``trainer.fit``, passing ``extras`` only when there are some, as ``NodeApp`` does."""
    if extras:
        return trainer.fit(params, config, state, extras=extras)
    return trainer.fit(params, config, state)


@dataclass(frozen=True, slots=True)
class OwnShards:
    """A lone attacker's estimate: honest updates on each of ``shards`` parts of its own rows."""

    trainers: tuple[Trainer, ...]

    @classmethod
    def split(cls, learner: Learner, data: Dataset, *, shards: int, seed: int) -> OwnShards:
        """Deal ``data``'s rows, shuffled with ``seed``, into ``shards`` parts and bind a trainer to each."""
        shards = check_int("shards", shards, low=2)
        if len(data) < shards:
            raise ConfigError(f"`shards` must be at most the node's {len(data)} rows; got {shards}")
        rng = np.random.default_rng(np.random.SeedSequence([check_int("seed", seed), _SHARD_STREAM]))
        parts = np.array_split(rng.permutation(len(data)), shards)
        return cls(tuple(learner.trainer(data.subset(np.sort(part))) for part in parts))

    def benign_updates(
        self, node_id: str, params: ParamSet, config: Config, extras: ParamSet | None, own: Vector
    ) -> Matrix:
        seed = config.get(SEED_KEY)
        updates = []
        for i, trainer in enumerate(self.trainers):
            shard_config = dict(config)
            if isinstance(seed, int):
                shard_config[SEED_KEY] = int(np.random.SeedSequence([seed, i]).generate_state(1)[0] & 0x7FFFFFFF)
            updates.append(flat_update(fit_with(trainer, params, shard_config, {}, extras).params, params))
        return np.stack(updates)


class Collusion:
    """Benign updates shared by colluding nodes; with the honest nodes as members, the omniscient view.

    ``trainers`` are the members' honest trainers, on their own rows. A member's update for a
    round is the one it shares, or else one trained here with its own seed (``node_seed`` of
    ``run_seed``, as the engine gives it), which is the same. Only the latest round is kept.
    """

    def __init__(self, trainers: Mapping[str, Trainer], *, run_seed: int) -> None:
        if not trainers:
            raise ConfigError("a collusion needs at least one member")
        self._trainers = dict(sorted(trainers.items()))
        self._run_seed = check_int("run_seed", run_seed)
        self._round: tuple[object, str] | None = None
        self._updates: dict[str, Vector] = {}

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self._trainers)

    def benign_updates(
        self, node_id: str, params: ParamSet, config: Config, extras: ParamSet | None, own: Vector
    ) -> Matrix:
        key = (config.get(ROUND_KEY), params.digest())
        if key != self._round:
            self._round, self._updates = key, {}
        if node_id in self._trainers:
            self._updates.setdefault(node_id, own)
        round_number = config.get(ROUND_KEY)
        for member, trainer in self._trainers.items():
            if member not in self._updates:
                member_config = {k: v for k, v in config.items() if k != WORK_FRACTION_KEY}
                if isinstance(round_number, int):
                    member_config[SEED_KEY] = node_seed(self._run_seed, round_number, member)
                trained = fit_with(trainer, params, member_config, {}, extras)
                self._updates[member] = flat_update(trained.params, params)
        return np.stack([self._updates[member] for member in self._trainers])


@dataclass(frozen=True, slots=True, kw_only=True)
class ByzantineTrainer:
    """A node's trainer that attacks: it trains honestly (on poisoned rows, if so), then sends the crafted update.

    Evaluation is the wrapped trainer's. ``benign`` is needed by attacks that estimate benign
    statistics (``attack.uses_benign``). ``examples``, when set, is the example count the node
    reports: a poisoner trains on more rows than it has, and claims the count it declared.
    """

    node_id: str
    trainer: Trainer
    attack: Attack
    benign: BenignSource | None = None
    examples: int | None = None

    def __post_init__(self) -> None:
        if self.attack.uses_benign and self.benign is None:
            raise ConfigError(f"attack {self.attack.name!r} estimates benign updates; give its node a source of them")

    def fit(self, params: ParamSet, config: Config, state: NodeState, extras: ParamSet | None = None) -> FitResult:
        honest = fit_with(self.trainer, params, config, state, extras)
        if self.examples is not None:
            honest = replace(honest, num_examples=self.examples)
        if self.attack.craft is None:
            return honest
        own = flat_update(honest.params, params)
        benign = None
        if self.attack.uses_benign:
            assert self.benign is not None
            benign = self.benign.benign_updates(self.node_id, params, config, extras, own)
        seed = config.get(SEED_KEY)
        entropy = [seed, _ATTACK_STREAM] if isinstance(seed, int) else None  # no seed: fresh OS entropy
        crafted = self.attack.craft(own, benign, np.random.default_rng(np.random.SeedSequence(entropy)))
        return replace(honest, params=apply_update(params, crafted))

    def evaluate(self, params: ParamSet, config: Config) -> EvalResult:
        return self.trainer.evaluate(params, config)


def byzantine_trainer(
    node_id: str, learner: Learner, data: Dataset, attack: Attack, *, seed: int, benign: BenignSource | None = None
) -> ByzantineTrainer:
    """The attacking trainer of node ``node_id`` on ``data``.

    A data-poisoning attack poisons ``data`` first, with a draw from ``seed``.
    """
    if attack.poison is None:
        return ByzantineTrainer(node_id=node_id, trainer=learner.trainer(data), attack=attack, benign=benign)
    rng = np.random.default_rng(np.random.SeedSequence([check_int("seed", seed), _ATTACK_STREAM]))
    rows = attack.poison(data, rng)
    return ByzantineTrainer(
        node_id=node_id, trainer=learner.trainer(rows), attack=attack, benign=benign, examples=len(data)
    )
