"""The public API of ``fedlearn.strategies`` is what ``__all__`` says, and nothing drifts silently."""

from __future__ import annotations

from fedlearn import strategies

EXPECTED = [
    "REDUCERS",
    "STRATEGIES",
    "Reducer",
    "RoundReducer",
    "RoundUpdate",
    "Sampler",
    "ServerModel",
    "ServerTransform",
    "Strategy",
    "adagrad",
    "adam",
    "bucketing",
    "build_reducer",
    "build_strategy",
    "bulyan",
    "centered_clipping",
    "chain",
    "clip_by_global_norm",
    "coordinate_median",
    "fedadagrad",
    "fedadam",
    "fedavg",
    "fedavgm",
    "fedprox",
    "fedyogi",
    "fltrust",
    "fraction_sampler",
    "geometric_median",
    "krum",
    "momentum",
    "norm_bound",
    "poisson_sampler",
    "scaffold",
    "sgd",
    "trimmed_mean",
    "unweighted_mean",
    "weighted_mean",
    "yogi",
]


def test_public_api_is_pinned() -> None:
    assert strategies.__all__ == EXPECTED


def test_every_public_name_resolves() -> None:
    missing = [name for name in strategies.__all__ if not hasattr(strategies, name)]

    assert missing == []


def test_strategies_registry_names_every_named_builder() -> None:
    assert sorted(strategies.STRATEGIES) == [
        "fedadagrad",
        "fedadam",
        "fedavg",
        "fedavgm",
        "fedprox",
        "fedyogi",
        "scaffold",
    ]
