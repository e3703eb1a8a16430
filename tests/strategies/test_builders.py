"""The named strategies and ``build_strategy``, the config-section entry point."""

from __future__ import annotations

import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.core.params import ParamSet
from fedlearn.strategies import STRATEGIES, build_strategy, fedavg, fedavgm, fedprox, scaffold
from fedlearn.strategies.reducers import UnweightedMean, WeightedMean
from fedlearn.strategies.samplers import FractionSampler
from fedlearn.strategies.transforms import SGD, Adagrad, Adam, Momentum, Yogi

from .helpers import build_named


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_named_strategy_carries_its_name(name: str) -> None:
    assert build_named(name).name == name


@pytest.mark.parametrize(
    ("name", "reducer", "transform"),
    [
        ("fedavg", WeightedMean, SGD),
        ("fedavgm", WeightedMean, Momentum),
        ("fedprox", WeightedMean, SGD),
        ("fedadam", WeightedMean, Adam),
        ("fedyogi", WeightedMean, Yogi),
        ("fedadagrad", WeightedMean, Adagrad),
        ("scaffold", UnweightedMean, SGD),
    ],
)
def test_named_strategy_is_composed_of_the_expected_pieces(name: str, reducer: type, transform: type) -> None:
    strategy = build_named(name)

    assert (type(strategy.reducer), type(strategy.transform)) == (reducer, transform)


def test_fedavg_is_weighted_mean_with_unit_server_learning_rate() -> None:
    assert fedavg().transform == SGD(learning_rate=1.0)


def test_fedavgm_passes_its_momentum_to_the_transform() -> None:
    strategy = fedavgm(server_learning_rate=0.5, server_momentum=0.7, nesterov=True)

    assert strategy.transform == Momentum(learning_rate=0.5, beta=0.7, nesterov=True)


def test_fedprox_sends_mu_to_clients_as_proximal_mu() -> None:
    strategy = fedprox(mu=0.1)

    config, extras = strategy.fit_payload(strategy.init_state(ParamSet()))

    assert dict(config) == {"proximal_mu": 0.1}
    assert len(extras) == 0


def test_fedprox_negative_mu_raises_config_error() -> None:
    with pytest.raises(ConfigError, match=r"`mu` must be in \[0, inf\); got -1"):
        fedprox(mu=-1)


def test_scaffold_uses_control_variates() -> None:
    assert scaffold().control_variates is True


def test_builders_pass_sampler_options_through() -> None:
    strategy = build_strategy("fedavg", fraction=0.5, min_nodes=2, max_nodes=9)

    assert strategy.sampler == FractionSampler(fraction=0.5, min_nodes=2, max_nodes=9)


def test_build_strategy_builds_the_named_strategy_with_its_options() -> None:
    strategy = build_strategy("fedadam", server_learning_rate=0.01, tau=1e-4)

    assert strategy.transform == Adam(learning_rate=0.01, tau=1e-4)


def test_build_strategy_unknown_name_raises_config_error_listing_valid_names() -> None:
    with pytest.raises(ConfigError, match="unknown strategy 'fedavx'; valid names: fedadagrad, fedadam, fedavg,"):
        build_strategy("fedavx")


def test_build_strategy_unknown_option_raises_config_error_listing_valid_options() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown option\(s\) fractoin for strategy 'fedavg'; valid options: fraction, max_nodes, min_nodes",
    ):
        build_strategy("fedavg", fractoin=0.5)


def test_build_strategy_missing_required_option_raises_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"strategy 'fedprox' needs option\(s\) mu"):
        build_strategy("fedprox", fraction=0.5)


def test_build_strategy_bad_option_value_raises_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"`fraction` must be a number in \(0, 1\]; got '0.5' \(str\)"):
        build_strategy("fedavg", fraction="0.5")
