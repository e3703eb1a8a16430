"""Differential privacy on the coordinator: the private mean that replaces a strategy's reducer.

A strategy with a :class:`~fedlearn.privacy.differential.DifferentialPrivacy` piece folds a round's
updates here rather than through its reducer, then hands the result to its server transform
(FedAvg's ``sgd(1)``, FedAdam, ...) as usual. Every node counts once (node-level DP): the sum is
unweighted, because an example count a node reports would otherwise buy it influence beyond
the clipping bound that the accounting assumes.

``central`` without secure aggregation (DP-FedAvg, McMahan et al. 2018): each update (model minus
global) is clipped to L2 norm ``C`` and added to a float64 running sum, one update and one
cache-sized block at a time (memory O(model)); Gaussian noise of standard deviation ``z_u·C`` goes
on the sum; the sum is divided by a FIXED denominator, the round's expected number of nodes
(``rate·available`` under Poisson sampling, the sample size ``m`` under fixed-size sampling). A
denominator that counted the replies would itself depend on who took part, which the noise on
the sum does not cover; a fixed one makes the mean post-processing of the noised sum.

With adaptive clipping (Andrew et al. 2021) the norm ``C`` lives in strategy state (``dp/clip``),
so checkpoints hold it: each round counts the updates within ``C``, noises the count with
``N(0, σ_b²)`` and moves ``C ← C·exp(-η(b̃ - γ))`` towards the target quantile ``γ``.

Under secure aggregation the coordinator sees one summed pseudo-reply (the survivors' mean update,
weighted by their number): ``central`` adds ``N(0, (zC)²)`` to the recovered sum, ``distributed``
adds nothing (the nodes' discrete Gaussian shares are already in it); both divide by the fixed
denominator. ``local`` nodes noise their own updates, so the coordinator only averages, after
bounding each update's norm so far above what an honest noised update reaches (``C`` plus the
noise's norm plus ten of its standard deviations: an honest node crosses it with probability
below e^-50) that only a node sending garbage is affected.

An empty Poisson draw still releases: under ``central`` the sum of no updates is zero and the
round releases the noise alone over the same denominator (the analysed mechanism; skipping the
round would make its output reveal that the draw was empty); the engine leaves the model as it
was under ``local`` and ``distributed``, where no node was asked and nothing was computed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import (
    DP_CLIP_KEY,
    DP_DELTA_KEY,
    DP_MECHANISM_KEY,
    DP_NOISE_KEY,
    DP_NOISE_MULTIPLIER_KEY,
    Reply,
    Scalar,
)
from fedlearn.core.params import ParamSet
from fedlearn.privacy.accountant import FixedSizeSampling, Sampling
from fedlearn.privacy.differential import DifferentialPrivacy
from fedlearn.privacy.noise import NoiseSource, add_gaussian, gaussian
from fedlearn.privacy.protocol import SecureAggregation
from fedlearn.strategies.accumulators import RunningSum, check_model, update_norm
from fedlearn.strategies.base import AnyReducer, Sampler
from fedlearn.strategies.reducers import UnweightedMean, WeightedMean

DP_PREFIX = "dp/"
CLIP_STATE = "clip"
"""Strategy state under :data:`DP_PREFIX`: the current clipping norm, a float64 array of one value."""
LOCAL_TAIL = 10.0
"""Standard deviations of slack on a local-DP update's norm before the coordinator bounds it."""


@runtime_checkable
class AccountedSampler(Sampler, Protocol):
    """A sampler the accountant can describe: what it is for a number of available nodes, and its expected draw."""

    def expected_nodes(self, num_available: int) -> float: ...

    def accounting(self, num_available: int) -> Sampling: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivateRound:
    """What the private mean needs from the engine: the fixed denominator and where the noise comes from."""

    expected_nodes: float
    noise: NoiseSource
    rounding: float = 0.0
    """The L2 norm that secure aggregation's randomized rounding can add to one node's clipped update
    (``sqrt(d)·2^-fraction_bits``): the coordinator's noise under central DP covers it as well."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivateFold:
    """One round's private mean update, the DP state after it, and how many nodes are in it."""

    update: ParamSet
    state: ParamSet
    count: int
    examples: int


def check_private_strategy(
    dp: DifferentialPrivacy,
    *,
    sampler: Sampler,
    reducer: AnyReducer,
    secure: SecureAggregation | None,
    control_variates: bool,
) -> None:
    """Refuse, with the reason, a combination whose privacy the accounting would not cover."""
    if not isinstance(sampler, AccountedSampler):
        raise ConfigError(
            f"differential privacy must tell the accountant how nodes are sampled, and the {type(sampler).__name__} "
            "sampler does not say (it has no `accounting`); use the Poisson sampler or the fraction sampler"
        )
    if not isinstance(reducer, (WeightedMean, UnweightedMean)):
        reason = getattr(reducer, "needs_each_update", None) or "its result is not a sum of clipped updates"
        raise ConfigError(
            f"differential privacy cannot be combined with the {type(reducer).__name__} reducer ({reason}): the "
            "noise is calibrated to a sum in which one node moves the result by at most the clipping norm; "
            "use the mean (weighted_mean or unweighted_mean; under DP every node counts once)"
        )
    if control_variates:
        raise ConfigError(
            "differential privacy cannot be combined with SCAFFOLD: its control-variate deltas leave the nodes "
            "unclipped and unnoised; use fedavg, fedprox or a FedOpt strategy"
        )
    if dp.mechanism == "distributed" and secure is None:
        raise ConfigError(
            "differential privacy mechanism 'distributed' needs secure aggregation: each node's noise share "
            "protects nothing unless only the sum is seen; enable [privacy.secure_aggregation] or use 'central'"
        )
    if dp.adaptive is not None and secure is not None:
        raise ConfigError(
            "adaptive clipping cannot be used with secure aggregation yet: the count of unclipped updates would "
            "have to be in the secure sum; use a fixed `clip`, or turn secure aggregation off"
        )
    if dp.accountant == "pld" and dp.mechanism == "central":
        probe = sampler.accounting(1_000_000)
        if isinstance(probe, FixedSizeSampling) and probe.sample < probe.population:
            raise ConfigError(
                "the PLD accountant cannot account for fixed-size sampling without replacement (the fraction "
                "sampler); use accountant = 'rdp', or sampler = 'poisson'"
            )


