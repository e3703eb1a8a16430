"""The coordinator side: an analytics job over any ``Fleet``.

A job fixes what is summarised (a :class:`SummarySpec`), gathers one summary per member node
and keeps them, so every model is then solved from their merge in milliseconds. Members can add
or remove rows later; only that node is asked for the summary of the changed rows, and the
others are never touched. Iterative models (logistic regression) run one round per Newton step.

Exactness needs every member: each stage's quorum is all the nodes it asks, and a node that
refuses (privacy guard) or fails stops the operation with that node's reason.

Without a ``fleet`` the job simulates its nodes in process: ``join(node, data)`` hands the data
to a virtual node that answers through the same handlers, tasks and replies as a real one.
"""

from __future__ import annotations

import itertools
import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

import numpy as np

from fedlearn.analytics._base import SummaryEstimator
from fedlearn.analytics.handlers import LOGISTIC_STEP, SCHEMA, SUMMARIZE, analytics_handlers
from fedlearn.analytics.histogram import Histogram, HistogramSpec
from fedlearn.analytics.logistic import FeatureScaling, FederatedLogisticRegression, NewtonStats
from fedlearn.analytics.moments import Moments, merge_all
from fedlearn.analytics.policy import DEFAULT_POLICY, DisclosurePolicy
from fedlearn.analytics.rfactor import RFactor
from fedlearn.analytics.sources import DEFAULT_CHUNK_ROWS, TYPES, ArrayTable, Table, as_table
from fedlearn.analytics.summary import Summary, SummarySpec
from fedlearn.client.node_app import NodeApp
from fedlearn.core.checks import POSITIVE, Options, check, check_real
from fedlearn.core.errors import ConfigError, FedlearnError, PrivacyError, QuorumError, ValidationError
from fedlearn.core.messages import Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.engine.fleet import Fleet
from fedlearn.engine.stage import Gather
from fedlearn.simulation.inprocess import InProcessFleet

E = TypeVar("E")
L = TypeVar("L", bound=FederatedLogisticRegression)
MAIN = "main"


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    node_id: str
    dataset: str
    summary: Summary


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberReport:
    node_id: str
    dataset: str
    rows: int
    types: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobReport:
    """What ``inspect`` found: members, their row counts and whether their schemas agree."""

    columns: tuple[str, ...]
    members: tuple[MemberReport, ...]
    problems: tuple[str, ...] = field(default=())

    @property
    def total_rows(self) -> int:
        return sum(m.rows for m in self.members)

    @property
    def schema_agrees(self) -> bool:
        return not self.problems


def schema_problems(columns: Sequence[str], types: Mapping[str, Mapping[str, str]]) -> tuple[str, ...]:
    """Disagreements between nodes' column types, one line each; ``missing`` is absent or withheld by policy."""
    problems = []
    for column in columns:
        seen = {node: t.get(column, "missing") for node, t in types.items()}
        missing = sorted(n for n, t in seen.items() if t == "missing")
        if missing:
            problems.append(f"column {column!r} is not available on {', '.join(missing)}")
        text = sorted(n for n, t in seen.items() if t == "str")
        if text:
            problems.append(f"column {column!r} is text, not numeric, on {', '.join(text)}")
        kinds = {t for t in seen.values() if t not in ("missing", "str")}
        if len(kinds) > 1:
            where = "; ".join(f"{n}: {t}" for n, t in seen.items() if t in kinds)
            problems.append(f"column {column!r} has different types across nodes ({where})")
    return tuple(problems)


