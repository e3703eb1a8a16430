"""The named strategies and ``build_strategy``, the config-section entry point."""

from __future__ import annotations

import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.core.params import ParamSet
from fedlearn.strategies import (
    REDUCERS,
    STRATEGIES,
    Reducer,
    RoundReducer,
    build_reducer,
    build_strategy,
    fedavg,
    fedavgm,
    fedprox,
    krum,
    norm_bound,
    scaffold,
)
from fedlearn.strategies.bucketing import Bucketing
from fedlearn.strategies.clipping import NormBound
from fedlearn.strategies.reducers import CoordinateMedian, UnweightedMean, WeightedMean
from fedlearn.strategies.robust import Bulyan, GeometricMedian
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
        match=r"unknown option\(s\) fractoin for strategy 'fedavg'; valid options: differential_privacy, fraction",
    ):
        build_strategy("fedavg", fractoin=0.5)


def test_build_strategy_missing_required_option_raises_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"strategy 'fedprox' needs option\(s\) mu"):
        build_strategy("fedprox", fraction=0.5)


def test_build_strategy_bad_option_value_raises_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"`fraction` must be a number in \(0, 1\]; got '0.5' \(str\)"):
        build_strategy("fedavg", fraction="0.5")


# Reducers from a config table -------------------------------------------------------------------


def test_build_strategy_reducer_table_puts_the_steps_in_front_in_order() -> None:
    table = {"name": "bulyan", "num_byzantine": 1, "bucket_size": 2, "norm_bound": 3.0}

    strategy = build_strategy("fedavg", reducer=table)

    assert strategy.reducer == NormBound(
        reducer=Bucketing(reducer=Bulyan(num_byzantine=1), bucket_size=2), max_norm=3.0
    )


def test_build_strategy_reducer_by_name_alone() -> None:
    assert build_strategy("fedadam", reducer="coordinate_median").reducer == CoordinateMedian()


def test_build_strategy_reducer_table_leaves_the_callers_table_unchanged() -> None:
    table = {"name": "centered_clipping", "tau": 1.0, "norm_bound": 5.0}

    build_strategy("fedavg", reducer=table)

    assert table == {"name": "centered_clipping", "tau": 1.0, "norm_bound": 5.0}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_named_strategy_takes_a_reducer(name: str) -> None:
    assert build_named(name, reducer={"name": "geometric_median"}).reducer == GeometricMedian()


@pytest.mark.parametrize("name", sorted(REDUCERS))
def test_every_registered_reducer_is_built_with_its_options(name: str) -> None:
    options = {
        "trimmed_mean": {"beta": 0.1},
        "krum": {"num_byzantine": 1},
        "bulyan": {"num_byzantine": 1},
        "centered_clipping": {"tau": 1.0},
        "fltrust": {"server_model": lambda params, rng: params},
    }.get(name, {})

    reducer = build_reducer(name, **options)

    assert isinstance(reducer, (Reducer, RoundReducer))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"name": "bulyn"}, "unknown reducer 'bulyn'; valid names: bulyan, centered_clipping, coordinate_median,"),
        ({"num_byzantine": 1}, r"`reducer` needs a `name`, one of: bulyan, .*; got None"),
        (
            {"name": "bulyan", "num_byzantines": 1},
            r"unknown option\(s\) num_byzantines for reducer 'bulyan'; valid options: num_byzantine",
        ),
        ({"name": "bulyan"}, r"reducer 'bulyan' needs option\(s\) num_byzantine"),
        ({"name": "bulyan", "num_byzantine": -1}, "`num_byzantine` must be an integer >= 0; got -1"),
        ({"name": "krum", "num_byzantine": 1, "bucket_size": 0}, "`bucket_size` must be an integer >= 1; got 0"),
        ({"name": "krum", "num_byzantine": 1, "norm_bound": "10"}, r"`norm_bound` must be a number in \(0, inf\)"),
        ({"name": "centered_clipping", "tau": 0}, r"`tau` must be in \(0, inf\); got 0"),
        ({"name": "fltrust"}, "reducer 'fltrust' needs a trusted dataset on the coordinator.*`trusted_examples`"),
    ],
    ids=[
        "unknown_name",
        "no_name",
        "unknown_option",
        "missing_option",
        "bad_value",
        "bad_bucket_size",
        "bad_norm_bound",
        "bad_tau",
        "fltrust_without_data",
    ],
)
def test_build_strategy_bad_reducer_table_raises_config_error_naming_the_problem(table, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_strategy("fedavg", reducer=table)


def test_build_strategy_reducer_with_weighting_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="`weighting` picks which mean folds the updates, so it cannot be combined"):
        build_strategy("fedavg", weighting="equal", reducer="coordinate_median")


def test_build_strategy_reducer_that_needs_more_replies_than_max_nodes_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="needs at least 23 replies a round, but `max_nodes` is 20"):
        build_strategy("fedavg", reducer={"name": "bulyan", "num_byzantine": 5}, max_nodes=20)


def test_build_strategy_reducer_object_is_used_as_given() -> None:
    reducer = norm_bound(krum(1), 2.0)

    assert fedavgm(reducer=reducer).reducer is reducer
