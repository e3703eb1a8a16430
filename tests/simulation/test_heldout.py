"""Federated evaluation on rows the nodes never train on, in simulation as in deployment."""

from __future__ import annotations

from fedlearn.client.learners import builtin_learner
from fedlearn.config import parse_config
from fedlearn.data.datasets import load_dataset
from fedlearn.data.partition import partition
from fedlearn.data.split import hold_out
from fedlearn.engine import EngineConfig
from fedlearn.simulation import plan_simulation, simulate
from fedlearn.strategies import build_strategy

CLIENT = {"local_epochs": 30, "batch_size": 8, "learning_rate": 0.5}


def _run(with_holdout: bool):  # type: ignore[no-untyped-def]
    data = load_dataset("digits")
    parts = [data.subset(ix) for ix in partition("iid", data, 4, seed=0)]
    held = [hold_out(p, 0.3, seed=0) for p in parts]
    fit_parts = [fit for fit, _ in held]
    evaluation = [rows for _, rows in held] if with_holdout else None
    config = EngineConfig(rounds=3, seed=0, evaluate_fraction=1.0, client_config=CLIENT)
    return simulate(builtin_learner("numpy.softmax", data), fit_parts, build_strategy("fedavg"), config,
                    evaluation_data=evaluation)  # fmt: skip


def test_nodes_evaluate_on_held_out_rows_and_the_history_says_so() -> None:
    on_training = _run(with_holdout=False).history[-1]
    on_heldout = _run(with_holdout=True).history[-1]

    assert on_training.federated_metrics["heldout"] == 0.0
    assert on_heldout.federated_metrics["heldout"] == 1.0
    # the same model scores better on the rows it memorised than on rows it never saw
    assert on_training.federated_metrics["loss"] < on_heldout.federated_metrics["loss"]
    assert on_heldout.num_examples == on_training.num_examples  # fit used the same training rows either way


def test_config_holdout_fraction_keeps_rows_of_each_node_back_from_training() -> None:
    text = {"data": {"dataset": "iris", "nodes": 3, "holdout_fraction": 0.25}, "run": {"rounds": 1}}
    plan = plan_simulation(parse_config(text))

    assert plan.evaluation_data is not None and len(plan.evaluation_data) == 3
    whole = plan_simulation(parse_config({"data": {"dataset": "iris", "nodes": 3}, "run": {"rounds": 1}}))
    for fit, held, part in zip(plan.partitions, plan.evaluation_data, whole.partitions, strict=True):
        assert len(fit) + len(held) == len(part)
        assert len(held) == round(0.25 * len(part))