class AnalyticsJob:
    """Exact federated analytics: join nodes, inspect them, fit models from their summaries.

    ``task="classification"`` also gathers per-class moments of the features (needed by
    naive Bayes, LDA, QDA and logistic regression); the target must then hold integer codes.
    """

    def __init__(
        self,
        *,
        columns: Sequence[str],
        target: str | None = None,
        task: Literal["regression", "classification"] = "regression",
        histograms: Sequence[HistogramSpec] = (),
        fleet: Fleet | None = None,
        timeout: float = 60.0,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        check("task", task, Options(("regression", "classification")))
        self.spec = SummarySpec(
            columns=tuple(columns), target=target, by_class=task == "classification", histograms=tuple(histograms)
        )
        self.timeout = check_real("timeout", timeout, POSITIVE)  # in seconds; every wait has a deadline
        self._fleet = fleet
        self._chunk_rows = chunk_rows
        self._members: dict[str, Member] = {}
        self._simulated: dict[str, dict[str, Table]] = {}
        self._policies: dict[str, DisclosurePolicy] = {}
        self._rounds = itertools.count(1)
        self._run_id = f"analytics-{uuid.uuid4().hex}"  # a late reply to another job never matches
        self._batches = itertools.count(1)

    # membership --------------------------------------------------------------------------

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self._members)

    def member(self, node_id: str) -> Member:
        if node_id not in self._members:
            raise ConfigError(f"node {node_id!r} has not joined; members are {list(self._members)}")
        return self._members[node_id]

    def join(self, node_id: str, data: object, *, policy: DisclosurePolicy = DEFAULT_POLICY) -> int:
        """Add a node and its summary; returns its row count.

        ``data`` names a dataset on the node when the job runs over a fleet; in simulation it is
        the node's data itself (``Dataset``, table, DataFrame or mapping of columns), and ``policy`` is that
        simulated node's :class:`~fedlearn.analytics.policy.DisclosurePolicy` (a real node's is its own).
        """
        if node_id in self._members:
            raise ConfigError(f"node {node_id!r} has already joined; use add() for more rows")
        if self._fleet is None:
            self._simulated[node_id] = {}
            self._policies[node_id] = policy
        try:
            name = self._place(node_id, data, MAIN)
            summary = self._summaries({node_id: name})[node_id]
        except FedlearnError:
            self._simulated.pop(node_id, None)
            raise
        self._members[node_id] = Member(node_id=node_id, dataset=name, summary=summary)
        return summary.count

    def leave(self, node_id: str) -> None:
        """Drop a member and everything the job holds from it."""
        self.member(node_id)
        del self._members[node_id]
        self._simulated.pop(node_id, None)

    def add(self, node_id: str, batch: object) -> int:
        """Fold in rows a member has added; returns its new row count. Other nodes are not asked.

        Over a fleet, ``batch`` names a dataset on the node holding just the new rows (the node's
        main dataset should include them from now on). In simulation it is the rows themselves.
        """
        member = self.member(node_id)
        name = self._place(node_id, batch, f"added-{next(self._batches)}")
        delta = self._summaries({node_id: name})[node_id]
        if self._fleet is None:  # the simulated data owner keeps the rows, as a real one would
            datasets = self._simulated[node_id]
            datasets[MAIN] = _in_memory(datasets[MAIN]).appended(_in_memory(datasets[name]))
        self._members[node_id] = replace(member, summary=member.summary.merge(delta))
        return self._members[node_id].summary.count

    def remove(self, node_id: str, batch: object) -> int:
        """Take out rows a member has removed; returns its new row count.

        Moments are subtracted exactly; the node also rescans the rows it keeps for counts,
        extrema and the R factor (none of which can be subtracted) and refuses if fewer than its
        threshold would remain. Over a fleet the member's main dataset must already exclude ``batch``.
        """
        member = self.member(node_id)
        name = self._place(node_id, batch, f"removed-{next(self._batches)}")
        if self._fleet is None:  # the simulated data owner deletes the rows first, as a real one would
            datasets = self._simulated[node_id]
            kept = datasets[MAIN]
            datasets[MAIN] = _in_memory(kept).without(_in_memory(datasets[name]))
        try:
            reply = self._stage(
                SUMMARIZE, {node_id: {"dataset": name, "remaining": member.dataset}}, self._check_removal
            )
        except FedlearnError:
            if self._fleet is None:
                datasets[MAIN] = kept
            raise
        params = reply[node_id].params
        delta = Summary.from_params(
            ParamSet({k: v for k, v in params.items() if not k.startswith("remaining/")}), self.spec
        )
        summary = member.summary.subtract(delta).with_rescan(params.select("remaining/"))
        self._members[node_id] = replace(member, summary=summary)
        return summary.count

    # results -----------------------------------------------------------------------------

    @property
    def summary(self) -> Summary:
        """The merged summary of all members: the pooled data's summary."""
        if not self._members:
            return Summary.empty(self.spec)
        return merge_all([m.summary for m in self._members.values()])

    def inspect(self) -> JobReport:
        """Members, row counts and schema agreement; nodes share column types, never rows."""
        columns = self.spec.all_columns
        replies = self._stage(
            SCHEMA, {n: {"dataset": m.dataset, "columns": _json(columns)} for n, m in self._members.items()}, None
        )
        types = {
            n: {c: TYPES[int(code)] for c, code in zip(columns, r.params["types"], strict=True)}
            for n, r in replies.items()
        }
        members = tuple(
            MemberReport(node_id=n, dataset=m.dataset, rows=m.summary.count, types=types[n])
            for n, m in self._members.items()
        )
        return JobReport(columns=columns, members=members, problems=schema_problems(columns, types))

    def fit(self, estimator: E) -> E:
        """Fit ``estimator`` on the federation: from the merged summary, or by Newton rounds."""
        if not self._members:
            raise ConfigError("no node has joined this job yet; join() at least one")
        if isinstance(estimator, FederatedLogisticRegression):
            return self._fit_logistic(estimator)
        if isinstance(estimator, SummaryEstimator):
            return estimator.fit_summary(self.summary)
        raise ConfigError(f"`estimator` must be one of the analytics estimators; got {type(estimator).__name__}")

    def histogram(
        self, column: str, *, bins: int = 10, low: float | None = None, high: float | None = None
    ) -> Histogram:
        """A histogram of one column with fixed bins, in one more round.

        The range defaults to the column's global min and max from the summaries, which is what
        lets every node count into the same bins without seeing anyone else's data. Where a node
        withholds its extrema (its policy's ``release_extrema``), the range is the mean ± 3
        standard deviations instead, and the underflow and overflow bins count the rest.
        Each node releases only cells of at least its ``min_rows`` rows, so the counts may add up
        to fewer rows than the column holds.
        """
        check("column", column, Options(self.spec.all_columns))
        index = self.spec.all_columns.index(column)
        auto_low, auto_high = _default_range(self.summary.moments, index)
        lo = auto_low if low is None else low
        hi = auto_high if high is None else high
        spec = SummarySpec(columns=(column,), histograms=(HistogramSpec(column=column, low=lo, high=hi, bins=bins),))
        replies = self._stage(
            SUMMARIZE,
            {n: {"dataset": m.dataset, "spec": spec.to_json()} for n, m in self._members.items()},
            lambda r: Summary.from_params(r.params, spec),
        )
        return merge_all([Summary.from_params(r.params, spec).histograms[0] for r in replies.values()])

    # plumbing ----------------------------------------------------------------------------

    def _fit_logistic(self, estimator: L) -> L:
        summary = self.summary
        if summary.by_class is None:
            raise ConfigError("logistic regression needs a job created with task='classification'")
        classes = summary.by_class.classes
        fit_intercept = bool(estimator.fit_intercept)
        base = {"spec": self.spec.to_json(), "classes": _json(classes.tolist()), "fit_intercept": fit_intercept}
        # Newton works on features centred and scaled by the moments the job already holds
        scaling = FeatureScaling.of(summary.features, centre=fit_intercept)

        def oracle(theta: np.ndarray) -> NewtonStats:
            size = theta.size
            replies = self._stage(
                LOGISTIC_STEP,
                {n: {**base, "dataset": m.dataset} for n, m in self._members.items()},
                lambda r: NewtonStats.from_params(r.params, size),
                params=ParamSet({"theta": theta}).merged(scaling.to_params()),
            )
            return merge_all([NewtonStats.from_params(r.params, size) for r in replies.values()])

        return estimator.fit_oracle(oracle, classes=classes, n_features=self.spec.n_features, scaling=scaling)

    def _table(self, data: object) -> Table:
        return as_table(data, target=self.spec.target or "y")

    def _place(self, node_id: str, data: object, name: str) -> str:
        """The dataset name the node knows ``data`` by, registering it on a simulated node."""
        if self._fleet is not None:
            if not isinstance(data, str):
                raise ConfigError(f"over a fleet, data must be a dataset name on the node; got {type(data).__name__}")
            return data
        if isinstance(data, str):
            raise ConfigError("in simulation, pass the node's data itself (a Dataset, table or column mapping)")
        self._simulated[node_id][name] = self._table(data)
        return name

    def _summaries(self, datasets: Mapping[str, str]) -> dict[str, Summary]:
        replies = self._stage(SUMMARIZE, {n: {"dataset": d} for n, d in datasets.items()}, self._check_summary)
        return {n: Summary.from_params(r.params, self.spec) for n, r in replies.items()}

    def _check_summary(self, reply: Reply) -> None:
        summary = Summary.from_params(
            ParamSet({k: v for k, v in reply.params.items() if not k.startswith("remaining/")}), self.spec
        )
        _check_fresh(summary.factor, "summary")

    def _check_removal(self, reply: Reply) -> None:
        """The removed rows' summary and the factor of the rows the node keeps, before anything changes."""
        self._check_summary(reply)
        _check_fresh(RFactor.from_params(reply.params.select("remaining/factor/")), "the remaining rows")

    def _stage(
        self,
        kind: str,
        configs: Mapping[str, Mapping[str, Any]],
        validate: Callable[[Reply], Any] | None,
        *,
        params: ParamSet | None = None,
    ) -> dict[str, Reply]:
        round_ = next(self._rounds)
        tasks = {
            node: Task(
                kind=kind,
                round=round_,
                run_id=self._run_id,
                params=params or ParamSet(),
                config={"spec": self.spec.to_json(), **config},
            )
            for node, config in configs.items()
        }
        fleet = self._fleet or InProcessFleet(list(self._simulated), self._simulated_node)
        try:
            return gather_all(fleet, tasks, timeout=self.timeout, validate=validate, label=kind)
        finally:
            if self._fleet is None:
                fleet.close()

    def _simulated_node(self, node_id: str) -> NodeApp:
        return NodeApp(
            node_id=node_id,
            handlers=analytics_handlers(
                self._simulated[node_id], policy=self._policies[node_id], chunk_rows=self._chunk_rows
            ),
        )


