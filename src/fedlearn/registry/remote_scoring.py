"""The coordinator's side of federated scoring and evaluation: one registered version over the live fleet.

``POST /api/models/{ref}/score`` and ``POST /api/models/{ref}/evaluate`` run these while the
coordinator holds the nodes (as analytics requests do). Every node named, or every node connected,
gets the version's package and the request; the answer is per node (counts and metrics, or the
node's refusal) and pooled. Evaluation pools the nodes' sums, so the pooled metrics are those of
the pooled rows (:mod:`~fedlearn.registry.federated_metrics`). No answer holds a row.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.core.messages import EVALUATE_MODEL, SCORE, Reply, Task
from fedlearn.engine.fleet import Fleet
from fedlearn.engine.stage import Gather
from fedlearn.registry.federated_metrics import EvaluationSums, check_bins
from fedlearn.registry.fleet_contract import EvaluateRequest, ScoreRequest
from fedlearn.registry.node_scoring import model_task_config
from fedlearn.registry.package import ModelPackage

MAX_SCORE_METRICS = 10_000
"""Metrics one scoring reply may carry (a few per class): more is a hostile node."""


def target_nodes(requested: Sequence[str] | None, connected: Sequence[str]) -> list[str]:
    """The nodes to ask: those requested, all connected, or a clear refusal naming who is missing."""
    if requested is None:
        if not connected:
            raise ConfigError("no node is connected, so there is nobody to ask")
        return list(connected)
    if not requested or len(set(requested)) != len(requested):
        raise ConfigError(f"`nodes` must list distinct node names; got {requested!r}")
    absent = [n for n in requested if n not in connected]
    if absent:
        raise ConfigError(f"node(s) {absent} are not connected; connected: {sorted(connected)}")
    return list(requested)


def run_scoring(package: ModelPackage, request: ScoreRequest, fleet: Fleet, nodes: Sequence[str]) -> dict[str, Any]:
    """Ask every node to score; per-node counts and metrics, and their totals."""
    request.check()
    config = {**model_task_config(package), "dataset": request.dataset, "write": request.write,
              "keys": json.dumps(request.keys), "restart": request.restart}  # fmt: skip
    replies, failures = _ask(fleet, nodes, SCORE, package, config, request.timeout, _check_score_reply)
    per_node: dict[str, Any] = {}
    totals = {"rows_scored": 0, "rows_skipped": 0}
    for node in nodes:
        if node in replies:
            metrics = dict(replies[node].metrics)
            for key in totals:
                totals[key] += int(metrics.get(key, 0))
            per_node[node] = {"ok": True, "error": None, **_scoring_entry(package, metrics)}
        else:
            per_node[node] = {"ok": False, "error": failures.get(node, "no reply")}
    return {
        "model": package.ref,
        "dataset": request.dataset,
        "table": request.write,
        "nodes": per_node,
        "pooled": {**totals, "nodes_ok": len(replies), "nodes_failed": len(nodes) - len(replies)},
    }


def run_evaluation(
    package: ModelPackage, request: EvaluateRequest, fleet: Fleet, nodes: Sequence[str]
) -> dict[str, Any]:
    """Ask every node for its evaluation sums; per-node metrics, and the metrics of the pooled sums."""
    bins = check_bins(request.bins, package.n_classes) if package.task == "classification" else 0
    config = {**model_task_config(package), "dataset": request.dataset, "bins": bins}

    def sums_of(reply: Reply) -> EvaluationSums:
        return EvaluationSums.from_params(reply.params, task=package.task, n_classes=package.n_classes, bins=bins)

    replies, failures = _ask(fleet, nodes, EVALUATE_MODEL, package, config, request.timeout, sums_of)
    per_node: dict[str, Any] = {}
    pooled: EvaluationSums | None = None
    for node in nodes:
        if node not in replies:
            per_node[node] = {"ok": False, "error": failures.get(node, "no reply")}
            continue
        sums = sums_of(replies[node])
        pooled = sums if pooled is None else pooled + sums
        held_out = bool(replies[node].metrics.get("heldout", 0.0))
        per_node[node] = {"ok": True, "error": None, "held_out": held_out, **sums.metrics()}
    return {
        "model": package.ref,
        "dataset": request.dataset,
        "task": package.task,
        "classes": list(package.classes),
        "bins": bins,
        "nodes": per_node,
        "pooled": None if pooled is None else {"nodes_ok": len(replies), **pooled.metrics()},
    }


def _ask(
    fleet: Fleet, nodes: Sequence[str], kind: str, package: ModelPackage, config: dict[str, Any], timeout: float,
    validate: Any,
) -> tuple[dict[str, Reply], dict[str, str]]:  # fmt: skip
    run_id = f"{kind}-{uuid.uuid4().hex[:12]}"
    tasks = {node: Task(kind=kind, round=0, params=package.params, config=config, run_id=run_id) for node in nodes}
    gather = Gather(fleet, tasks, quorum=0, timeout=timeout, validate=validate, label=kind)
    replies = {reply.node_id: reply for reply in gather}
    return replies, dict(gather.report.failures)


def _check_score_reply(reply: Reply) -> None:
    metrics = reply.metrics
    if len(metrics) > MAX_SCORE_METRICS:
        raise ValidationError(f"a scoring reply carries {len(metrics)} metrics; at most {MAX_SCORE_METRICS}")
    for key in ("rows_scored", "rows_skipped"):
        value = metrics.get(key)
        if value is None or value < 0 or value != int(value):
            raise ValidationError(f"a scoring reply's `{key}` must be a count; got {value!r}")


def _scoring_entry(package: ModelPackage, metrics: dict[str, float]) -> dict[str, Any]:
    entry: dict[str, Any] = {"rows_scored": int(metrics["rows_scored"]), "rows_skipped": int(metrics["rows_skipped"])}
    if package.task == "classification":
        counts = {}
        for index, label in enumerate(package.classes):
            value = metrics.get(f"predicted/{index}")
            if value is not None:
                counts[str(label)] = int(value)
        entry["predicted"] = counts
        entry["suppressed"] = int(metrics.get("suppressed", 0))
    else:
        entry["prediction_mean"] = metrics.get("prediction_mean")
    return entry
