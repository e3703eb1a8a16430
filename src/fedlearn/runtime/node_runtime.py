"""Build the task handler a deployed node runs from its config and loaded datasets."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedlearn.client.allocator import retain_freed_memory
from fedlearn.client.budget import NodeBudget
from fedlearn.client.byzantine import OwnShards, byzantine_trainer
from fedlearn.client.contract import DataContract
from fedlearn.client.learners import build_learner
from fedlearn.client.node_app import Handler, NodeApp, fit_what
from fedlearn.client.node_privacy import NodePrivacy, system_noise
from fedlearn.client.secure_aggregation import SecureAggregationNode
from fedlearn.client.threads import BlasThreads
from fedlearn.client.trainer import Learner, Trainer
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import EVALUATE, FIT, SECAGG_MASKED_INPUT, Reply, Task
from fedlearn.data.dataset import Dataset
from fedlearn.runtime.audit import AuditLog, Describe
from fedlearn.runtime.identity import load_or_create_identity, load_registry, public_key_hex
from fedlearn.runtime.node_config import NodeConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SecureAggregationSetup:
    """The secure-aggregation stage handlers of a node and the public identity key it presents."""

    handlers: Mapping[str, Handler]
    identity_key: bytes


def secure_aggregation_setup(name: str, config: NodeConfig, config_dir: Path) -> SecureAggregationSetup | None:
    """Load (or make, on the first start) the node's identity key and its pinned peers, if it has them.

    Every node takes part in secure aggregation unless it cannot keep a key: a node whose config
    says nothing of it and whose default key file cannot be made (a read-only config directory)
    runs without it, with a warning, rather than not at all. Anything configured must work.
    """
    section = config.secure_aggregation
    path = section.identity_path(name, config_dir)
    try:
        identity, created = load_or_create_identity(path)
    except ConfigError as exc:
        if section.identity_key is not None or section.peers is not None or section.require:
            raise
        logger.warning("node %s: takes no part in secure aggregation: %s", name, exc)
        return None
    fingerprint = public_key_hex(identity)
    logger.info("node %s: identity key %s (%s%s)", name, fingerprint, "made now in " if created else "", path)
    registry = None
    if section.peers is not None:
        registry = load_registry(section.peers)
        if registry.get(name) != bytes.fromhex(fingerprint):
            raise ConfigError(
                f"{section.peers} does not pin this node's own identity key {fingerprint} under {name!r}; "
                "it was written for another key or another federation"
            )
        logger.info("node %s: peers' identity keys pinned from %s (%d nodes)", name, section.peers, len(registry))
    node = SecureAggregationNode(identity, registry)
    return SecureAggregationSetup(handlers=node.handlers(), identity_key=bytes.fromhex(fingerprint))


def node_privacy(name: str, config: NodeConfig, config_dir: Path | None) -> NodePrivacy:
    """The node's ``[privacy]`` policy, with its lifetime budget opened from its ledger (made on the first start).

    A ledger that cannot be read stops the node here, with the reason: it never starts on a fresh budget.
    """
    section = config.privacy
    budget = None
    if section.epsilon_budget is not None:
        if section.ledger is None and config_dir is None:
            raise ConfigError("[privacy] epsilon_budget needs a ledger file: set [privacy] ledger")
        path = section.ledger_path(name, config_dir or Path())
        budget = NodeBudget.open(path, epsilon=section.epsilon_budget, delta=section.delta)
        logger.info(
            "node %s: privacy budget ε = %g at δ = %g, %.4g spent so far (ledger %s)",
            name, budget.budget, budget.delta, budget.epsilon(), path,
        )  # fmt: skip
    return NodePrivacy(
        budget=budget,
        delta=section.delta,
        require_differential_privacy=section.require_differential_privacy,
        min_noise_multiplier=section.min_noise_multiplier,
    )


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
    config_dir: Path | None = None,
    privacy: NodePrivacy | None = None,
) -> PinnedNode:
    """The node's trainer (if it trains) on its training rows, its evaluator on held-out rows, and extra handlers.

    With ``[policy] audit_log`` every task is recorded there before its reply leaves; ``describe``
    says what the extra handlers' tasks touch (fit and evaluate tasks touch the training dataset).
    ``[privacy]`` sets the node's DP policy and budget, whose ledger defaults to a file beside the
    config in ``config_dir``; the noise the node adds comes from the OS's secure source. A caller
    whose analytics handlers charge the same budget opens it once with :func:`node_privacy` and
    passes it as ``privacy``.
    """
    retain_freed_memory()
    if privacy is None:
        privacy = node_privacy(name, config, config_dir)
    trainer = evaluator = contract = None
    rows = config.fit_and_evaluation_rows(datasets)
    if rows is not None and config.node.learner is not None:
        fit_rows, evaluation_rows = rows
        learner = build_learner(config.node.learner, fit_rows, **config.node.learner_options)
        trainer = learner.trainer(fit_rows)
        if config.attack is not None:
            trainer = _attacking_trainer(name, config, learner, fit_rows)
        evaluator = learner.trainer(evaluation_rows) if evaluation_rows is not None else None
        contract = DataContract(param_spec=learner.init_params(0).spec(), feature_names=fit_rows.feature_names)
    audit = None
    if config.policy.audit_log is not None:
        audit = AuditLog(
            config.policy.audit_log,
            node=name,
            describe={**_training_scopes(config, datasets, privacy), **(describe or {})},
        )
        audit.started({**config.policy.model_dump(mode="json"), "privacy": _privacy_record(config, privacy)})
    app = NodeApp(
        node_id=name,
        trainer=trainer,
        evaluator=evaluator,
        contract=contract,
        handlers=dict(handlers or {}),
        audit=audit,
        require_secure_aggregation=config.secure_aggregation.require,
        privacy=privacy,
        noise=system_noise,
    )
    return PinnedNode(app=app, threads=BlasThreads(config.node.blas_threads))


def _attacking_trainer(name: str, config: NodeConfig, learner: Learner, rows: Dataset) -> Trainer:
    """The node's trainer wrapped by its ``[attack]``, announced loudly: only a red-team exercise should attack."""
    section = config.attack
    assert section is not None
    attack = section.build()
    benign = OwnShards.split(learner, rows, shards=section.shards, seed=section.seed) if attack.uses_benign else None
    logger.warning(
        "node %s: RED-TEAM EXERCISE: this node is Byzantine. Its [attack] section makes it send %s updates "
        "instead of honest ones. Remove [attack] from its config unless this is an agreed exercise.",
        name,
        attack.describe(),
    )
    return byzantine_trainer(name, learner, rows, attack, seed=section.seed, benign=benign)


