"""Exact federated analytics under secure aggregation: the coordinator sees pooled sums, never one node's.

:class:`AnalyticsJob` gathers one summary per member and merges them, so the coordinator holds every
member's statistics. :class:`SecureAnalyticsJob` never does: each pooled statistic is a SecAgg+ round
(:class:`~fedlearn.engine.secure_round.SecureRound`) whose nodes mask their moments as plain sums
(:mod:`~fedlearn.analytics.secure_moments`), encoded exactly (:mod:`~fedlearn.privacy.exact`). Two
rounds give the pooled summary: counts and sums first, then co-moments about the pooled means. The
models solved from it (linear and ridge regression, PCA, Gaussian naive Bayes, LDA, QDA, describe)
equal those of the pooled data to 1e-9 and better on well-conditioned data.

What is different from the job in the clear, and why:

- Exactness needs every member, and secure aggregation hides who held what: a member that drops
  out fails the round (``dropout_fraction`` is 0), and a job needs at least three members, since
  with two each could subtract its own statistics from the sum and read the other's.
- No extrema (values of single rows) and no R factor (not a sum): estimators solve from the
  co-moments, whose rounding grows with ``cond(X)²`` rather than ``cond(X)``.
- The classes of a classification job are declared up front: a set of labels is not a sum.
- Rows are not added or removed incrementally: the summary is computed afresh from the members'
  current data whenever it is asked for after a change (:meth:`refresh`), since a member's own
  change would otherwise be visible as the difference of two sums it alone caused.
- Logistic regression's Newton steps would each be one more secure round; they are not offered yet.

Without a ``fleet`` the job simulates its members in process, each with a fresh identity key and
the same handlers a deployed node mounts.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np

from fedlearn.analytics._base import SummaryEstimator
from fedlearn.analytics.handlers import SCHEMA, SECURE_MOMENTS, analytics_handlers
from fedlearn.analytics.policy import DEFAULT_POLICY, DisclosurePolicy
from fedlearn.analytics.secure_moments import SecureMomentsLayout, pooled_summary, read_first_pass
from fedlearn.analytics.sources import DEFAULT_CHUNK_ROWS, TYPES, Table, as_table
from fedlearn.analytics.summary import Summary, SummarySpec
from fedlearn.client.node_app import NodeApp
from fedlearn.client.secure_aggregation import SecureAggregationNode
from fedlearn.core.checks import POSITIVE, Options, check, check_real
from fedlearn.core.errors import ConfigError
from fedlearn.core.limits import DEFAULT_REORDER_BUFFER_BYTES
from fedlearn.core.messages import Task
from fedlearn.core.params import ParamSet
from fedlearn.engine.fleet import Fleet
from fedlearn.engine.secure_round import SecureRound, SecureSum
from fedlearn.engine.stage import Gather
from fedlearn.privacy.graph import MIN_NODES
from fedlearn.privacy.keys import generate_identity, identity_key
from fedlearn.privacy.protocol import SecureAggregation
from fedlearn.simulation.inprocess import InProcessFleet

EXACT = SecureAggregation(dropout_fraction=0.0)
"""Every member must survive each round: an exact pooled statistic needs all of them."""


class SecureAnalyticsJob:
    """Join members, then fit models from the pooled summary that secure aggregation sums for them.

    Over a ``fleet``, members are nodes and ``identity_keys`` their registered identity keys (the
    coordinator's store, or a mapping); in simulation, members are given their data at :meth:`join`.
    """

    def __init__(
        self,
        *,
        columns: Sequence[str],
        target: str | None = None,
        task: Literal["regression", "classification"] = "regression",
        classes: Sequence[int] = (),
        fleet: Fleet | None = None,
        identity_keys: Mapping[str, bytes] | None = None,
        timeout: float = 60.0,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        check("task", task, Options(("regression", "classification")))
        spec = SummarySpec(columns=tuple(columns), target=target, by_class=task == "classification")
        self.layout = SecureMomentsLayout(spec, tuple(int(c) for c in classes))
        self.timeout = check_real("timeout", timeout, POSITIVE)
        if fleet is not None and identity_keys is None:
            raise ConfigError("over a fleet, a secure job needs the members' registered `identity_keys`")
        self._fleet = fleet
        self._identities: dict[str, bytes] = dict(identity_keys or {})
        self._chunk_rows = chunk_rows
        self._members: dict[str, str] = {}
        self._simulated: dict[str, NodeApp] = {}
        self._rounds = itertools.count(1)
        self._run_id = f"secure-analytics-{uuid.uuid4().hex}"
        self._graph_seed = secrets.randbits(63)
        self._summary: Summary | None = None
        self.rounds: list[SecureSum] = []
        """Each secure round's outcome: how many members were summed, and any failures."""

    @property
    def spec(self) -> SummarySpec:
        return self.layout.spec

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self._members)

    def join(self, node_id: str, data: object, *, policy: DisclosurePolicy = DEFAULT_POLICY) -> None:
        """Add a member. Nothing is asked of it yet: its rows count only inside the next pooled sum.

        ``data`` names a dataset on the node over a fleet; in simulation it is the node's data
        itself, and ``policy`` that simulated node's disclosure policy.
        """
        if node_id in self._members:
            raise ConfigError(f"node {node_id!r} has already joined")
        if self._fleet is None:
            if isinstance(data, str):
                raise ConfigError("in simulation, pass the node's data itself (a Dataset, table or column mapping)")
            self._simulate(node_id, as_table(data, target=self.spec.target or "y"), policy)
            data = "main"
        elif not isinstance(data, str):
            raise ConfigError(f"over a fleet, data must be a dataset name on the node; got {type(data).__name__}")
        self._members[node_id] = data
        self._summary = None

    def leave(self, node_id: str) -> None:
        if node_id not in self._members:
            raise ConfigError(f"node {node_id!r} has not joined; members are {list(self._members)}")
        del self._members[node_id]
        self._simulated.pop(node_id, None)
        self._summary = None

    def refresh(self) -> None:
        """Forget the pooled summary: members' data changed, so the next use sums it afresh."""
        self._summary = None

    @property
    def summary(self) -> Summary:
        """The pooled summary, from two secure rounds over every member (cached until membership changes)."""
        if self._summary is None:
            self._summary = self._pooled()
        return self._summary

    def inspect(self) -> dict[str, dict[str, str]]:
        """Each member's column types (types are not rows: they are asked in the clear) by node."""
        columns = self.spec.all_columns
        tasks = {
            node: Task(kind=SCHEMA, round=next(self._rounds), run_id=self._run_id,
                       config={"dataset": dataset, "columns": json.dumps(list(columns))})
            for node, dataset in self._members.items()
        }  # fmt: skip
        with self._nodes() as fleet:
            replies = list(Gather(fleet, tasks, quorum=len(tasks), timeout=self.timeout, label=SCHEMA))
        return {
            r.node_id: {c: TYPES[int(code)] for c, code in zip(columns, r.params["types"], strict=True)}
            for r in replies
        }

    def fit(self, estimator: SummaryEstimator) -> SummaryEstimator:
        """Fit ``estimator`` from the pooled summary; iterative models are not offered under secure aggregation."""
        if not isinstance(estimator, SummaryEstimator):
            raise ConfigError(
                f"under secure aggregation, models are solved from the pooled summary; {type(estimator).__name__} "
                "is not (logistic regression's Newton rounds are not offered under secure aggregation yet)"
            )
        return estimator.fit_summary(self.summary)

    # plumbing ----------------------------------------------------------------------------

    def _pooled(self) -> Summary:
        if len(self._members) < MIN_NODES:
            raise ConfigError(
                f"a secure job needs at least {MIN_NODES} members (with two, each could subtract its own "
                f"statistics from the sum and read the other's); it has {len(self._members)}"
            )
        base: dict[str, Any] = {"spec": self.spec.to_json(), "classes": json.dumps(list(self.layout.classes))}
        first_sums = self._sum({**base, "pass": 1}, ParamSet(), self.layout.first_length)
        first = read_first_pass(first_sums, self.layout)
        pooled_means = ParamSet({"mean": first.mean, "class_means": first.class_means})
        second_sums = self._sum({**base, "pass": 2}, pooled_means, self.layout.second_length)
        return pooled_summary(first, second_sums, self.layout)

    def _sum(self, config: Mapping[str, Any], params: ParamSet, length: int) -> np.ndarray:
        members = list(self._members)
        configs = {node: {**config, "dataset": self._members[node]} for node in members}
        with self._nodes() as fleet:
            secure = SecureRound(
                fleet,
                EXACT,
                identity_keys=self._identities,
                graph_seed=self._graph_seed,
                run_id=self._run_id,
                timeout=self.timeout,
                min_replies=len(members),
                clock=time.monotonic,
                buffer_bytes=DEFAULT_REORDER_BUFFER_BYTES,
            )
            outcome = secure.sum_exact(next(self._rounds), members, kind=SECURE_MOMENTS, configs=configs,
                                       params=params, length=length)  # fmt: skip
        self.rounds.append(outcome)
        return outcome.values

    @contextmanager
    def _nodes(self) -> Iterator[Fleet]:
        """The fleet for one stage: the job's own, or its simulated members in process (closed after)."""
        if self._fleet is not None:
            yield self._fleet
            return
        fleet = InProcessFleet(list(self._simulated), self._simulated.__getitem__)
        try:
            yield fleet
        finally:
            fleet.close()

    def _simulate(self, node_id: str, table: Table, policy: DisclosurePolicy) -> None:
        identity = generate_identity()
        self._identities[node_id] = identity_key(identity)
        handlers = {
            **analytics_handlers({"main": table}, policy=policy, chunk_rows=self._chunk_rows),
            **SecureAggregationNode(identity).handlers(),
        }
        self._simulated[node_id] = NodeApp(node_id=node_id, handlers=handlers)
