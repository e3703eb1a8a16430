"""Build the task handler a deployed node runs from its config and loaded datasets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fedlearn.client.allocator import retain_freed_memory
from fedlearn.client.contract import DataContract
from fedlearn.client.learners import build_learner
from fedlearn.client.node_app import Handler, NodeApp
from fedlearn.client.threads import BlasThreads
from fedlearn.core.messages import EVALUATE, FIT, Reply, Task
from fedlearn.data.dataset import Dataset
from fedlearn.runtime.audit import AuditLog, Describe
from fedlearn.runtime.node_config import NodeConfig


@dataclass(frozen=True, slots=True)
class PinnedNode:
    """A node whose numeric work runs with a fixed BLAS thread count, as in simulation."""

    app: NodeApp
    threads: BlasThreads

    def handle(self, task: Task) -> Reply:
        with self.threads():
            return self.app.handle(task)


def build_node(
    name: str,
    config: NodeConfig,
    datasets: Mapping[str, Dataset],
    *,
    handlers: Mapping[str, Handler] | None = None,
    describe: Mapping[str, Describe] | None = None,
) -> PinnedNode:
    """The node's trainer (if it trains) on its training rows, its evaluator on held-out rows, and extra handlers.

    With ``[policy] audit_log`` every task is recorded there before its reply leaves; ``describe``
    says what the extra handlers' tasks touch (fit and evaluate tasks touch the training dataset).
    """
    retain_freed_memory()
    trainer = evaluator = contract = None
    rows = config.fit_and_evaluation_rows(datasets)
    if rows is not None and config.node.learner is not None:
        fit_rows, evaluation_rows = rows
        learner = build_learner(config.node.learner, fit_rows, **config.node.learner_options)
        trainer = learner.trainer(fit_rows)
        evaluator = learner.trainer(evaluation_rows) if evaluation_rows is not None else None
        contract = DataContract(param_spec=learner.init_params(0).spec(), feature_names=fit_rows.feature_names)
    audit = None
    if config.policy.audit_log is not None:
        audit = AuditLog(
            config.policy.audit_log, node=name, describe={**_training_scopes(config, datasets), **(describe or {})}
        )
        audit.started(config.policy.model_dump(mode="json"))
    app = NodeApp(
        node_id=name,
        trainer=trainer,
        evaluator=evaluator,
        contract=contract,
        handlers=dict(handlers or {}),
        audit=audit,
    )
    return PinnedNode(app=app, threads=BlasThreads(config.node.blas_threads))


def _training_scopes(config: NodeConfig, datasets: Mapping[str, Dataset]) -> dict[str, Describe]:
    """Fit tasks touch the training dataset's features; evaluate tasks its held-out rows or the evaluation dataset."""
    training = config.training_dataset()
    if training is None:
        return {}
    evaluation = config.node.evaluation_dataset or training
    held_out = config.node.holdout_fraction is not None

    def fit(task: Task, reply: Reply) -> Mapping[str, Any]:
        return {"dataset": training, "columns": list(datasets[training].feature_names)}

    def evaluate(task: Task, reply: Reply) -> Mapping[str, Any]:
        return {"dataset": evaluation, "columns": list(datasets[evaluation].feature_names), "held_out": held_out}

    return {FIT: fit, EVALUATE: evaluate}