def _privacy_record(config: NodeConfig, privacy: NodePrivacy) -> dict[str, Any]:
    """The ``[privacy]`` policy in force, and ε spent so far, for the audit log's start record."""
    record: dict[str, Any] = config.privacy.model_dump(mode="json")
    if isinstance(privacy.budget, NodeBudget):
        record["epsilon_spent"] = privacy.budget.epsilon()
    return record


def _training_scopes(config: NodeConfig, datasets: Mapping[str, Dataset], privacy: NodePrivacy) -> dict[str, Describe]:
    """Fit tasks touch the training dataset's features; evaluate tasks its held-out rows or the evaluation dataset.

    A fit task that was charged to the node's budget also records the ε it added and the node's ε after it.
    """
    training = config.training_dataset()
    if training is None:
        return {}
    evaluation = config.node.evaluation_dataset or training
    held_out = config.node.holdout_fraction is not None

    def fit(task: Task, reply: Reply) -> Mapping[str, Any]:
        touched: dict[str, Any] = {"dataset": training, "columns": list(datasets[training].feature_names)}
        spent = privacy.budget.spent_for(fit_what(task)) if isinstance(privacy.budget, NodeBudget) else None
        if spent is not None:
            touched["epsilon_charged"], touched["epsilon"] = spent
        return touched

    def evaluate(task: Task, reply: Reply) -> Mapping[str, Any]:
        return {"dataset": evaluation, "columns": list(datasets[evaluation].feature_names), "held_out": held_out}

    return {FIT: fit, SECAGG_MASKED_INPUT: fit, EVALUATE: evaluate}
