"""Robust reducers in a simulated run: a few sign-flipping nodes spoil FedAvg but not the defences."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from fedlearn.client.learners import builtin_learner
from fedlearn.client.trainer import FitResult, Learner, NodeState, Trainer
from fedlearn.client.trusted import trusted_model
from fedlearn.core.messages import Config
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset
from fedlearn.data.datasets import load_dataset, train_test_split
from fedlearn.data.partition import partition
from fedlearn.engine import EngineConfig
from fedlearn.simulation import simulate
from fedlearn.strategies import (
    bucketing,
    bulyan,
    centered_clipping,
    fedavg,
    fltrust,
    geometric_median,
    krum,
    norm_bound,
    trimmed_mean,
)

CLIENT = {"local_epochs": 2, "batch_size": 8, "learning_rate": 0.1}
NODES, ATTACKERS = 11, 2


@dataclass(frozen=True)
class SignFlipping:
    """A Byzantine node: it trains honestly, then sends its update reversed and scaled up ten times."""

    trainer: Trainer

    def fit(self, params: ParamSet, config: Config, state: NodeState, extras: ParamSet | None = None) -> FitResult:
        honest = self.trainer.fit(params, config, state)
        return FitResult(params=params - (honest.params - params) * 10.0, num_examples=honest.num_examples)

    def evaluate(self, params, config):
        return self.trainer.evaluate(params, config)


@dataclass(frozen=True)
class WithAttackers:
    """A learner whose trainers for the ``attacked`` partitions flip their updates."""

    learner: Learner
    attacked: tuple[int, ...]

    def init_params(self, seed: int) -> ParamSet:
        return self.learner.init_params(seed)

    def trainer(self, data: Dataset) -> Trainer:
        trainer = self.learner.trainer(data)
        return SignFlipping(trainer) if id(data) in self.attacked else trainer


@pytest.fixture(scope="module")
def iris():
    train, test = train_test_split(load_dataset("iris"), 0.2, 0)
    parts = [train.subset(ix) for ix in partition("iid", train, NODES, seed=0)]
    learner = builtin_learner("numpy.softmax", train)
    return learner, parts, test, train


def accuracy(iris, reducer, attackers: int = ATTACKERS) -> float:
    """Test accuracy after five rounds of FedAvg with ``reducer`` when ``attackers`` of the nodes flip their updates."""
    learner, parts, test, _ = iris
    attacked = WithAttackers(learner, tuple(id(p) for p in parts[:attackers]))
    config = EngineConfig(rounds=5, seed=1, client_config=CLIENT)
    result = simulate(attacked, parts, fedavg(reducer=reducer), config, test_data=test)
    return result.history[-1].central_metrics["accuracy"]


@pytest.fixture(scope="module")
def unattacked(iris) -> float:
    return accuracy(iris, None, attackers=0)  # 0.767 after five rounds


def test_fedavg_is_spoiled_by_two_sign_flipping_nodes_of_eleven(iris, unattacked: float) -> None:
    assert accuracy(iris, None) < unattacked - 0.4


@pytest.mark.parametrize(
    "reducer",
    [
        krum(ATTACKERS),
        bulyan(ATTACKERS),
        trimmed_mean(0.2),
        geometric_median(),
        centered_clipping(0.5, iterations=3),
        centered_clipping(0.5, iterations=3, momentum=0.5),
        bucketing(krum(1), 2),
        norm_bound(geometric_median(), 1.0),
    ],
    ids=[
        "krum",
        "bulyan",
        "trimmed_mean",
        "geometric_median",
        "centered_clipping",
        "centered_clipping_momentum",
        "bucketing",
        "norm_bound",
    ],
)
def test_robust_reducer_trains_despite_two_sign_flipping_nodes_of_eleven(iris, unattacked: float, reducer) -> None:
    assert accuracy(iris, reducer) >= unattacked - 0.05


def test_fltrust_trains_despite_two_sign_flipping_nodes_of_eleven(iris, unattacked: float) -> None:
    learner, _, _, train = iris
    root = train.subset(np.random.default_rng(0).choice(len(train), size=20, replace=False))

    assert accuracy(iris, fltrust(trusted_model(learner, root, CLIENT))) >= unattacked - 0.05
