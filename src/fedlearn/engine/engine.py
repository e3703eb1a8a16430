"""The round engine: sample, send, gather under a deadline, validate, aggregate, evaluate, checkpoint.

It knows nodes only through a :class:`~fedlearn.engine.fleet.Fleet`, so simulation and deployment
run this same code. All run state lives in an immutable :class:`RunState` that is handed to a
checkpoint callback after every round; resuming is calling :meth:`Engine.run` with the last one.
Randomness is derived from the seed and round number (see ``seeding``), so a resumed run draws
exactly what an uninterrupted one would have.

Under differential privacy (a strategy with a ``differential_privacy`` piece) the engine also keeps
the run's privacy ledger in :class:`RunState`: it refuses to start rounds whose planned ε exceeds
the budget, stops before any round that would exceed it, charges each round for what actually
ran and records ε in the round's history (see ``privacy_budget``). The noise is drawn from the
OS's secure source unless the engine is told it is a simulation (``dp_noise="seeded"``).
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from types import MappingProxyType

from fedlearn.core.checks import COUNT, NON_NEGATIVE, POSITIVE, UNIT, Constraint, Interval, check, check_fields
from fedlearn.core.errors import ConfigError, QuorumError, ValidationError
from fedlearn.core.limits import DEFAULT_REORDER_BUFFER_BYTES
from fedlearn.core.messages import EVALUATE, FIT, ROUND_KEY, SEED_KEY, Reply, Scalar, Task, freeze_config
from fedlearn.core.params import ParamSet
from fedlearn.core.validation import Limits, validate_metrics, validate_num_examples, validate_params
from fedlearn.engine import seeding
from fedlearn.engine.fleet import Fleet
from fedlearn.engine.history import RoundRecord
from fedlearn.engine.privacy_budget import NoiseKind, PrivacyBudget
from fedlearn.engine.secure_round import SecureOutcome, SecureRound
from fedlearn.engine.stage import Clock, Gather, quorum_for
from fedlearn.privacy.ledger import Charge, PrivacyLedger
from fedlearn.strategies.privacy import PrivateRound
from fedlearn.strategies.strategy import Strategy

logger = logging.getLogger(__name__)
_WAIT_LOG_INTERVAL = 10.0

CentralEvaluate = Callable[[ParamSet], Mapping[str, float]]
Checkpoint = Callable[["RunState"], None]
RoundCallback = Callable[[RoundRecord], None]
Reserve = Callable[[int, PrivacyLedger], None]
"""Stores the ledger with round ``k`` charged before round ``k`` releases anything (see ``Engine``)."""
IdentityRegistry = Callable[[], Mapping[str, bytes]]
"""Reads the nodes' registered identity keys, by name, when a secure round starts."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """How rounds run; everything here comes from the run config and is validated up front."""

    rounds: int
    seed: int
    round_timeout: float = 600.0
    min_replies: int = 1
    min_reply_fraction: float = 0.5
    min_available_nodes: int = 1
    wait_for_nodes_timeout: float = 60.0
    evaluate_every: int = 1
    evaluate_fraction: float = 0.0
    client_config: Mapping[str, Scalar] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    run_id: str = ""
    reorder_buffer_bytes: int = DEFAULT_REORDER_BUFFER_BYTES
    max_examples_per_reply: int | None = None
    declared_examples: Mapping[str, int] = field(default_factory=dict)
    require_secure_aggregation: bool = False
    """The run config asks for secure aggregation: the engine refuses a strategy that would aggregate in the clear."""
    require_differential_privacy: bool = False
    """The run config asks for differential privacy: the engine refuses a strategy without its piece."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "client_config", freeze_config(self.client_config))
        object.__setattr__(self, "declared_examples", MappingProxyType(dict(self.declared_examples)))
        check_fields(self, _ENGINE_CONSTRAINTS)
        if self.max_examples_per_reply is not None:
            check("max_examples_per_reply", self.max_examples_per_reply, _AT_LEAST_ONE)
        for node, rows in self.declared_examples.items():
            check(f"declared_examples[{node!r}]", rows, COUNT)


_AT_LEAST_ONE = Interval(1, math.inf, integer=True)
_ENGINE_CONSTRAINTS: Mapping[str, Constraint] = {
    "rounds": COUNT,
    "seed": COUNT,
    "round_timeout": POSITIVE,
    "min_replies": _AT_LEAST_ONE,
    "min_reply_fraction": UNIT,
    "min_available_nodes": _AT_LEAST_ONE,
    "wait_for_nodes_timeout": NON_NEGATIVE,
    "evaluate_every": _AT_LEAST_ONE,
    "evaluate_fraction": UNIT,
    "reorder_buffer_bytes": COUNT,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunState:
    """Everything needed to resume a run: rounds completed, model, strategy state, history."""

    round: int
    params: ParamSet
    strategy_state: ParamSet
    history: tuple[RoundRecord, ...] = ()
    ledger: PrivacyLedger | None = None
    """The privacy spent so far under differential privacy; None for a run without it."""


class Engine:
    """Drives rounds over a fleet. One instance per run; it holds no state between calls."""

    def __init__(
        self,
        fleet: Fleet,
        strategy: Strategy,
        config: EngineConfig,
        *,
        central_evaluate: CentralEvaluate | None = None,
        checkpoint: Checkpoint | None = None,
        on_round: RoundCallback | None = None,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        identity_keys: Mapping[str, bytes] | IdentityRegistry | None = None,
        dp_noise: NoiseKind = "system",
        reserve: Reserve | None = None,
    ) -> None:
        """``identity_keys`` are the nodes' registered Ed25519 public keys, needed under secure aggregation.

        A deployment passes a registry to read before each round, since nodes bind their keys
        when they first connect, which may be after the run started.

        ``dp_noise`` is where differential privacy's noise comes from: ``"system"`` (the default) the
        OS's secure source, unpredictable and so unsubtractable; ``"seeded"`` the run seed, so that a
        simulation is reproducible. Only a simulation may ask for seeded noise.

        ``reserve`` is called, under differential privacy, with the round number and the ledger with
        that round's worst-case charge added, before any of the round's tasks leave. A round releases
        before its checkpoint (noised updates under local DP, the new model sent for evaluation),
        so a deployment stores the reservation and, after a crash, resumes from it: the round it
        redoes is then charged on top of the one it lost.
        """
        self.fleet = fleet
        self.strategy = strategy
        self.config = config
        self._central_evaluate = central_evaluate
        self._checkpoint = checkpoint
        self._reserve = reserve
        self._on_round = on_round
        self._clock = clock
        self._sleep = sleep
        self._identity_keys: IdentityRegistry = (
            identity_keys if callable(identity_keys) else partial(dict, identity_keys or {})
        )
        self._graph_seed = secrets.randbits(63)  # secret, per run: nodes learn it only after committing to keys
        if config.require_secure_aggregation and strategy.secure_aggregation is None:
            raise ConfigError(
                "the run config enables [privacy.secure_aggregation], but the strategy has no secure-aggregation "
                "piece, so updates would be aggregated in the clear; refusing to run (a deployment path that does "
                "not support secure aggregation yet must not drop it)"
            )
        if strategy.secure_aggregation is not None and not callable(identity_keys) and not identity_keys:
            raise ConfigError("secure aggregation needs the nodes' registered `identity_keys`; got none")
        if config.require_differential_privacy and strategy.differential_privacy is None:
            raise ConfigError(
                "the run config enables [privacy.differential_privacy], but the strategy has no differential-privacy "
                "piece, so updates would be released without noise; refusing to run"
            )
        self._budget = (
            PrivacyBudget(strategy, seed=config.seed, min_replies=config.min_replies, noise=dp_noise)
            if strategy.differential_privacy is not None
            else None
        )

    def initial_state(self, params: ParamSet) -> RunState:
        ledger = self._budget.ledger(None) if self._budget is not None else None
        return RunState(round=0, params=params, strategy_state=self.strategy.init_state(params), ledger=ledger)

    def run(self, state: RunState) -> RunState:
        """Run rounds until ``config.rounds`` are complete, checkpointing after each.

        Under differential privacy the rounds still to run are first planned against the budget
        with the nodes available now; a plan over budget is refused before any round runs
        (PrivacyError), and a round that would still exceed it stops the run (BudgetExhausted,
        carrying the state so far).
        """
        if self._budget is not None and state.round < self.config.rounds:
            available = self.wait_for_nodes(self.config.min_available_nodes)
            self._budget.check_plan(
                self._budget.ledger(state.ledger),
                rounds=self.config.rounds - state.round,
                num_available=len(available),
                params=state.params,
                state=state.strategy_state,
            )
        while state.round < self.config.rounds:
            state = self.round(state)
        return state

    def round(self, state: RunState) -> RunState:
        """Run the next round and return the new state (the input is left untouched)."""
        started = self._clock()
        number = state.round + 1
        seed = self.config.seed
        available = self.wait_for_nodes(self.config.min_available_nodes)
        sampled = self.strategy.sample(available, seeding.round_rng(seed, number, seeding.SAMPLE))
        if self._budget is not None:
            ledger = self._budget.ledger(state.ledger)
            state = replace(state, ledger=ledger)
            worst = self._budget.worst_charge(
                num_available=len(available), num_sampled=len(sampled), params=state.params, state=state.strategy_state
            )
            self._budget.check_round(ledger, worst, number=number, state=state)
            if self._reserve is not None and worst is not None:
                self._reserve(number, ledger.plus(worst))
        payload_config, extras = self.strategy.fit_payload(state.strategy_state)
        base_config = {**self.config.client_config, **payload_config, **self._private_config(state, len(sampled))}
        if not sampled:
            return self._empty_round(state, number, started, available)
        if self.strategy.secure_aggregation is not None:
            return self._secure_round(state, number, started, sampled, available, base_config, extras)
        tasks = {
            node: Task(
                kind=FIT,
                round=number,
                run_id=self.config.run_id,
                params=state.params,
                extras=extras,
                config=self._fit_config(base_config, number, node),
            )
            for node in sampled
        }
        gather = Gather(
            self.fleet,
            tasks,
            quorum=quorum_for(
                len(sampled), min_replies=self.config.min_replies, min_fraction=self.config.min_reply_fraction
            ),
            timeout=self.config.round_timeout,
            validate=self._fit_validator(state.params),
            clock=self._clock,
            label=f"round {number} fit",
            buffer_bytes=self.config.reorder_buffer_bytes,
        )
        capped: dict[str, str] = {}
        contributors: list[str] = []
        update = self.strategy.aggregate(
            state.params,
            state.strategy_state,
            self._counted(gather, capped, contributors),
            num_nodes=len(available),
            rng=seeding.round_rng(seed, number, seeding.AGGREGATE),
            private=self._private_round(number, available, len(sampled), state.params),
        )
        federated, central, eval_bytes = self._evaluate(update.params, number, available)
        report = gather.report
        record = RoundRecord(
            round=number,
            sampled=len(sampled),
            replies=update.num_replies,
            num_examples=update.num_examples,
            duration_s=self._clock() - started,
            bytes_sent=report.bytes_sent + eval_bytes[0],
            bytes_received=report.bytes_received + eval_bytes[1],
            fit_metrics=dict(update.metrics),
            federated_metrics=federated,
            central_metrics=central,
            failures=dict(report.failures),
            capped=capped,
            contributors=tuple(sorted(contributors)),
        )
        charge = self._charge(state, len(available), len(sampled), update.num_replies)
        return self._finish(state, number, update.params, update.state, record, charge)

    def _secure_round(
        self,
        state: RunState,
        number: int,
        started: float,
        sampled: Sequence[str],
        available: Sequence[str],
        base_config: Mapping[str, Scalar],
        extras: ParamSet,
    ) -> RunState:
        """A round whose fit stage is SecAgg+: the strategy folds one already-summed pseudo-reply."""
        settings = self.strategy.secure_aggregation
        assert settings is not None
        seed = self.config.seed
        secure = SecureRound(
            self.fleet,
            settings,
            identity_keys=self._identity_keys(),
            graph_seed=self._graph_seed,
            run_id=self.config.run_id,
            timeout=self.config.round_timeout,
            min_replies=quorum_for(
                len(sampled), min_replies=self.config.min_replies, min_fraction=self.config.min_reply_fraction
            ),
            clock=self._clock,
            buffer_bytes=self.config.reorder_buffer_bytes,
        )
        outcome: SecureOutcome = secure.run(
            number,
            state.params,
            sampled,
            fit_config=lambda node: self._fit_config(base_config, number, node),
            fit_extras=extras,
            control_variates=self.strategy.control_variates,
            weighted=self.strategy.weighted,
            noise_stddev=0.0
            if self._budget is None
            else self._budget.encoding_noise(len(sampled), state.strategy_state),
        )
        update = self.strategy.aggregate(
            state.params,
            state.strategy_state,
            [outcome.reply],
            num_nodes=len(available),
            rng=seeding.round_rng(seed, number, seeding.AGGREGATE),
            private=self._private_round(number, available, len(sampled), state.params),
        )
        federated, central, eval_bytes = self._evaluate(update.params, number, available)
        record = RoundRecord(
            round=number,
            sampled=len(sampled),
            replies=outcome.survived,
            num_examples=update.num_examples,
            duration_s=self._clock() - started,
            bytes_sent=outcome.bytes_sent + eval_bytes[0],
            bytes_received=outcome.bytes_received + eval_bytes[1],
            federated_metrics=federated,
            central_metrics=central,
            failures=outcome.failures,
            secure=True,
            survived=outcome.survived,
            dropped=outcome.dropped,
            contributors=outcome.survivors,
        )
        charge = self._charge(state, len(available), len(sampled), outcome.survived)
        return self._finish(state, number, update.params, update.state, record, charge)

    def _empty_round(self, state: RunState, number: int, started: float, available: Sequence[str]) -> RunState:
        """A round whose (Poisson) draw sampled no node: nothing is sent, and the round still releases.

        Under central DP the strategy releases the noise alone (see ``strategies.privacy``) and the
        round is charged; otherwise the model and strategy state stay as they were.
        """
        params, strategy_state = state.params, state.strategy_state
        dp = self.strategy.differential_privacy
        if dp is not None and dp.mechanism == "central":
            update = self.strategy.aggregate(
                state.params,
                state.strategy_state,
                [],
                num_nodes=len(available),
                rng=seeding.round_rng(self.config.seed, number, seeding.AGGREGATE),
                private=self._private_round(number, available, 0, state.params),
            )
            params, strategy_state = update.params, update.state
        federated, central, eval_bytes = self._evaluate(params, number, available)
        record = RoundRecord(
            round=number, sampled=0, replies=0, num_examples=0, duration_s=self._clock() - started,
            bytes_sent=eval_bytes[0], bytes_received=eval_bytes[1], federated_metrics=federated,
            central_metrics=central,
        )  # fmt: skip
        return self._finish(state, number, params, strategy_state, record, self._charge(state, len(available), 0, 0))

    def _private_config(self, state: RunState, num_sampled: int) -> dict[str, Scalar]:
        """The DP keys of this round's fit tasks (none without DP)."""
        if self._budget is None:
            return {}
        survivors = self._budget.minimum_survivors(num_sampled)
        return self.strategy.private_config(state.strategy_state, minimum_survivors=survivors)

    def _private_round(
        self, number: int, available: Sequence[str], num_sampled: int, params: ParamSet
    ) -> PrivateRound | None:
        if self._budget is None:
            return None
        return self._budget.private_round(number, len(available), num_sampled, params)

    def _charge(self, state: RunState, num_available: int, num_sampled: int, survivors: int) -> Charge | None:
        """What the round that just ran is charged; priced on the state it started from."""
        if self._budget is None:
            return None
        return self._budget.charge(
            num_available=num_available,
            num_sampled=num_sampled,
            survivors=survivors,
            params=state.params,
            state=state.strategy_state,
        )

    def _fit_config(self, base: Mapping[str, Scalar], number: int, node: str) -> dict[str, Scalar]:
        """A node's fit config: the run's and the strategy's keys, the round, and the node's own seed."""
        return {**base, ROUND_KEY: number, SEED_KEY: seeding.node_seed(self.config.seed, number, node)}

    def _evaluate(
        self, params: ParamSet, number: int, available: Sequence[str]
    ) -> tuple[dict[str, float], dict[str, float], tuple[int, int]]:
        """Federated and central metrics of the round's new model, and the bytes federated evaluation moved."""
        federated, eval_bytes = self._evaluate_federated(params, number, available)
        central = dict(self._central_evaluate(params)) if self._central_evaluate else {}
        return federated, central, eval_bytes

    def _finish(self, state: RunState, number: int, params: ParamSet, strategy_state: ParamSet,
                record: RoundRecord, charge: Charge | None = None) -> RunState:  # fmt: skip
        ledger = state.ledger
        if self._budget is not None:
            ledger = self._budget.ledger(ledger)
            ledger = ledger if charge is None else ledger.plus(charge)
            record = replace(record, epsilon=self._budget.epsilon(ledger))
        new_state = replace(
            state,
            round=number,
            params=params,
            strategy_state=strategy_state,
            history=(*state.history, record),
            ledger=ledger,
        )
        if self._checkpoint is not None:
            self._checkpoint(new_state)
        if self._on_round is not None:
            self._on_round(record)
        return new_state

    def wait_for_nodes(self, minimum: int) -> Sequence[str]:
        """Poll the fleet until ``minimum`` nodes are available, or fail with how many came.

        A wait is logged when it starts and every ``_WAIT_LOG_INTERVAL`` seconds, so an operator
        watching a stalled run sees what it waits for rather than silence.
        """
        deadline = self._clock() + self.config.wait_for_nodes_timeout
        next_log = self._clock()
        while True:
            available = list(self.fleet.available())
            if len(available) >= minimum:
                return available
            if self._clock() >= next_log:
                logger.info(
                    "waiting for %d nodes, %d available; giving up in %.0f s (wait_for_nodes_timeout)",
                    minimum, len(available), max(0.0, deadline - self._clock()),
                )  # fmt: skip
                next_log = self._clock() + _WAIT_LOG_INTERVAL
            if self._clock() >= deadline:
                raise QuorumError(
                    f"needed {minimum} nodes but only {len(available)} were available after waiting "
                    f"{self.config.wait_for_nodes_timeout:g} s (raise wait_for_nodes_timeout or start more nodes)"
                )
            self._sleep(min(0.05, max(0.0, deadline - self._clock())))

    def _counted(self, replies: Iterable[Reply], capped: dict[str, str], contributors: list[str]) -> Iterator[Reply]:
        """The replies, each noted in ``contributors``, any example count above ``max_examples_per_reply``
        counted at it and noted in ``capped``.

        Steps the iterator by hand so that no reply stays referenced here while the next one is
        awaited: the fold holds one reply at a time (see ``Strategy._fold``).
        """
        cap = self.config.max_examples_per_reply
        iterator = iter(replies)
        while (reply := next(iterator, None)) is not None:
            contributors.append(reply.node_id)
            if cap is not None and reply.num_examples > cap:
                capped[reply.node_id] = f"claimed {reply.num_examples} examples; counted as {cap}"
                reply = replace(reply, num_examples=cap)
            yield reply
            del reply

    def _check_declared(self, reply: Reply) -> None:
        """A node registered with a row count cannot claim more examples than it holds."""
        declared = self.config.declared_examples.get(reply.node_id)
        if declared is not None and reply.num_examples > declared:
            raise ValidationError(f"claims {reply.num_examples} examples, but the node declared {declared} rows")

    def _fit_validator(self, params: ParamSet) -> Callable[[Reply], None]:
        spec = params.spec()
        extras_spec = self.strategy.reply_extras_spec(spec)
        limits = self.config.limits

        def validate(reply: Reply) -> None:
            validate_num_examples(reply.num_examples, limits=limits)
            self._check_declared(reply)
            validate_params(reply.params, spec, limits=limits)
            validate_params(reply.extras, extras_spec, limits=limits, what="update extras")
            validate_metrics(reply.metrics)

        return validate

    def _validate_evaluation(self, reply: Reply) -> None:
        validate_num_examples(reply.num_examples, limits=self.config.limits)
        self._check_declared(reply)
        validate_metrics(reply.metrics)
        if len(reply.params):
            raise ValidationError("an evaluate reply must not carry parameters")

    def _evaluate_federated(
        self, params: ParamSet, number: int, available: Sequence[str]
    ) -> tuple[dict[str, float], tuple[int, int]]:
        """Evaluate on a sample of nodes; a failed evaluation is recorded, never fatal."""
        cfg = self.config
        if cfg.evaluate_fraction == 0 or number % cfg.evaluate_every != 0 or not available:
            return {}, (0, 0)
        rng = seeding.round_rng(cfg.seed, number, seeding.EVALUATE)
        count = min(len(available), max(1, math.ceil(cfg.evaluate_fraction * len(available))))
        chosen = sorted(rng.choice(len(available), size=count, replace=False).tolist())
        config = {**cfg.client_config, ROUND_KEY: number}
        tasks = {
            available[i]: Task(kind=EVALUATE, round=number, run_id=cfg.run_id, params=params, config=config)
            for i in chosen
        }
        gather = Gather(
            self.fleet,
            tasks,
            quorum=1,
            timeout=cfg.round_timeout,
            validate=self._validate_evaluation,
            clock=self._clock,
            label=f"round {number} evaluate",
        )
        sums: dict[str, float] = {}
        total = 0
        try:
            for reply in gather:
                total += reply.num_examples
                for key, value in reply.metrics.items():
                    sums[key] = sums.get(key, 0.0) + value * reply.num_examples
        except QuorumError:
            return {}, (gather.report.bytes_sent, gather.report.bytes_received)
        metrics = {k: v / total for k, v in sums.items()} if total else {}
        return metrics, (gather.report.bytes_sent, gather.report.bytes_received)
