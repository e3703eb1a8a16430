"""Small trained models for the registry tests: real simulated runs, a few rounds each."""

from __future__ import annotations

import numpy as np

from fedlearn.client.learners import builtin_learner
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset
from fedlearn.data.schema import InputSchema
from fedlearn.engine import EngineConfig
from fedlearn.runtime.store import RunStatus, Store
from fedlearn.simulation import simulate
from fedlearn.strategies import build_strategy

CLIENT = {"local_epochs": 1, "batch_size": 16, "learning_rate": 0.05}


def blobs(classes: int, *, rows: int = 90, features: int = 4, seed: int = 0) -> Dataset:
    """Gaussian blobs, one per class: separable enough that a few rounds learn something."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, rows)
    x = (rng.standard_normal((classes, features))[y] * 2 + rng.standard_normal((rows, features))).astype(np.float32)
    names = tuple(f"f{i}" for i in range(features))
    return Dataset(x=x, y=y.astype(np.int64), n_classes=classes, feature_names=names, name="blobs")


def line(*, rows: int = 90, features: int = 4, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features)).astype(np.float32)
    y = (x @ rng.standard_normal(features) + 0.5 + 0.1 * rng.standard_normal(rows)).astype(np.float32)
    names = tuple(f"f{i}" for i in range(features))
    return Dataset(x=x, y=y, task="regression", feature_names=names, name="line")


def schema_of(data: Dataset) -> InputSchema:
    return InputSchema.numeric(data.feature_names)


def train(model: str, data: Dataset, *, rounds: int = 2, **options: object) -> ParamSet:
    """A real federated run of ``rounds`` FedAvg rounds over three nodes."""
    learner = builtin_learner(model, data, **options)
    parts = [data.subset(np.arange(i, len(data.x), 3)) for i in range(3)]
    config = EngineConfig(rounds=rounds, seed=1, client_config=CLIENT)
    return simulate(learner, parts, build_strategy("fedavg"), config).params


RUN_CONFIG = """
[run]
name = "registry-test"
rounds = 2
seed = 1
[model]
learner = "numpy.softmax"
features = ["f0", "f1", "f2", "f3"]
n_classes = 3
[strategy]
name = "fedavg"
"""


def completed_run(store: Store, *, status: RunStatus = "completed") -> str:
    """A run in ``store`` as a coordinator leaves it: trained for real (in simulation), checkpointed, finished."""
    run_id = store.create_run("registry-test", RUN_CONFIG, seed=1, rounds=2)
    data = blobs(3)
    learner = builtin_learner("numpy.softmax", data)
    parts = [data.subset(np.arange(i, len(data.x), 3)) for i in range(3)]
    state = simulate(learner, parts, build_strategy("fedavg"), EngineConfig(rounds=2, seed=1, client_config=CLIENT))
    store.save_checkpoint(run_id, state.state)
    store.set_run_status(run_id, status)
    return run_id
