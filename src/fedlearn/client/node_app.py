"""The node side of every task, shared by the simulator and the networked node agent.

``NodeApp.handle`` turns one ``Task`` into one ``Reply``: ``fit`` and ``evaluate`` go to the
node's ``Trainer``; other kinds (analytics summaries, secure-aggregation stages) go to handlers
registered at construction. A node must outlive bad tasks, so any exception becomes a reply with
``error`` set to one line naming the exception and its cause, and the traceback goes to the node's
log at INFO level.

Differential privacy is the node's own policy (``privacy``, :mod:`fedlearn.client.node_privacy`):
a fit task with ``dp.*`` keys is checked against it and charged to the node's budget before the
trainer runs, and its update is clipped, and noised under local DP, before it leaves. ``noise``
makes the noise source for a task: seeded from the task's seed by default, as simulation needs;
a deployed node passes :func:`~fedlearn.client.node_privacy.system_noise`.

An optional ``audit`` hook sees every task with the reply it got, refusals included, before the
reply leaves the node; the node's audit log (``fedlearn.runtime.audit``) is one. The app itself
writes no files.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from fedlearn.client.contract import DataContract
from fedlearn.client.momentum import with_momentum
from fedlearn.client.node_privacy import (
    MaskedSum,
    NodePrivacy,
    NoiseFactory,
    add_local_noise,
    clip_update,
    seeded_noise,
)
from fedlearn.client.trainer import NodeState, Trainer
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import CLIENT_MOMENTUM_KEY, EVALUATE, FIT, HELDOUT_METRIC, Reply, Task
from fedlearn.core.validation import validate_metrics, validate_num_examples, validate_params
from fedlearn.privacy.ledger import Charge

logger = logging.getLogger(__name__)


class Handler(Protocol):
    """Answers one task kind; it receives the app for the node id, trainer and state."""

    def __call__(self, task: Task, node: NodeApp, /) -> Reply: ...


class AuditHook(Protocol):
    """Records one answered task and its reply. Raising withholds the reply: nothing unrecorded is released."""

    def __call__(self, task: Task, reply: Reply, /) -> None: ...


_MAX_ERROR_CHARS = 500
_CLEAR_REFUSED = (
    "this node requires secure aggregation and refuses to send its update in the clear; "
    "enable [privacy.secure_aggregation] in the run config"
)
_UNRECORDED = "the node could not record this task in its audit log, so it released nothing"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeApp:
    """One node: its id, its trainers, the state it keeps between rounds and extra task handlers.

    ``trainer`` may be ``None`` for a node that only answers other kinds, such as analytics.
    ``evaluator`` is a trainer bound to rows held out from training; evaluate tasks use it, so
    federated metrics measure the model on data it did not learn from. Without one they fall back
    to ``trainer``'s training rows, and every evaluate reply says which it used (``heldout``).
    ``contract`` describes the node's data; a fit or evaluate task that does not fit it is refused.
    ``audit`` is called with every task and its reply before the reply is returned.
    ``require_secure_aggregation`` makes the node refuse plain fit tasks: its updates leave it only
    masked, through the secure-aggregation stages (``fedlearn.client.secure_aggregation``).
    ``privacy`` is the node's differential-privacy policy and budget; ``noise`` the source of the
    noise it adds (seeded from each task's seed unless given: pass ``system_noise`` when deployed).
    """

    node_id: str
    trainer: Trainer | None = None
    evaluator: Trainer | None = None
    contract: DataContract | None = None
    state: NodeState = field(default_factory=dict)
    handlers: Mapping[str, Handler] = field(default_factory=dict)
    audit: AuditHook | None = None
    require_secure_aggregation: bool = False
    privacy: NodePrivacy = field(default_factory=NodePrivacy)
    noise: NoiseFactory = seeded_noise

    def __post_init__(self) -> None:
        if not self.node_id:
            raise ConfigError("`node_id` must be a non-empty string")
        if self.evaluator is not None and self.trainer is None:
            raise ConfigError("`evaluator` needs a `trainer`: a node that does not train has nothing to evaluate")
        shadowed = sorted({FIT, EVALUATE} & set(self.handlers))
        if shadowed:
            raise ConfigError(f"`handlers` must not replace the built-in task kinds; got handlers for {shadowed}")
        object.__setattr__(self, "handlers", MappingProxyType(dict(self.handlers)))

    @property
    def kinds(self) -> tuple[str, ...]:
        """Every task kind this node answers."""
        built_in = (FIT, EVALUATE) if self.trainer is not None else ()
        return (*built_in, *sorted(self.handlers))

    def handle(self, task: Task) -> Reply:
        """Answer ``task``; never raises for anything the task, the trainer or the audit hook does wrong."""
        reply = self._answer(task)
        if self.audit is None:
            return reply
        try:
            self.audit(task, reply)
        except Exception:  # an unrecorded answer must not leave the node
            logger.error(
                "node %s: %s task of round %d not recorded; reply withheld",
                self.node_id,
                task.kind,
                task.round,
                exc_info=True,
            )
            return self._error(task, _UNRECORDED)
        return reply

    def _answer(self, task: Task) -> Reply:
        try:
            refusal = self.contract.refusal(task) if self.contract is not None else None
            if refusal is not None:
                return self._error(task, refusal)
            if task.kind == FIT and self.require_secure_aggregation:
                return self._error(task, _CLEAR_REFUSED)
            if task.kind in (FIT, EVALUATE) and self.trainer is not None:
                return self._fit(task, self.trainer) if task.kind == FIT else self._evaluate(task, self.trainer)
            handler = self.handlers.get(task.kind)
            if handler is None:
                return self._error(task, f"unknown task kind {task.kind!r}; this node handles {list(self.kinds)}")
            reply = handler(task, self)
            if not isinstance(reply, Reply):
                return self._error(task, f"handler for {task.kind!r} returned {type(reply).__name__}, not a Reply")
            return reply
        except Exception as exc:  # the node must survive any task; the reason travels back
            # INFO, not ERROR: a failed task is an expected outcome and the reason travels back;
            # operators who want the traceback turn on INFO logging for this module.
            logger.info("node %s: %s task of round %d failed", self.node_id, task.kind, task.round, exc_info=True)
            return self._error(task, _one_line(exc))

    def train(self, task: Task, *, masked: MaskedSum) -> Reply:
        """Run a fit task locally and return its reply, for a protocol stage that trains (secure aggregation).

        The reply does not leave the node as it is; the caller encodes or masks it first, into the
        secure sum ``masked`` describes (its DP is checked against that).
        """
        if self.trainer is None:
            return self._error(task, "this node has no trainer, so it cannot train")
        try:
            return self._fit(task, self.trainer, masked=masked)
        except Exception as exc:  # the caller turns a failure into its own refusal
            logger.info("node %s: training for round %d failed", self.node_id, task.round, exc_info=True)
            return self._error(task, _one_line(exc))

    def _fit(self, task: Task, trainer: Trainer, *, masked: MaskedSum | None = None) -> Reply:
        admitted = self.privacy.admit(  # before any computation
            task, what=fit_what(task), masked=masked, record_level=_dp_sgd_charge(trainer, task)
        )
        config = {k: v for k, v in task.config.items() if k != CLIENT_MOMENTUM_KEY}  # the node's, not the trainer's
        if task.extras:
            result = trainer.fit(task.params, config, self.state, extras=task.extras)
        else:  # trainers written without an ``extras`` parameter keep working
            result = trainer.fit(task.params, config, self.state)
        # Catch a broken trainer here, with a local message, rather than as a rejection upstream.
        validate_params(result.params, task.params.spec(), what="trained parameters")
        params = result.params
        if CLIENT_MOMENTUM_KEY in task.config:
            beta = task.config[CLIENT_MOMENTUM_KEY]
            params = with_momentum(params, task.params, self.state, beta=beta, run_id=task.run_id)
        if admitted is not None and admitted.request is not None:  # clipped, and noised under local DP, last
            request = admitted.request
            if request.clip is not None:  # None: the coordinator clips (plain central DP)
                params = clip_update(params, task.params, request.clip)
            if request.mechanism == "local":
                assert request.noise_stddev is not None
                params = add_local_noise(params, request.noise_stddev, self.noise(task))
        return Reply(
            node_id=self.node_id,
            kind=task.kind,
            round=task.round,
            params=params,
            num_examples=validate_num_examples(result.num_examples),
            metrics=validate_metrics(result.metrics),
            extras=result.extras,
        )

    def _evaluate(self, task: Task, trainer: Trainer) -> Reply:
        heldout = self.evaluator is not None
        result = (self.evaluator or trainer).evaluate(task.params, task.config)
        return Reply(
            node_id=self.node_id,
            kind=task.kind,
            round=task.round,
            num_examples=validate_num_examples(result.num_examples),
            metrics=validate_metrics({**result.metrics, "loss": result.loss, HELDOUT_METRIC: float(heldout)}),
        )

    def _error(self, task: Task, reason: str) -> Reply:
        return Reply(node_id=self.node_id, kind=task.kind, round=task.round, error=reason)


def fit_what(task: Task) -> str:
    """How a node's budget log names the training for ``task``: the same for a plain fit and a masked input."""
    return f"fit task of run {task.run_id!r}, round {task.round}"


def _one_line(exc: Exception) -> str:
    """``ExcType: first line of the message``, bounded so a reply stays small."""
    message = str(exc).strip()
    reason = f"{type(exc).__name__}: {message.splitlines()[0] if message else '(no message)'}"
    return reason if len(reason) <= _MAX_ERROR_CHARS else reason[: _MAX_ERROR_CHARS - 3] + "..."


def _dp_sgd_charge(trainer: Trainer, task: Task) -> Charge | None:
    """The charge of the DP-SGD ``trainer`` will run for ``task`` (``TorchTrainer.dp_sgd_charge``), or None."""
    charge_of = getattr(trainer, "dp_sgd_charge", None)
    return None if charge_of is None else charge_of(task.config)
