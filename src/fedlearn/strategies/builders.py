"""The named strategies, each one line over the pieces, and the config-section entry point.

Every builder takes the sampler options (``fraction``, ``min_nodes``, ``max_nodes`` for the fraction
sampler, or ``sampler = "poisson"`` with ``sampling_rate``), ``differential_privacy`` (a
:class:`~fedlearn.privacy.differential.DifferentialPrivacy` piece; a run config gives it as its
``[privacy.differential_privacy]`` section instead) plus its own hyper-parameters, all
keyword-only, so a ``[strategy]`` section of a run config maps onto a call one to one:
``build_strategy(**section)``. The adaptive optimizers default to a server learning
rate of 0.1 and ``tau`` = 1e-3. Flower's defaults differ (its FedYogi's learning rate is 0.01, and
its FedAdam's and FedAdagrad's ``tau`` is 1e-9; ``docs/strategies.md`` lists them all), and no
value suits every model: Reddi et al. tune the learning rate over several orders of magnitude,
and so should you.

Every builder also takes ``reducer``: by default the mean that ``weighting`` picks, or any
reducer, given as an object or (from a config) as a table naming one of :data:`REDUCERS` with
its options, plus the pre-aggregation steps ``norm_bound`` and ``bucket_size``::

    [strategy.reducer]
    name = "bulyan"
    num_byzantine = 2
    bucket_size = 2     # bucketing in front of Bulyan
    norm_bound = 10.0   # and each update's norm bounded before that
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Literal

from fedlearn.core.checks import NON_NEGATIVE, POSITIVE, Options, check, check_call_options, check_int, check_real
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import PROXIMAL_MU_KEY
from fedlearn.privacy.differential import DifferentialPrivacy
from fedlearn.strategies.base import AnyReducer, Sampler, check_reducer, required_replies
from fedlearn.strategies.bucketing import bucketing
from fedlearn.strategies.clipping import centered_clipping, norm_bound
from fedlearn.strategies.fltrust import fltrust
from fedlearn.strategies.reducers import coordinate_median, krum, trimmed_mean, unweighted_mean, weighted_mean
from fedlearn.strategies.robust import bulyan, geometric_median
from fedlearn.strategies.samplers import fraction_sampler, poisson_sampler
from fedlearn.strategies.strategy import Strategy
from fedlearn.strategies.transforms import adagrad, adam, momentum, sgd, yogi

Weighting = Literal["examples", "equal"]
SamplerOption = Sampler | Literal["fraction", "poisson"]
"""A builder's ``sampler``: a sampler, or the name of one (``sampling_rate`` is the Poisson sampler's rate)."""
ReducerOption = AnyReducer | str | Mapping[str, object] | None
"""A builder's ``reducer``: a reducer, a name from :data:`REDUCERS`, a config table, or None for the mean."""

REDUCERS: Mapping[str, Callable[..., AnyReducer]] = MappingProxyType(
    {
        "weighted_mean": weighted_mean,
        "unweighted_mean": unweighted_mean,
        "coordinate_median": coordinate_median,
        "trimmed_mean": trimmed_mean,
        "krum": krum,
        "bulyan": bulyan,
        "geometric_median": geometric_median,
        "centered_clipping": centered_clipping,
        "fltrust": fltrust,
    }
)
"""The reducers a config can name, each with the options its builder takes."""

PRE_AGGREGATION = ("bucket_size", "norm_bound")
"""Options of a reducer table that put a step in front of the named reducer rather than configure it."""


def fedavg(
    *,
    weighting: Weighting = "examples",
    reducer: ReducerOption = None,
    fraction: float = 1.0,
    min_nodes: int = 1,
    max_nodes: int | None = None,
    sampler: SamplerOption = "fraction",
    sampling_rate: float | None = None,
    differential_privacy: DifferentialPrivacy | None = None,
) -> Strategy:
    """FedAvg (McMahan et al. 2017): the example-weighted mean of the client models."""
    return Strategy(
        name="fedavg",
        differential_privacy=differential_privacy,
        sampler=_sampler(sampler, sampling_rate, fraction=fraction, min_nodes=min_nodes, max_nodes=max_nodes),
        reducer=_reducer(reducer, weighting, default="examples", max_nodes=max_nodes),
        transform=sgd(),
    )