def gather_all(
    fleet: Fleet,
    tasks: Mapping[str, Task],
    *,
    timeout: float,
    validate: Callable[[Reply], Any] | None,
    label: str,
) -> dict[str, Reply]:
    """Every node's reply to its task, or the first node's refusal (privacy or config) as that error."""
    gather = Gather(fleet, tasks, quorum=len(tasks), timeout=timeout, validate=validate, label=label)
    try:
        return {reply.node_id: reply for reply in gather}
    except QuorumError as exc:
        for node, reason in gather.report.failures.items():
            for error in (PrivacyError, ConfigError):
                prefix = f"{error.__name__}: "
                if reason.startswith(prefix):
                    raise error(f"node {node!r}: {reason.removeprefix(prefix)}") from exc
        raise


def _default_range(moments: Moments, index: int) -> tuple[float, float]:
    """Column ``index``'s global min and max, or the mean ± 3 standard deviations where they are unknown."""
    lo, hi = float(moments.min[index]), float(moments.max[index])
    if math.isfinite(lo) and math.isfinite(hi) and lo < hi:
        return lo, hi
    mean = float(moments.mean[index])
    spread = 3 * math.sqrt(float(moments.variance(ddof=0)[index])) if int(moments.count) else 0.0
    if spread == 0.0:
        spread = max(abs(mean), 1.0) * 0.5  # a constant column: one bin around its value
    return mean - spread, mean + spread


def _check_fresh(factor: RFactor, what: str) -> None:
    """A node factors rows afresh for every reply, so its R is known: NaN is for removals it did not see."""
    if not factor.known:
        raise ValidationError(f"{what}: the R factor of freshly scanned rows must be finite; got NaN")


def _in_memory(table: Table) -> ArrayTable:
    if not isinstance(table, ArrayTable):
        raise ConfigError("simulated incremental updates need in-memory data (a Dataset or a mapping of columns)")
    return table


def _json(values: Sequence[Any]) -> str:
    return json.dumps(list(values))
