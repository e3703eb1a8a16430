"""Differentially private federated analytics: each node releases noisy statistics of its rows.

:class:`AnalyticsJob` gathers exact summaries; :class:`PrivateAnalyticsJob` asks each member for one
Gaussian release of its bounded sufficient statistics (:mod:`~fedlearn.analytics.noisy`) and solves
every model from their noisy total. The node clips its rows into the bounds its own policy declares,
adds the noise itself and charges the release to its lifetime budget, so what leaves it is private
whatever the coordinator does next; the models (means, covariances, histograms, linear and ridge
regression, PCA, Gaussian naive Bayes, LDA, QDA) are post-processing and spend nothing more.

Per release, :class:`DPRequest` gives either the ε (at δ) to spend, from which the job calibrates
the noise multiplier with :mod:`fedlearn.privacy.accountant`, or the multiplier itself. A member's
data are disjoint from every other's, so a row's ε is that of its own node's releases composed
(:meth:`PrivateAnalyticsJob.epsilon`); joining is one release per member, each :meth:`histogram`
one more.

What differs from the exact job, and why:

- The classes of a classification are declared up front (a node's set of labels is not noised).
- Logistic regression is not offered: each Newton step would be one more release per member.
- Rows are not removed (the rescan of the rows kept is exact) and not added: a member whose data
  changed leaves and joins again, a fresh release.
- Histogram ranges default to the union of the members' declared bounds, never to data extrema.

Without a ``fleet`` the job simulates its members in process; with a ``seed`` their noise is seeded
(reproducible), without one it comes from the OS's secure source as a deployed node's always does.
"""

from __future__ import annotations

import itertools
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from fedlearn.analytics._base import SummaryEstimator
from fedlearn.analytics.handlers import SCHEMA, SUMMARIZE, analytics_handlers
from fedlearn.analytics.histogram import Histogram, HistogramSpec
from fedlearn.analytics.job import MAIN, JobReport, MemberReport, gather_all, schema_problems
from fedlearn.analytics.moments import merge_all
from fedlearn.analytics.noisy import NoiseFactory, NoisyStatistics, PrivacyBudget, read_cells, rounded, system_noise
from fedlearn.analytics.policy import DEFAULT_POLICY, DisclosurePolicy
from fedlearn.analytics.sources import DEFAULT_CHUNK_ROWS, TYPES, Table, as_table
from fedlearn.analytics.summary import Summary, SummarySpec
from fedlearn.client.node_app import NodeApp
from fedlearn.core.checks import POSITIVE, Interval, Options, check, check_int, check_real
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import DP_DELTA_KEY, DP_NOISE_MULTIPLIER_KEY, Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.engine.fleet import Fleet
from fedlearn.privacy.accountant import METHODS, Method
from fedlearn.privacy.ledger import Charge, PrivacyLedger
from fedlearn.privacy.noise import NoiseSource, SeededNoise
from fedlearn.privacy.statistics import MAX_DELTA, calibrate_release
from fedlearn.simulation.inprocess import InProcessFleet

_DELTA = Interval(0, MAX_DELTA, closed="right")


@dataclass(frozen=True, slots=True, kw_only=True)
class DPRequest:
    """The privacy of each release a job asks a node for: ``epsilon`` at ``delta``, or a ``noise_multiplier``.

    With ``epsilon`` the multiplier is calibrated by the ``accountant`` (one unsampled Gaussian
    release); nodes check what it spends with the RDP accountant, the conservative one.
    """

    epsilon: float | None = None
    delta: float = 1e-5
    noise_multiplier: float | None = None
    accountant: Method = "rdp"
    multiplier: float = field(init=False, default=math.nan)
    """The noise multiplier each release uses: given, or calibrated from ``epsilon``."""

    def __post_init__(self) -> None:
        check("delta", self.delta, _DELTA)
        check("accountant", self.accountant, Options(METHODS))
        if (self.epsilon is None) == (self.noise_multiplier is None):
            raise ConfigError(
                "a DP request gives either `epsilon` (per release) or `noise_multiplier`; give exactly one"
            )
        if self.noise_multiplier is not None:
            z = check_real("noise_multiplier", self.noise_multiplier, POSITIVE)
        else:
            z = calibrate_release(check_real("epsilon", self.epsilon, POSITIVE), self.delta, self.accountant)
        object.__setattr__(self, "multiplier", z)

    def config(self) -> dict[str, Any]:
        """The task config keys that ask a node for a release of this privacy."""
        return {DP_NOISE_MULTIPLIER_KEY: self.multiplier, DP_DELTA_KEY: self.delta}