def fedavgm(
    *,
    server_learning_rate: float = 1.0,
    server_momentum: float = 0.9,
    nesterov: bool = False,
    weighting: Weighting = "examples",
    reducer: ReducerOption = None,
    fraction: float = 1.0,
    min_nodes: int = 1,
    max_nodes: int | None = None,
    sampler: SamplerOption = "fraction",
    sampling_rate: float | None = None,
    differential_privacy: DifferentialPrivacy | None = None,
) -> Strategy:
    """FedAvgM (Hsu et al. 2019): FedAvg with momentum on the server."""
    return Strategy(
        name="fedavgm",
        differential_privacy=differential_privacy,
        sampler=_sampler(sampler, sampling_rate, fraction=fraction, min_nodes=min_nodes, max_nodes=max_nodes),
        reducer=_reducer(reducer, weighting, default="examples", max_nodes=max_nodes),
        transform=momentum(server_learning_rate, beta=server_momentum, nesterov=nesterov),
    )


def fedprox(
    *,
    mu: float,
    weighting: Weighting = "examples",
    reducer: ReducerOption = None,
    fraction: float = 1.0,
    min_nodes: int = 1,
    max_nodes: int | None = None,
    sampler: SamplerOption = "fraction",
    sampling_rate: float | None = None,
    differential_privacy: DifferentialPrivacy | None = None,
) -> Strategy:
    """FedProx (Li et al. 2020): FedAvg whose clients add ``mu/2 * ||w - w_global||^2`` to their loss.

    The server side is FedAvg; ``mu`` reaches the clients as ``proximal_mu`` in the task config.
    """
    proximal_mu = check_real("mu", mu, NON_NEGATIVE)
    return Strategy(
        name="fedprox",
        differential_privacy=differential_privacy,
        sampler=_sampler(sampler, sampling_rate, fraction=fraction, min_nodes=min_nodes, max_nodes=max_nodes),
        reducer=_reducer(reducer, weighting, default="examples", max_nodes=max_nodes),
        transform=sgd(),
        client_config={PROXIMAL_MU_KEY: proximal_mu},
    )


def fedadam(
    *,
    server_learning_rate: float = 0.1,
    beta1: float = 0.9,
    beta2: float = 0.99,
    tau: float = 1e-3,
    weighting: Weighting = "examples",
    reducer: ReducerOption = None,
    fraction: float = 1.0,
    min_nodes: int = 1,
    max_nodes: int | None = None,
    sampler: SamplerOption = "fraction",
    sampling_rate: float | None = None,
    differential_privacy: DifferentialPrivacy | None = None,
) -> Strategy:
    """FedAdam (Reddi et al. 2021): Adam on the server over the weighted mean of client deltas."""
    return Strategy(
        name="fedadam",
        differential_privacy=differential_privacy,
        sampler=_sampler(sampler, sampling_rate, fraction=fraction, min_nodes=min_nodes, max_nodes=max_nodes),
        reducer=_reducer(reducer, weighting, default="examples", max_nodes=max_nodes),
        transform=adam(server_learning_rate, beta1=beta1, beta2=beta2, tau=tau),
    )


def fedyogi(
    *,
    server_learning_rate: float = 0.1,
    beta1: float = 0.9,
    beta2: float = 0.99,
    tau: float = 1e-3,
    weighting: Weighting = "examples",
    reducer: ReducerOption = None,
    fraction: float = 1.0,
    min_nodes: int = 1,
    max_nodes: int | None = None,
    sampler: SamplerOption = "fraction",
    sampling_rate: float | None = None,
    differential_privacy: DifferentialPrivacy | None = None,
) -> Strategy:
    """FedYogi (Reddi et al. 2021): Yogi on the server over the weighted mean of client deltas."""
    return Strategy(
        name="fedyogi",
        differential_privacy=differential_privacy,
        sampler=_sampler(sampler, sampling_rate, fraction=fraction, min_nodes=min_nodes, max_nodes=max_nodes),
        reducer=_reducer(reducer, weighting, default="examples", max_nodes=max_nodes),
        transform=yogi(server_learning_rate, beta1=beta1, beta2=beta2, tau=tau),
    )


