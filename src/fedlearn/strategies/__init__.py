"""Server-side algorithms, composed from small pure pieces.

A :class:`Strategy` is a frozen composition of a sampler (which nodes take part), a reducer (many
updates to one) and a server transform (one update to the next model), plus the config clients
need. The named algorithms are one-liners over these pieces::

    strategy = fedadam(server_learning_rate=0.01, fraction=0.1, min_nodes=10)
    strategy = Strategy(name="robust-adam", sampler=fraction_sampler(0.1),
                        reducer=trimmed_mean(0.1), transform=chain(clip_by_global_norm(1.0), adam(0.01)))

and a run config's ``[strategy]`` section becomes ``build_strategy(**section)``. State such as
optimizer moments is an explicit ``ParamSet`` that the engine checkpoints with the model.

Robust aggregation defences compose the same way: a reducer (``bulyan``, ``geometric_median``,
``centered_clipping``, ``fltrust``, ``krum``, ...) behind optional pre-aggregation steps
(``norm_bound``, ``bucketing``), e.g. ``fedadam(reducer=norm_bound(bucketing(bulyan(2), 2), 10.0))``.

Differential privacy is one more piece: ``fedavg(sampler="poisson", sampling_rate=0.01,
differential_privacy=DifferentialPrivacy(noise_multiplier=1.0, epsilon=3.0))`` clips, noises and
averages the updates (``strategies.privacy``) and the engine accounts and enforces ε.
"""

from fedlearn.strategies.base import Reducer, RoundReducer, Sampler, ServerTransform
from fedlearn.strategies.bucketing import bucketing
from fedlearn.strategies.builders import (
    REDUCERS,
    STRATEGIES,
    build_reducer,
    build_strategy,
    fedadagrad,
    fedadam,
    fedavg,
    fedavgm,
    fedprox,
    fedyogi,
    scaffold,
)
from fedlearn.strategies.clipping import centered_clipping, norm_bound
from fedlearn.strategies.fltrust import ServerModel, fltrust
from fedlearn.strategies.reducers import coordinate_median, krum, trimmed_mean, unweighted_mean, weighted_mean
from fedlearn.strategies.robust import bulyan, geometric_median
from fedlearn.strategies.samplers import fraction_sampler, poisson_sampler
from fedlearn.strategies.strategy import RoundUpdate, Strategy
from fedlearn.strategies.transforms import adagrad, adam, chain, clip_by_global_norm, momentum, sgd, yogi

__all__ = [
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
