"""A node that lies about its example count: capped, rejected against its declared rows, or ignored."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from fedlearn.client.learners import builtin_learner
from fedlearn.client.trainer import FitResult, Learner, Trainer
from fedlearn.config import parse_config
from fedlearn.core.errors import ConfigError
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset
from fedlearn.data.datasets import load_dataset, train_test_split
from fedlearn.data.partition import partition
from fedlearn.engine import EngineConfig, RoundRecord
from fedlearn.simulation import node_ids, plan_simulation, simulate
from fedlearn.strategies import build_strategy

CLIENT = {"local_epochs": 2, "batch_size": 16, "learning_rate": 0.1}


@dataclass
class _Inflating:
    """Trains on flipped labels and claims 100 times the rows it has: the attack of the issue."""

    inner: Trainer

    def fit(self, params: ParamSet, config, state, extras=None) -> FitResult:  # type: ignore[no-untyped-def]
        result = self.inner.fit(params, config, state)
        return replace(result, num_examples=100 * result.num_examples)

    def evaluate(self, params: ParamSet, config):  # type: ignore[no-untyped-def]
        return self.inner.evaluate(params, config)


@dataclass
class _OneLiar:
    inner: Learner
    liar: Dataset

    def init_params(self, seed: int) -> ParamSet:
        return self.inner.init_params(seed)

    def trainer(self, data: Dataset) -> Trainer:
        if data is self.liar:
            flipped = Dataset(x=data.x, y=(9 - data.y).astype(data.y.dtype), n_classes=10)
            return _Inflating(self.inner.trainer(flipped))
        return self.inner.trainer(data)


def _attacked_run(weighting: str = "examples", **engine: object) -> tuple[float, tuple[RoundRecord, ...]]:
    data = load_dataset("digits")
    train, test = train_test_split(data, 0.25, 0)
    parts = [train.subset(ix) for ix in partition("iid", train, 10, seed=0)]
    learner = _OneLiar(builtin_learner("numpy.softmax", data), parts[0])
    config = EngineConfig(rounds=5, seed=0, client_config=CLIENT, **engine)  # type: ignore[arg-type]
    result = simulate(learner, parts, build_strategy("fedavg", weighting=weighting), config, test_data=test)
    return float(result.history[-1].central_metrics["accuracy"]), result.history


def _declared(parts_count: int, rows: list[int]) -> dict[str, int]:
    return dict(zip(node_ids(parts_count), rows, strict=True))


@pytest.mark.slow
def test_a_liar_claiming_100_times_its_rows_hijacks_plain_fedavg() -> None:
    accuracy, _ = _attacked_run()

    assert accuracy < 0.5  # why the limits below exist


@pytest.mark.slow
def test_declared_rows_reject_the_liars_replies_with_the_reason() -> None:
    data = load_dataset("digits")
    train, _ = train_test_split(data, 0.25, 0)
    sizes = [len(ix) for ix in partition("iid", train, 10, seed=0)]

    accuracy, history = _attacked_run(declared_examples=_declared(10, sizes))

    assert accuracy > 0.85
    assert all("the node declared" in record.failures["node-000"] for record in history)


@pytest.mark.slow
def test_a_per_reply_cap_counts_the_liar_at_the_cap_and_notes_it() -> None:
    accuracy, history = _attacked_run(max_examples_per_reply=200)

    assert accuracy > 0.85
    assert all(record.capped["node-000"].startswith("claimed 1") for record in history)
    assert all(list(record.capped) == ["node-000"] for record in history)


@pytest.mark.slow
def test_equal_weighting_gives_the_liar_one_vote_like_everyone() -> None:
    accuracy, history = _attacked_run(weighting="equal")

    assert accuracy > 0.85
    assert not history[-1].failures and not history[-1].capped


def test_a_simulation_config_declares_each_nodes_rows_and_caps_replies() -> None:
    config = parse_config({"data": {"dataset": "iris", "nodes": 3, "holdout_fraction": 0.2},
                           "engine": {"max_examples_per_reply": 40}})  # fmt: skip

    plan = plan_simulation(config)

    held = plan.evaluation_data or []
    assert dict(plan.engine.declared_examples) == {
        node: len(fit) + len(rows) for node, fit, rows in zip(node_ids(3), plan.partitions, held, strict=True)
    }
    assert plan.engine.max_examples_per_reply == 40
    undeclared = plan_simulation(parse_config({"data": {"dataset": "iris"}, "simulation": {"declare_rows": False}}))
    assert not undeclared.engine.declared_examples


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ({"max_examples_per_reply": 0}, r"`max_examples_per_reply` must be an integer >= 1; got 0"),
        ({"declared_examples": {"a": -1}}, r"`declared_examples\['a'\]` must be an integer >= 0; got -1"),
    ],
)
def test_engine_config_refuses_impossible_example_limits(engine: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EngineConfig(rounds=1, seed=0, **engine)  # type: ignore[arg-type]
