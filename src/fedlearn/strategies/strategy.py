"""A strategy: a frozen composition of sampler, reducer and server transform.

FedAvg, FedAdam or a robust variant differ only in which pieces they hold, so a new combination
is one line of user code (``Strategy(sampler=..., reducer=trimmed_mean(0.1), transform=adam(...))``)
rather than a subclass. Client-side parts travel in ``client_config`` (the FedProx ``proximal_mu``)
or, for SCAFFOLD, as control variates in the task's ``extras``.

Server state is one flat ``ParamSet``: the transform's state under ``transform/``, a round
reducer's (centered clipping's centre, say) under ``reducer/`` and SCAFFOLD's global control
variate under ``scaffold/c/``, and differential privacy's clipping norm under ``dp/``. The engine
checkpoints it as it is.

With a ``differential_privacy`` piece the round's updates are folded by the private mean of
``fedlearn.strategies.privacy`` (clipped, unweighted, noised) instead of the reducer, which must
then be a mean; the server transform applies the result as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from fedlearn.core.checks import name_mismatch
from fedlearn.core.errors import ConfigError, QuorumError, ValidationError
from fedlearn.core.messages import (
    CONTROL_DELTA_PREFIX,
    CONTROL_PREFIX,
    SCAFFOLD_KEY,
    Reply,
    Scalar,
    freeze_config,
)
from fedlearn.core.params import ParamSet, Spec
from fedlearn.privacy.differential import DifferentialPrivacy
from fedlearn.privacy.protocol import SecureAggregation
from fedlearn.strategies import privacy
from fedlearn.strategies.base import (
    AnyReducer,
    Reducer,
    RoundReducer,
    Sampler,
    ServerTransform,
    check_reducer,
    reducer_client_config,
    reducer_init_state,
    reducer_next_state,
)
from fedlearn.strategies.reducers import UnweightedMean, WeightedMean

TRANSFORM_PREFIX = "transform/"
REDUCER_PREFIX = "reducer/"


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundUpdate:
    """The outcome of aggregating one round's fit replies."""

    params: ParamSet
    state: ParamSet
    num_replies: int
    num_examples: int
    metrics: Mapping[str, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class Strategy:
    """How the coordinator picks nodes and turns their updates into the next global model."""

    name: str
    sampler: Sampler
    reducer: AnyReducer
    transform: ServerTransform
    client_config: Mapping[str, Scalar] = field(default_factory=dict)
    control_variates: bool = False
    secure_aggregation: SecureAggregation | None = None
    """When set, the coordinator sees only the sum of the updates (SecAgg+; see ``engine.secure_round``)."""
    differential_privacy: DifferentialPrivacy | None = None
    """When set, updates are clipped and noised (``strategies.privacy``) and the engine accounts and enforces ε."""

    def __post_init__(self) -> None:
        asked = {**reducer_client_config(self.reducer), **self.client_config}  # what the reducer needs of nodes
        object.__setattr__(self, "client_config", freeze_config(asked))
        if not self.name:
            raise ConfigError("strategy name must be non-empty")
        for field_name, protocol in (("sampler", Sampler), ("transform", ServerTransform)):
            piece = getattr(self, field_name)
            if not isinstance(piece, protocol):
                raise ConfigError(
                    f"`{field_name}` must implement the {protocol.__name__} protocol; got {type(piece).__name__}"
                )
        check_reducer("reducer", self.reducer)
        if self.secure_aggregation is not None:
            _check_secure_reducer(self.reducer)
        if self.differential_privacy is not None:
            if not isinstance(self.differential_privacy, DifferentialPrivacy):
                raise ConfigError(
                    "`differential_privacy` must be a DifferentialPrivacy piece (in a run config, the "
                    f"[privacy.differential_privacy] section); got {type(self.differential_privacy).__name__}"
                )
            privacy.check_private_strategy(
                self.differential_privacy,
                sampler=self.sampler,
                reducer=self.reducer,
                secure=self.secure_aggregation,
                control_variates=self.control_variates,
            )

    @property
    def weighted(self) -> bool:
        """False when every reply counts once (the unweighted mean, or any private one), so a secure sum weights
        each node by 1."""
        return self.differential_privacy is None and not isinstance(self.reducer, UnweightedMean)

    def init_state(self, params: ParamSet) -> ParamSet:
        state = self.transform.init(params).with_prefix(TRANSFORM_PREFIX)
        state = state.merged(reducer_init_state(self.reducer, params).with_prefix(REDUCER_PREFIX))
        if self.control_variates:
            state = state.merged(params.zeros_like().with_prefix(CONTROL_PREFIX))
        if self.differential_privacy is not None:
            state = state.merged(privacy.init_state(self.differential_privacy).with_prefix(privacy.DP_PREFIX))
        return state

    def sample(self, available: Sequence[str], rng: np.random.Generator) -> list[str]:
        return self.sampler.sample(available, rng)

    def reply_extras_spec(self, params_spec: Spec) -> Spec:
        """The extras a fit reply must carry for a model of ``params_spec``: none, or SCAFFOLD's deltas."""
        if not self.control_variates:
            return {}
        return {f"{CONTROL_DELTA_PREFIX}{name}": shape_dtype for name, shape_dtype in params_spec.items()}

    def fit_payload(self, state: ParamSet) -> tuple[Mapping[str, Scalar], ParamSet]:
        """The config and extra arrays every sampled node receives with its fit task."""
        if not self.control_variates:
            return self.client_config, ParamSet()
        config = MappingProxyType({**self.client_config, SCAFFOLD_KEY: True})
        return config, ParamSet({k: v for k, v in state.items() if k.startswith(CONTROL_PREFIX)})

    def aggregate(
        self,
        params: ParamSet,
        state: ParamSet,
        replies: Iterable[Reply],
        *,
        num_nodes: int,
        rng: np.random.Generator,
        private: privacy.PrivateRound | None = None,
    ) -> RoundUpdate:
        """Fold validated fit replies, in the order given, into the next model and state.

        ``replies`` may be a generator that waits for nodes; it is consumed once, so only one
        update is held at a time when the reducer streams. ``num_nodes`` is the total number
        of nodes known to the run, which SCAFFOLD needs to scale its control variate.

        A round reducer draws from a child of ``rng`` (``rng.spawn``), so the transform's draws
        are the same whichever reducer the strategy holds.

        Under differential privacy ``private`` (the round's fixed denominator and noise source) is
        required, and the replies go through the private mean instead of the reducer.
        """
        if self.differential_privacy is not None:
            return self._aggregate_private(params, state, replies, rng=rng, private=private)
        reducer_state = state.select(REDUCER_PREFIX)
        reducer = self.reducer
        if isinstance(reducer, RoundReducer):
            reducer = reducer.bind(reducer_state, rng.spawn(1)[0])
        folded = self._fold(reducer, params, replies)
        if self.control_variates and num_nodes < folded.count:
            raise ConfigError(f"`num_nodes` must be at least the number of replies ({folded.count}); got {num_nodes}")
        step, transform_state = self.transform.update(folded.update, state.select(TRANSFORM_PREFIX), params, rng)
        new_state = transform_state.with_prefix(TRANSFORM_PREFIX).merged(
            reducer_next_state(self.reducer, reducer_state, folded.update).with_prefix(REDUCER_PREFIX)
        )
        if self.control_variates:
            new_state = new_state.merged(_updated_control(state, folded.control_sum, num_nodes))
        return RoundUpdate(
            params=params + step,
            state=new_state,
            num_replies=folded.count,
            num_examples=folded.examples,
            metrics=folded.metrics,
        )

    def _aggregate_private(
        self,
        params: ParamSet,
        state: ParamSet,
        replies: Iterable[Reply],
        *,
        rng: np.random.Generator,
        private: privacy.PrivateRound | None,
    ) -> RoundUpdate:
        """The private mean, then the transform. Fit metrics are not released: nothing noises them."""
        dp = self.differential_privacy
        assert dp is not None
        if private is None:
            raise ConfigError("a strategy with differential privacy needs the round's `private` settings; got none")
        folded = privacy.private_mean(
            dp,
            params,
            state.select(privacy.DP_PREFIX),
            replies,
            private,
            secure=self.secure_aggregation is not None,
        )
        step, transform_state = self.transform.update(folded.update, state.select(TRANSFORM_PREFIX), params, rng)
        new_state = transform_state.with_prefix(TRANSFORM_PREFIX).merged(folded.state.with_prefix(privacy.DP_PREFIX))
        return RoundUpdate(
            params=params + step, state=new_state, num_replies=folded.count, num_examples=folded.examples, metrics={}
        )

    def private_config(self, state: ParamSet, *, minimum_survivors: int) -> dict[str, Scalar]:
        """This round's DP fit-task keys (none without DP); ``minimum_survivors``: what the secure round accepts."""
        if self.differential_privacy is None:
            return {}
        return privacy.fit_config(
            self.differential_privacy,
            state.select(privacy.DP_PREFIX),
            secure=self.secure_aggregation is not None,
            minimum_survivors=minimum_survivors,
        )

    def _fold(self, reducer: Reducer, params: ParamSet, replies: Iterable[Reply]) -> _Folded:
        """Stream the replies through the reducer.

        A method of its own so that the accumulator and the last reply are freed when it
        returns, before the transform allocates its step. With one reply held at a time and no
        ``reply - params`` temporary, a FedAvg round peaks near 3.3 model sizes (float32) on
        top of the global model (``tests/strategies/test_memory.py``).
        """
        acc = reducer.init(params)
        control_sum: dict[str, np.ndarray] = {}
        metric_sums: dict[str, float] = {}
        count = 0
        examples = 0
        for reply in replies:
            if self.control_variates:  # checked first, so a bad reply never reaches the reducer
                _add_control_delta(control_sum, reply, params)
            acc = reducer.add(acc, reply.params, float(reply.num_examples))
            for key, value in reply.metrics.items():
                metric_sums[key] = metric_sums.get(key, 0.0) + value * reply.num_examples
            count += 1
            examples += reply.num_examples
            del reply  # the next wait may run a whole fit or receive a whole model: hold one reply, not two
        if count == 0:
            raise QuorumError("no valid fit replies to aggregate this round")
        return _Folded(
            update=reducer.result(acc),
            control_sum=control_sum,
            count=count,
            examples=examples,
            metrics={k: v / examples for k, v in metric_sums.items()} if examples else {},
        )


def _check_secure_reducer(reducer: AnyReducer) -> None:
    """Secure aggregation yields only the weighted sum, so only the weighted mean can consume it.

    A defence that looks at each update (a robust statistic, a norm bound, a trust score) is
    refused with the reason it gives in ``needs_each_update``, so the message says why.
    """
    if isinstance(reducer, (WeightedMean, UnweightedMean)):
        return
    reason = getattr(reducer, "needs_each_update", None)
    if reason is not None or not reducer.streaming:
        because = f" ({reason})" if reason else ""
        raise ConfigError(
            f"secure aggregation cannot be used with the {type(reducer).__name__} reducer: it needs each node's "
            f"individual update{because}, and under secure aggregation the coordinator sees only their sum; use "
            "the weighted mean (FedAvg and the FedOpt transforms all work) or turn secure aggregation off"
        )
    raise ConfigError(
        "secure aggregation yields a sum of updates, so it needs the weighted mean reducer (or the unweighted "
        f"mean, for which every node counts once); got {type(reducer).__name__}"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Folded:
    """What one round's replies reduce to, before the server transform runs."""

    update: ParamSet
    control_sum: Mapping[str, np.ndarray]
    count: int
    examples: int
    metrics: Mapping[str, float]


def _add_control_delta(total: dict[str, np.ndarray], reply: Reply, params: ParamSet) -> None:
    """Add a SCAFFOLD reply's control-variate delta to the float64 running ``total``."""
    delta = reply.extras.select(CONTROL_DELTA_PREFIX)
    if delta.keys() != params.keys():
        raise ValidationError(
            f"SCAFFOLD reply from node {reply.node_id!r} must carry one {CONTROL_DELTA_PREFIX!r} array per "
            f"parameter: {name_mismatch(delta, params)}"
        )
    for name, d in delta.items():
        if d.shape != params[name].shape:
            raise ValidationError(
                f"SCAFFOLD reply from node {reply.node_id!r}: control delta {name!r} has shape {d.shape}; "
                f"expected {params[name].shape}"
            )
        if name in total:
            np.add(total[name], d, out=total[name])
        else:
            total[name] = d.astype(np.float64)


def _updated_control(state: ParamSet, control_sum: Mapping[str, np.ndarray], num_nodes: int) -> ParamSet:
    """SCAFFOLD: c <- c + (1/N) * sum over sampled nodes of delta c_i."""
    control = state.select(CONTROL_PREFIX)
    return ParamSet({k: (c + control_sum[k] / num_nodes).astype(c.dtype) for k, c in control.items()}).with_prefix(
        CONTROL_PREFIX
    )
