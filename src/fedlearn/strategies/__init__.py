"""Server-side algorithms, composed from small pure pieces.

A :class:`Strategy` is a frozen composition of a sampler (which nodes take part), a reducer (many
updates to one) and a server transform (one update to the next model), plus the config clients
need. The named algorithms are one-liners over these pieces::

    strategy = fedadam(server_learning_rate=0.01, fraction=0.1, min_nodes=10)
    strategy = Strategy(name="robust-adam", sampler=fraction_sampler(0.1),
                        reducer=trimmed_mean(0.1), transform=chain(clip_by_global_norm(1.0), adam(0.01)))

and a run config's ``[strategy]`` section becomes ``build_strategy(**section)``. State such as
optimizer moments is an explicit ``ParamSet`` that the engine checkpoints with the model.
"""

from fedlearn.strategies.base import Reducer, Sampler, ServerTransform
from fedlearn.strategies.builders import (
    STRATEGIES,
    build_strategy,
    fedadagrad,
    fedadam,
    fedavg,
    fedavgm,
    fedprox,
    fedyogi,
    scaffold,
)
from fedlearn.strategies.reducers import coordinate_median, krum, trimmed_mean, unweighted_mean, weighted_mean
from fedlearn.strategies.samplers import fraction_sampler
from fedlearn.strategies.strategy import RoundUpdate, Strategy
from fedlearn.strategies.transforms import adagrad, adam, chain, clip_by_global_norm, momentum, sgd, yogi

__all__ = [
    "STRATEGIES",
    "Reducer",
    "RoundUpdate",
    "Sampler",
    "ServerTransform",
    "Strategy",
    "adagrad",
    "adam",
    "build_strategy",
    "chain",
    "clip_by_global_norm",
    "coordinate_median",
    "fedadagrad",
    "fedadam",
    "fedavg",
    "fedavgm",
    "fedprox",
    "fedyogi",
    "fraction_sampler",
    "krum",
    "momentum",
    "scaffold",
    "sgd",
    "trimmed_mean",
    "unweighted_mean",
    "weighted_mean",
    "yogi",
]