def fedadagrad(
    *,
    server_learning_rate: float = 0.1,
    tau: float = 1e-3,
    beta1: float = 0.0,
    weighting: Weighting = "examples",
    reducer: ReducerOption = None,
    fraction: float = 1.0,
    min_nodes: int = 1,
    max_nodes: int | None = None,
    sampler: SamplerOption = "fraction",
    sampling_rate: float | None = None,
    differential_privacy: DifferentialPrivacy | None = None,
) -> Strategy:
    """FedAdagrad (Reddi et al. 2021): Adagrad on the server over the weighted mean of client deltas."""
    return Strategy(
        name="fedadagrad",
        differential_privacy=differential_privacy,
        sampler=_sampler(sampler, sampling_rate, fraction=fraction, min_nodes=min_nodes, max_nodes=max_nodes),
        reducer=_reducer(reducer, weighting, default="examples", max_nodes=max_nodes),
        transform=adagrad(server_learning_rate, tau=tau, beta1=beta1),
    )


def scaffold(
    *,
    server_learning_rate: float = 1.0,
    weighting: Weighting = "equal",
    reducer: ReducerOption = None,
    fraction: float = 1.0,
    min_nodes: int = 1,
    max_nodes: int | None = None,
    sampler: SamplerOption = "fraction",
    sampling_rate: float | None = None,
    differential_privacy: DifferentialPrivacy | None = None,
) -> Strategy:
    """SCAFFOLD (Karimireddy et al. 2020): control variates correct the clients' drift.

    Server: ``x <- x + lr_g * mean(delta y_i)`` (the plain mean, as in the paper) and
    ``c <- c + (1/N) * sum(delta c_i)``; the variates travel in the task and reply extras.
    """
    return Strategy(
        name="scaffold",
        differential_privacy=differential_privacy,
        sampler=_sampler(sampler, sampling_rate, fraction=fraction, min_nodes=min_nodes, max_nodes=max_nodes),
        reducer=_reducer(reducer, weighting, default="equal", max_nodes=max_nodes),
        transform=sgd(server_learning_rate),
        control_variates=True,
    )


def _sampler(
    sampler: SamplerOption, sampling_rate: float | None, *, fraction: float, min_nodes: int, max_nodes: int | None
) -> Sampler:
    """The sampler a builder asks for: the fraction sampler by default, the Poisson one at ``sampling_rate``.

    Poisson sampling (each node independently with probability ``sampling_rate``) is what
    differential privacy's amplification assumes; it takes no quorum or cap, since those would make
    the sample depend on its own size, so ``fraction``, ``min_nodes`` and ``max_nodes`` are refused with it.
    """
    if isinstance(sampler, Sampler):
        return sampler
    check("sampler", sampler, Options(("fraction", "poisson")))
    if sampler == "fraction":
        if sampling_rate is not None:
            raise ConfigError(
                "`sampling_rate` is the Poisson sampler's; set sampler = 'poisson', or use `fraction` for the fraction "
                f"sampler; got sampling_rate={sampling_rate!r}"
            )
        return fraction_sampler(fraction, min_nodes, max_nodes)
    if (fraction, min_nodes, max_nodes) != (1.0, 1, None):
        raise ConfigError(
            "`fraction`, `min_nodes` and `max_nodes` apply to the fraction sampler, not to sampler = 'poisson'; "
            "give only `sampling_rate`"
        )
    if sampling_rate is None:
        raise ConfigError("sampler = 'poisson' needs `sampling_rate`, the probability that each node takes part")
    return poisson_sampler(sampling_rate)