def init_state(dp: DifferentialPrivacy) -> ParamSet:
    """The DP state before the first round: the clipping norm (it moves only under adaptive clipping)."""
    return ParamSet({CLIP_STATE: np.array([dp.clip], dtype=np.float64)})


def current_clip(dp: DifferentialPrivacy, state: ParamSet) -> float:
    """The clipping norm of the round about to run (``state`` is the strategy's state under ``dp/``)."""
    return float(state[CLIP_STATE][0]) if CLIP_STATE in state else dp.clip


def node_noise_stddev(dp: DifferentialPrivacy, clip: float, minimum_survivors: int) -> float | None:
    """The standard deviation of the noise each node adds itself, in update units; None when it adds none.

    ``local``: all of it, ``z·C``. ``distributed``: ``z·C/sqrt(t)`` with ``t`` the fewest survivors
    the secure round accepts, so that the noise in the sum is at least ``z·C`` whoever drops out.
    """
    if dp.mechanism == "local":
        return dp.noise_multiplier * clip
    if dp.mechanism == "distributed":
        return dp.noise_multiplier * clip / math.sqrt(minimum_survivors)
    return None


def fit_config(dp: DifferentialPrivacy, state: ParamSet, *, secure: bool, minimum_survivors: int) -> dict[str, Scalar]:
    """The DP keys of a fit task: always what a node's budget charges; the clip and noise when the node applies them."""
    config: dict[str, Scalar] = {
        DP_MECHANISM_KEY: dp.mechanism,
        DP_NOISE_MULTIPLIER_KEY: dp.noise_multiplier,
        DP_DELTA_KEY: dp.delta,
    }
    clip = current_clip(dp, state)
    if secure or dp.mechanism != "central":
        config[DP_CLIP_KEY] = clip
    noise = node_noise_stddev(dp, clip, minimum_survivors)
    if noise is not None:
        config[DP_NOISE_KEY] = noise
    return config


def private_mean(
    dp: DifferentialPrivacy,
    params: ParamSet,
    state: ParamSet,
    replies: Iterable[Reply],
    round: PrivateRound,
    *,
    secure: bool,
) -> PrivateFold:
    """Fold one round's validated replies into the private mean update (see the module docstring)."""
    clip = current_clip(dp, state)
    total = RunningSum(params)
    if secure:
        count = add_secure_sum(total, replies)
        within, examples = 0, count
    else:
        bound = clip if dp.mechanism == "central" else _local_bound(dp, clip, params.num_values)
        count, within, examples = add_clipped(total, params, replies, bound, clip)
    new_state = state
    if dp.mechanism == "central":
        std = dp.update_noise_multiplier(round.expected_nodes) * (clip + round.rounding)
        for name in total.spec:
            add_gaussian(total.sums[name], std, round.noise)
        if dp.adaptive is not None:
            new_state = _adapted(dp, clip, within, round)
    denominator = round.expected_nodes if dp.mechanism != "local" else max(count, 1)
    return PrivateFold(update=total.divided(denominator), state=new_state, count=count, examples=examples)


def add_clipped(
    total: RunningSum, params: ParamSet, replies: Iterable[Reply], bound: float, clip: float
) -> tuple[int, int, int]:
    """Add each update scaled to norm at most ``bound``; the updates, those within ``clip``, and their examples."""
    base = {name: array.reshape(-1) for name, array in params.items()}
    count = within = examples = 0
    for reply in replies:
        check_model(total.spec, reply.params)
        norm = update_norm(reply.params, base)
        within += norm <= clip
        total.add(reply.params, min(1.0, bound / norm) if norm > 0 else 1.0)
        count += 1
        examples += reply.num_examples
        del reply  # hold one update at a time
    return count, within, examples


def add_secure_sum(total: RunningSum, replies: Iterable[Reply]) -> int:
    """Recover the survivors' sum from the secure round's pseudo-reply (their mean, weighted by their number)."""
    count = 0
    for reply in replies:
        total.add(reply.params, float(reply.num_examples))
        count += reply.num_examples
    return count


def _local_bound(dp: DifferentialPrivacy, clip: float, dimension: int) -> float:
    """The norm no honest local-DP update exceeds but with probability below e^-50."""
    return clip + dp.noise_multiplier * clip * (math.sqrt(dimension) + LOCAL_TAIL)


def _adapted(dp: DifferentialPrivacy, clip: float, within: int, round: PrivateRound) -> ParamSet:
    """Andrew et al. 2021: ``C ← C·exp(-η(b̃ - γ))`` with ``b̃`` the noised share of updates within ``C``."""
    adaptive = dp.adaptive
    assert adaptive is not None
    noisy = within + float(gaussian(round.noise, 1, adaptive.stddev(round.expected_nodes))[0])
    share = noisy / round.expected_nodes
    new_clip = clip * math.exp(-adaptive.learning_rate * (share - adaptive.target_quantile))
    return ParamSet({CLIP_STATE: np.array([new_clip], dtype=np.float64)})