@dataclass(frozen=True, slots=True, kw_only=True)
class Release:
    """One noisy release by one node: what it was, its noise multiplier and its ε at ``delta``."""

    node_id: str
    what: str
    noise_multiplier: float
    epsilon: float
    delta: float


class PrivateAnalyticsJob:
    """Join members, then fit models from their differentially private statistics.

    ``classes`` (integer codes) are required for ``task="classification"``. Over a ``fleet``,
    :meth:`join` names a dataset on the node and the node's own policy and budget apply; in
    simulation it takes the data, and the simulated node's ``policy`` (its ``bounds`` above all),
    ``budget`` and ``require_dp``.
    """

    def __init__(
        self,
        *,
        columns: Sequence[str],
        dp: DPRequest,
        target: str | None = None,
        task: Literal["regression", "classification"] = "regression",
        classes: Sequence[int] = (),
        histograms: Sequence[HistogramSpec] = (),
        fleet: Fleet | None = None,
        timeout: float = 60.0,
        seed: int | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ) -> None:
        check("task", task, Options(("regression", "classification")))
        if not isinstance(dp, DPRequest):
            raise ConfigError(f"`dp` must be a DPRequest; got {type(dp).__name__}")
        self.spec = SummarySpec(
            columns=tuple(columns), target=target, by_class=task == "classification", histograms=tuple(histograms)
        )
        codes = [int(check_int("classes", c, low=-(2**62))) for c in classes]
        if self.spec.by_class != bool(codes) or sorted(set(codes)) != codes:
            raise ConfigError(
                "a classification job under differential privacy declares its `classes` (unique integer codes, "
                f"ascending), and a regression job none; got {list(classes)}"
            )
        if seed is not None and fleet is not None:
            raise ConfigError("`seed` is for simulation: deployed nodes draw their noise from the OS's secure source")
        self.classes = tuple(codes)
        self.dp = dp
        self.timeout = check_real("timeout", timeout, POSITIVE)
        self._fleet = fleet
        self._seed = None if seed is None else check_int("seed", seed)
        self._chunk_rows = chunk_rows
        self._members: dict[str, tuple[str, NoisyStatistics]] = {}
        self._simulated: dict[str, NodeApp] = {}
        self._rounds = itertools.count(1)
        self._places = itertools.count()
        self._run_id = f"dp-analytics-{uuid.uuid4().hex}"
        self.releases: list[Release] = []
        """Every release a member made for this job, in order."""

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self._members)

    def join(
        self,
        node_id: str,
        data: object,
        *,
        policy: DisclosurePolicy = DEFAULT_POLICY,
        budget: PrivacyBudget | None = None,
        require_dp: bool = False,
    ) -> Release:
        """Add a member: one release of its noisy statistics. Returns the release and its ε."""
        if node_id in self._members:
            raise ConfigError(f"node {node_id!r} has already joined; to refresh it, leave() and join() again")
        if self._fleet is None:
            if isinstance(data, str):
                raise ConfigError("in simulation, pass the node's data itself (a Dataset, table or column mapping)")
            table = as_table(data, target=self.spec.target or "y")
            self._simulate(node_id, table, policy, budget, require_dp)
            data = MAIN
        elif not isinstance(data, str):
            raise ConfigError(f"over a fleet, data must be a dataset name on the node; got {type(data).__name__}")
        config = {"dataset": data, "spec": self.spec.to_json(), **self._classes_config()}
        try:
            reply = self._stage(SUMMARIZE, {node_id: config}, self._read)[node_id]
        except Exception:
            self._simulated.pop(node_id, None)
            raise
        self._members[node_id] = (data, self._read(reply))
        return self._record(reply, "summary")

    def leave(self, node_id: str) -> None:
        """Drop a member and its statistics (its releases stay spent, and recorded)."""
        if node_id not in self._members:
            raise ConfigError(f"node {node_id!r} has not joined; members are {list(self._members)}")
        del self._members[node_id]
        self._simulated.pop(node_id, None)

    @property
    def summary(self) -> Summary:
        """The summary the members' noisy statistics stand for (post-processing; spends nothing)."""
        if not self._members:
            raise ConfigError("no node has joined this job yet; join() at least one")
        return merge_all([stats for _, stats in self._members.values()]).to_summary()

    def epsilon(self, node_id: str | None = None) -> float:
        """ε at the request's δ of ``node_id``'s releases composed; without a node, the largest over members.

        Members hold disjoint rows, so the largest is what the job guarantees each row.
        """
        nodes = [node_id] if node_id is not None else {r.node_id for r in self.releases}
        ledgers = [
            PrivacyLedger(delta=self.dp.delta, charges=tuple(Charge(noise_multiplier=r.noise_multiplier)
                                                             for r in self.releases if r.node_id == n))
            for n in nodes
        ]  # fmt: skip
        return max((ledger.epsilon() for ledger in ledgers), default=0.0)

    def fit(self, estimator: SummaryEstimator) -> SummaryEstimator:
        """Fit ``estimator`` from the noisy summary; nothing more is asked of the nodes."""
        if not isinstance(estimator, SummaryEstimator):
            raise ConfigError(
                f"under differential privacy, models are solved from the noisy summary; {type(estimator).__name__} "
                "is not (logistic regression's Newton steps would each be one more release per node)"
            )
        return estimator.fit_summary(self.summary)

    def histogram(
        self, column: str, *, bins: int = 10, low: float | None = None, high: float | None = None
    ) -> Histogram:
        """A noisy histogram of ``column``: one more release per member, of its cells alone.

        The range defaults to the union of the members' declared bounds of the column.
        """
        check("column", column, Options(self.spec.all_columns))
        pooled = merge_all([stats for _, stats in self._members.values()]) if self._members else None
        if pooled is None:
            raise ConfigError("no node has joined this job yet; join() at least one")
        index = self.spec.all_columns.index(column)
        lo = float(pooled.low[index]) if low is None else low
        hi = float(pooled.high[index]) if high is None else high
        spec = SummarySpec(columns=(column,), histograms=(HistogramSpec(column=column, low=lo, high=hi, bins=bins),))
        configs = {
            node: {"dataset": dataset, "spec": spec.to_json(), "histograms_only": True}
            for node, (dataset, _) in self._members.items()
        }
        replies = self._stage(SUMMARIZE, configs, lambda r: read_cells(r.params, spec))
        for reply in replies.values():
            self._record(reply, f"histogram of {column!r}")
        total = sum(read_cells(r.params, spec)[0] for r in replies.values())
        return rounded([np.asarray(total)], spec)[0]

    def inspect(self) -> JobReport:
        """Members, their noisy row counts and whether their schemas agree."""
        columns = self.spec.all_columns
        configs = {n: {"dataset": d, "columns": json.dumps(list(columns))} for n, (d, _) in self._members.items()}
        replies = self._stage(SCHEMA, configs, None)
        types = {
            n: {c: TYPES[int(code)] for c, code in zip(columns, r.params["types"], strict=True)}
            for n, r in replies.items()
        }
        members = tuple(
            MemberReport(node_id=n, dataset=d, rows=max(round(stats.count), 0), types=types[n])
            for n, (d, stats) in self._members.items()
        )
        return JobReport(columns=columns, members=members, problems=schema_problems(columns, types))

    # plumbing ----------------------------------------------------------------------------

    def _classes_config(self) -> dict[str, str]:
        return {"classes": json.dumps(list(self.classes))} if self.spec.by_class else {}

    def _read(self, reply: Reply) -> NoisyStatistics:
        return NoisyStatistics.from_params(reply.params, self.spec, self.classes)

    def _record(self, reply: Reply, what: str) -> Release:
        release = Release(
            node_id=reply.node_id,
            what=what,
            noise_multiplier=self.dp.multiplier,
            epsilon=float(reply.params["epsilon"]),
            delta=self.dp.delta,
        )
        self.releases.append(release)
        return release

    def _stage(self, kind: str, configs: Mapping[str, Mapping[str, Any]], validate: Any) -> dict[str, Reply]:
        round_ = next(self._rounds)
        dp = self.dp.config() if kind == SUMMARIZE else {}
        tasks = {
            node: Task(kind=kind, round=round_, run_id=self._run_id, params=ParamSet(), config={**config, **dp})
            for node, config in configs.items()
        }
        fleet = self._fleet or InProcessFleet(list(configs), self._simulated.__getitem__)
        try:
            return gather_all(fleet, tasks, timeout=self.timeout, validate=validate, label=kind)
        finally:
            if self._fleet is None:
                fleet.close()

    def _simulate(
        self, node_id: str, table: Table, policy: DisclosurePolicy, budget: PrivacyBudget | None, require_dp: bool
    ) -> None:
        noise: NoiseFactory = system_noise
        if self._seed is not None:
            noise = _SeededFactory(self._seed, next(self._places))
        handlers = analytics_handlers(
            {MAIN: table}, policy=policy, chunk_rows=self._chunk_rows, budget=budget, require_dp=require_dp,
            noise=noise,
        )  # fmt: skip
        self._simulated[node_id] = NodeApp(node_id=node_id, handlers=handlers)


@dataclass(frozen=True, slots=True)
class _SeededFactory:
    """A simulated node's noise: seeded by the job's seed, the node's place and the task's round."""

    seed: int
    node: int

    def __call__(self, task: Task, /) -> NoiseSource:
        return SeededNoise(np.random.default_rng([self.seed, self.node, task.round]))