def _reducer(reducer: ReducerOption, weighting: Weighting, *, default: Weighting, max_nodes: int | None) -> AnyReducer:
    """The reducer a strategy folds updates with: ``reducer`` if given, else the mean ``weighting`` picks.

    Example counts come from the nodes, so weighting by them trusts the nodes; ``"equal"`` gives
    one lying node no more pull than any other, at the price of ignoring how much data is behind
    each update. The engine's ``max_examples_per_reply`` and declared row counts bound the trust
    instead, where weighting by data matters; a robust ``reducer`` bounds what any minority of
    nodes can do, whatever they claim.

    A reducer that needs more replies than ``max_nodes`` lets a round sample can never run, so
    it is refused here rather than failing every round.
    """
    check("weighting", weighting, Options(("examples", "equal")))
    if reducer is None:
        return weighted_mean() if weighting == "examples" else unweighted_mean()
    if weighting != default:
        raise ConfigError(
            f"`weighting` picks which mean folds the updates, so it cannot be combined with `reducer`; got "
            f"weighting={weighting!r} and a reducer: leave `weighting` out, or name the mean as the reducer "
            "(weighted_mean or unweighted_mean)"
        )
    if isinstance(reducer, str):
        chosen = build_reducer(reducer)
    elif isinstance(reducer, Mapping):
        table = dict(reducer)
        name = table.pop("name", None)
        if not isinstance(name, str):
            raise ConfigError(f"`reducer` needs a `name`, one of: {', '.join(sorted(REDUCERS))}; got {name!r}")
        chosen = build_reducer(name, **table)
    else:
        chosen = check_reducer("reducer", reducer)
    needed = required_replies(chosen)
    if max_nodes is not None and needed > max_nodes:
        raise ConfigError(
            f"the reducer needs at least {needed} replies a round, but `max_nodes` is {max_nodes}; "
            "raise `max_nodes` or tolerate fewer bad nodes"
        )
    return chosen


def build_reducer(name: str, **options: object) -> AnyReducer:
    """The reducer called ``name`` with its ``options``, behind the pre-aggregation steps asked for.

    ``bucket_size`` puts bucketing in front of it and ``norm_bound`` a bound on each update's
    norm in front of that, so each client's update is bounded before it joins a bucket. Unknown
    names and options are :class:`ConfigError`\\s that list what is valid.
    """
    factory = REDUCERS.get(name) if isinstance(name, str) else None
    if factory is None:
        raise ConfigError(f"unknown reducer {name!r}; valid names: {', '.join(sorted(REDUCERS))}")
    if factory is fltrust and "server_model" not in options:
        raise ConfigError(
            "reducer 'fltrust' needs a trusted dataset on the coordinator to compute its own update: in a "
            "simulation set `trusted_examples` in [strategy.reducer]; in a deployment start the coordinator with "
            "--trusted-data FILE and set `trusted_dataset`; in Python pass fltrust(server_model=...) "
            "(fedlearn.client.trusted_model makes one)"
        )
    steps = {key: options.pop(key) for key in PRE_AGGREGATION if key in options}
    check_call_options(f"reducer {name!r}", factory, options)
    reducer = factory(**options)
    if "bucket_size" in steps:
        reducer = bucketing(reducer, check_int("bucket_size", steps["bucket_size"], low=1))
    if "norm_bound" in steps:
        reducer = norm_bound(reducer, check_real("norm_bound", steps["norm_bound"], POSITIVE))
    return reducer


STRATEGIES: Mapping[str, Callable[..., Strategy]] = MappingProxyType(
    {
        "fedavg": fedavg,
        "fedavgm": fedavgm,
        "fedprox": fedprox,
        "fedadam": fedadam,
        "fedyogi": fedyogi,
        "fedadagrad": fedadagrad,
        "scaffold": scaffold,
    }
)


def build_strategy(name: str, **options: object) -> Strategy:
    """The strategy called ``name``, built from a config section's ``options``.

    Unknown names and options, and missing required options, are :class:`ConfigError`\\s that
    list what is valid, so a typo in a TOML file is fixed from the message alone.
    """
    builder = STRATEGIES.get(name) if isinstance(name, str) else None
    if builder is None:
        raise ConfigError(f"unknown strategy {name!r}; valid names: {', '.join(sorted(STRATEGIES))}")
    check_call_options(f"strategy {name!r}", builder, options)
    return builder(**options)
