"""The named strategies, each one line over the pieces, and the config-section entry point.

Every builder takes the sampler options (``fraction``, ``min_nodes``, ``max_nodes``) plus its own
hyper-parameters, all keyword-only, so a ``[strategy]`` section of a run config maps onto a call
one to one: ``build_strategy(**section)``. The adaptive optimizers default to a server learning
rate of 0.1 and ``tau`` = 1e-3. Flower's defaults differ (its FedYogi's learning rate is 0.01, and
its FedAdam's and FedAdagrad's ``tau`` is 1e-9; ``docs/strategies.md`` lists them all), and no
value suits every model: Reddi et al. tune the learning rate over several orders of magnitude,
and so should you.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Literal

from fedlearn.core.checks import NON_NEGATIVE, Options, check, check_call_options, check_real
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import PROXIMAL_MU_KEY
from fedlearn.strategies.reducers import UnweightedMean, WeightedMean, unweighted_mean, weighted_mean
from fedlearn.strategies.samplers import fraction_sampler
from fedlearn.strategies.strategy import Strategy
from fedlearn.strategies.transforms import adagrad, adam, momentum, sgd, yogi

Weighting = Literal["examples", "equal"]


def fedavg(
    *, weighting: Weighting = "examples", fraction: float = 1.0, min_nodes: int = 1, max_nodes: int | None = None
) -> Strategy:
    """FedAvg (McMahan et al. 2017): the example-weighted mean of the client models."""
    return Strategy(
        name="fedavg",
        sampler=fraction_sampler(fraction, min_nodes, max_nodes),
        reducer=_mean(weighting),
        transform=sgd(),
    )


def fedavgm(
    *,
    server_learning_rate: float = 1.0,
    server_momentum: float = 0.9,
    nesterov: bool = False,
    weighting: Weighting = "examples",
    fraction: float = 1.0,
    min_nodes: int = 1,
    max_nodes: int | None = None,
) -> Strategy:
    """FedAvgM (Hsu et al. 2019): FedAvg with momentum on the server."""
    return Strategy(
        name="fedavgm",
        sampler=fraction_sampler(fraction, min_nodes, max_nodes),
        reducer=_mean(weighting),
        transform=momentum(server_learning_rate, beta=server_momentum, nesterov=nesterov),
    )


def fedprox(
    *,
    mu: float,
    weighting: Weighting = "examples",
    fraction: float = 1.0,
    min_nodes: int = 1,
    max_nodes: int | None = None,
) -> Strategy:
    """FedProx (Li et al. 2020): FedAvg whose clients add ``mu/2 * ||w - w_global||^2`` to their loss.

    The server side is FedAvg; ``mu`` reaches the clients as ``proximal_mu`` in the task config.
    """
    proximal_mu = check_real("mu", mu, NON_NEGATIVE)
    return Strategy(
        name="fedprox",
        sampler=fraction_sampler(fraction, min_nodes, max_nodes),
        reducer=_mean(weighting),
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
    fraction: float = 1.0,
    min_nodes: int = 1,
    max_nodes: int | None = None,
) -> Strategy:
    """FedAdam (Reddi et al. 2021): Adam on the server over the weighted mean of client deltas."""
    return Strategy(
        name="fedadam",
        sampler=fraction_sampler(fraction, min_nodes, max_nodes),
        reducer=_mean(weighting),
        transform=adam(server_learning_rate, beta1=beta1, beta2=beta2, tau=tau),
    )


def fedyogi(
    *,
    server_learning_rate: float = 0.1,
    beta1: float = 0.9,
    beta2: float = 0.99,
    tau: float = 1e-3,
    weighting: Weighting = "examples",
    fraction: float = 1.0,
    min_nodes: int = 1,
    max_nodes: int | None = None,
) -> Strategy:
    """FedYogi (Reddi et al. 2021): Yogi on the server over the weighted mean of client deltas."""
    return Strategy(
        name="fedyogi",
        sampler=fraction_sampler(fraction, min_nodes, max_nodes),
        reducer=_mean(weighting),
        transform=yogi(server_learning_rate, beta1=beta1, beta2=beta2, tau=tau),
    )


def fedadagrad(
    *,
    server_learning_rate: float = 0.1,
    tau: float = 1e-3,
    beta1: float = 0.0,
    weighting: Weighting = "examples",
    fraction: float = 1.0,
    min_nodes: int = 1,
    max_nodes: int | None = None,
) -> Strategy:
    """FedAdagrad (Reddi et al. 2021): Adagrad on the server over the weighted mean of client deltas."""
    return Strategy(
        name="fedadagrad",
        sampler=fraction_sampler(fraction, min_nodes, max_nodes),
        reducer=_mean(weighting),
        transform=adagrad(server_learning_rate, tau=tau, beta1=beta1),
    )


def scaffold(
    *,
    server_learning_rate: float = 1.0,
    weighting: Weighting = "equal",
    fraction: float = 1.0,
    min_nodes: int = 1,
    max_nodes: int | None = None,
) -> Strategy:
    """SCAFFOLD (Karimireddy et al. 2020): control variates correct the clients' drift.

    Server: ``x <- x + lr_g * mean(delta y_i)`` (the plain mean, as in the paper) and
    ``c <- c + (1/N) * sum(delta c_i)``; the variates travel in the task and reply extras.
    """
    return Strategy(
        name="scaffold",
        sampler=fraction_sampler(fraction, min_nodes, max_nodes),
        reducer=_mean(weighting),
        transform=sgd(server_learning_rate),
        control_variates=True,
    )


def _mean(weighting: Weighting) -> WeightedMean | UnweightedMean:
    """The mean a strategy folds updates with: weighted by example counts, or each node counting once.

    Example counts come from the nodes, so weighting by them trusts the nodes; ``"equal"`` gives
    one lying node no more pull than any other, at the price of ignoring how much data is behind
    each update. The engine's ``max_examples_per_reply`` and declared row counts bound the trust
    instead, where weighting by data matters.
    """
    check("weighting", weighting, Options(("examples", "equal")))
    return weighted_mean() if weighting == "examples" else unweighted_mean()


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
