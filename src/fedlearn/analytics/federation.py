"""A standing analytics federation over the deployed coordinator: data comes and goes, models stay fitted.

A federation names the columns every member summarises (a :class:`SummarySpec`) and the models it
keeps fitted from the merged summary. Each member contributes *batches*: datasets on its node, each
summarised on its own by the node (under its own policy) and kept in the store as a summary blob.
The coordinator never sees a row.

- **Adding** a batch asks that node to summarise that dataset, over the live fleet.
- **Removing** a batch drops its summary, and the member's summary becomes the merge of the batch
  summaries it still has. That is exact, and more exact than subtracting: moments merge exactly,
  the R factor of the remaining rows is the QR of the remaining batches' factors, and extrema are the
  remaining batches' extrema, where subtracting would leave R and extrema unknown (see
  :meth:`Summary.subtract`). It asks the node nothing, so it works while the node is offline, and
  it releases nothing new: every summary kept was released under the node's policy when it was made.
- **Refreshing** asks every member to summarise each of its batches again (their data may have
  changed in place, e.g. an SQL table that grows). A member that is not connected, does not answer
  within the deadline or answers with a summary that does not fit the spec keeps its previous
  summaries and is recorded as stale, with the reason; a refresh never waits for it beyond the deadline.
  A federation with ``refresh_seconds`` is refreshed by :class:`~fedlearn.analytics.federation_schedule.
  FederationScheduler` when due.

After each change the kept models are refitted from the merged summary (cheap: no node is asked)
and stored with their learned arrays, so any member can fetch the current model. Only models solved
from summaries are kept: logistic regression needs Newton rounds over every member's rows at each
fit, so it is refused here (``POST /api/analytics`` fits it on demand).

Every change is one store transaction (:class:`~fedlearn.runtime.store.federations.FederationUpdate`)
and changes are serialised by one lock, so a coordinator killed at any instant restarts with the
federation as it was before or after a change.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedlearn.analytics.catalog import CLASSIFIERS, NEEDS_TARGET, build_estimator, learned_arrays
from fedlearn.analytics.histogram import HistogramSpec
from fedlearn.analytics.job import gather_all
from fedlearn.analytics.moments import merge_all
from fedlearn.analytics.remote import AnalyticsOptions, _plain, check_connected
from fedlearn.analytics.summary import Summary, SummarySpec
from fedlearn.core.codec import decode, encode
from fedlearn.core.errors import ConfigError, FedlearnError, FleetBusy, NotFoundError, ValidationError
from fedlearn.core.limits import DEFAULT_MAX_BINS
from fedlearn.core.messages import ANALYTICS_SUMMARIZE, Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.engine.fleet import Fleet
from fedlearn.engine.stage import Gather
from fedlearn.runtime.coordinator import Coordinator
from fedlearn.runtime.store.federations import (
    BatchRecord,
    FederationState,
    FederationUpdate,
    MemberState,
    ModelState,
    check_federation_name,
    new_batch_id,
)

logger = logging.getLogger(__name__)

FederationModelName = Literal["linear", "ridge", "pca", "gnb", "lda", "qda", "covariance"]
"""The models a federation keeps fitted: every catalogue model solved from the summary alone."""

MAX_REFRESH_SECONDS = 7 * 24 * 3600.0
MIN_REFRESH_SECONDS = 1.0
MAX_COLUMNS = 1000
"""Columns a federation may summarise: its summaries hold d × d matrices (8 MB each at this bound), which the
coordinator allocates before any node answers, so a request must not choose d freely."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HistogramRequest(_Strict):
    """Counts of ``column`` over ``bins`` equal bins from ``low`` to ``high``, agreed by every member."""

    column: str
    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    bins: int = Field(ge=1, le=DEFAULT_MAX_BINS)


class FederationDefinition(_Strict):
    """What every member summarises and which models are kept fitted; stored as JSON with the federation."""

    columns: list[str] = Field(min_length=1, max_length=MAX_COLUMNS)
    target: str | None = None
    task: Literal["regression", "classification"] = "regression"
    histograms: list[HistogramRequest] = Field(default_factory=list, max_length=MAX_COLUMNS + 1)
    models: list[FederationModelName] = Field(min_length=1)
    options: AnalyticsOptions = AnalyticsOptions()  # frozen, so sharing one default is safe
    timeout: float = Field(default=60.0, gt=0, le=3600, description="seconds each node has to answer each task")
    wait: float = Field(default=10.0, ge=0, le=3600, description="seconds to wait for a training run to free the nodes")

    @model_validator(mode="after")
    def _consistent(self) -> FederationDefinition:
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"`models` must not repeat a model; got {self.models}")
        for model in self.models:
            if model in CLASSIFIERS and self.task != "classification":
                raise ValueError(f"`models` {model!r} needs `task` = 'classification'; got {self.task!r}")
            if model in NEEDS_TARGET and self.target is None:
                raise ValueError(f"`models` {model!r} needs a `target` column")
        self.spec()  # names unique, histograms over summarised columns
        return self

    def spec(self) -> SummarySpec:
        return SummarySpec(
            columns=tuple(self.columns),
            target=self.target,
            by_class=self.task == "classification",
            histograms=tuple(HistogramSpec(column=h.column, low=h.low, high=h.high, bins=h.bins)
                             for h in self.histograms),
        )  # fmt: skip


class FederationRequest(FederationDefinition):
    """``POST /api/federations``: a name, the first dataset of each member, and an optional schedule."""

    name: str
    members: dict[str, str] = Field(min_length=1, description="node name -> its first dataset")
    refresh_seconds: float | None = Field(
        default=None, ge=MIN_REFRESH_SECONDS, le=MAX_REFRESH_SECONDS, description="refresh from the nodes this often"
    )

    @model_validator(mode="after")
    def _named(self) -> FederationRequest:
        check_federation_name(self.name)
        return self

    def definition(self) -> FederationDefinition:
        return FederationDefinition.model_validate(
            self.model_dump(exclude={"name", "members", "refresh_seconds"}, mode="json")
        )


class BatchRequest(_Strict):
    """``POST /api/federations/{name}/members/{node}/batches``: a dataset on that node to add."""

    dataset: str = Field(min_length=1, max_length=200)


class Federations:
    """The coordinator's federations: create, change and refresh them; see the module docstring.

    Safe to call from any thread; changes are serialised. Answers are plain JSON-ready dicts in
    the shapes of :mod:`fedlearn.web.contract`'s federation models.
    """

    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator
        self._store = coordinator.store
        self._changing = threading.Lock()

    # -- reading ----------------------------------------------------------------------------

    def list_all(self) -> list[dict[str, Any]]:
        return [self.show(record.name, brief=True) for record in self._store.list_federations()]

    def show(self, name: str, *, brief: bool = False) -> dict[str, Any]:
        """The federation as stored; ``brief`` leaves out its members, batches and models."""
        state = self._store.federation_state(name)
        record = state.federation
        definition = FederationDefinition.model_validate_json(record.definition)
        answer: dict[str, Any] = {
            "name": record.name,
            **definition.model_dump(mode="json", exclude={"timeout", "wait"}),
            "refresh_seconds": record.refresh_seconds,
            "created_at": record.created_at,
            "refreshed_at": record.refreshed_at,
            "rows": sum(m.rows for m in state.members),
        }
        if brief:
            return answer
        return {
            **answer,
            "timeout": definition.timeout,
            "wait": definition.wait,
            "members": [
                {"node": m.node, "rows": m.rows, "stale": m.stale, "updated_at": m.updated_at} for m in state.members
            ],
            "batches": [
                {
                    "id": b.id,
                    "node": b.node,
                    "dataset": b.dataset,
                    "rows": b.rows,
                    "added_at": b.added_at,
                    "summarised_at": b.summarised_at,
                }
                for b in state.batches
            ],
            "fitted": [
                {"model": m.model, "rows": m.rows, "error": m.error, "fitted_at": m.fitted_at} for m in state.models
            ],
            "report": None if record.report is None else json.loads(record.report),
        }

    def model(self, name: str, model: str) -> dict[str, Any]:
        """A kept model's learned arrays (nested lists, None where not finite), row count and fit time."""
        state = self._store.federation_state(name)
        found = next((m for m in state.models if m.model == model), None)
        if found is None:
            kept = [m.model for m in state.models] or "none yet: add data or refresh"
            raise NotFoundError(f"federation {name!r} keeps no fitted model {model!r}; it keeps {kept}")
        if found.params_digest is None:
            raise NotFoundError(f"federation {name!r} has no fitted {model!r}: {found.error}")
        definition = FederationDefinition.model_validate_json(state.federation.definition)
        arrays = decode(self._store.get_blob(found.params_digest))
        return {
            "federation": name,
            "model": model,
            "columns": definition.columns,
            "target": definition.target,
            "task": definition.task,
            "options": definition.options.model_dump(mode="json"),
            "rows": found.rows,
            "fitted_at": found.fitted_at,
            "refreshed_at": state.federation.refreshed_at,
            "attributes": {k: _plain(np.asarray(v).tolist()) for k, v in arrays.items()},
        }

    def due(self) -> list[str]:
        """The scheduled federations whose refresh is due now."""
        return self._store.due_federations()

    # -- changing ---------------------------------------------------------------------------

    def create(self, request: FederationRequest) -> dict[str, Any]:
        """Record a federation and its members' first datasets; nothing is summarised until a refresh."""
        self._check_registered(request.members)
        with self._change(request.wait):
            self._store.create_federation(
                request.name,
                request.definition().model_dump_json(),
                refresh_seconds=request.refresh_seconds,
                batches=list(request.members.items()),
            )
        logger.info("federation %s: created with members %s", request.name, ", ".join(request.members))
        return self.show(request.name)

    def delete(self, name: str) -> None:
        with self._change(FederationDefinition.model_validate_json(self._definition_json(name)).wait):
            self._store.delete_federation(name)
        logger.info("federation %s: deleted", name)

    def add_batch(self, name: str, node: str, request: BatchRequest) -> dict[str, Any]:
        """Ask ``node`` to summarise ``request.dataset`` and add it as a new batch; answers the batch."""
        definition = FederationDefinition.model_validate_json(self._definition_json(name))
        self._check_registered([node])
        self._check_new(name, node, request.dataset)
        check_connected([node], self._coordinator.fleet.available())
        spec = definition.spec()
        with (
            self._change(definition.wait),
            self._coordinator.fleet_access(wait=definition.wait, purpose=f"federation {name}: a batch") as fleet,
        ):
            task = _summarise_task(name, spec, request.dataset)
            reply = gather_all(
                fleet, {node: task}, timeout=definition.timeout, validate=_validator(spec), label="federation batch"
            )[node]
            summary = Summary.from_params(reply.params, spec)
            self._check_new(name, node, request.dataset)  # again, now that changes are held off
            state = self._store.federation_state(name)
            batch_id = new_batch_id()
            summaries = _batch_summaries(self._store, state, spec)
            summaries[batch_id] = (node, summary)
            members = _members_of(state, summaries, spec, node)
            stale = next((m.stale for m in state.members if m.node == node), None)
            update = FederationUpdate(
                added=[(batch_id, node, request.dataset)],
                summaries={batch_id: (encode(summary.to_params()), summary.count)},
                members={node: _member_state(members[node], stale)},
                models=_fit_models(definition, members.values()),
            )
            self._store.update_federation(name, update)
        logger.info("federation %s: node %s added batch %s (%s, %d rows)", name, node, batch_id, request.dataset,
                    summary.count)  # fmt: skip
        return {"id": batch_id, "node": node, "dataset": request.dataset, "rows": summary.count}

    def remove_batch(self, name: str, node: str, batch_id: str) -> None:
        """Drop a batch: its member's summary becomes the exact merge of the batches it keeps; no node is asked."""
        definition = FederationDefinition.model_validate_json(self._definition_json(name))
        spec = definition.spec()
        with self._change(definition.wait):
            state = self._store.federation_state(name)
            if not any(b.id == batch_id and b.node == node for b in state.batches):
                raise NotFoundError(
                    f"federation {name!r} has no batch {batch_id!r} from node {node!r}; `show` lists its batches"
                )
            summaries = _batch_summaries(self._store, state, spec)
            summaries.pop(batch_id, None)
            left = [b for b in state.batches if b.node == node and b.id != batch_id]
            members = _members_of(state, summaries, spec, node)
            stale = next((m.stale for m in state.members if m.node == node), None)
            update = FederationUpdate(
                removed=[batch_id],
                members={} if not left else {node: _member_state(members[node], stale)},
                dropped_members=[node] if not left else [],
                models=_fit_models(definition, members.values()),
            )
            self._store.update_federation(name, update)
        logger.info("federation %s: node %s removed batch %s", name, node, batch_id)

    def refresh(self, name: str, *, scheduled: bool = False) -> dict[str, Any]:
        """Summarise every member's batches again and refit; a member that fails keeps its summaries, stale."""
        definition = FederationDefinition.model_validate_json(self._definition_json(name))
        spec = definition.spec()
        with (
            self._change(definition.wait),
            self._coordinator.fleet_access(wait=definition.wait, purpose=f"federation {name}: a refresh") as fleet,
        ):
            state = self._store.federation_state(name)
            by_node: dict[str, list[BatchRecord]] = {}
            for batch in state.batches:
                by_node.setdefault(batch.node, []).append(batch)
            connected = set(self._coordinator.fleet.available())
            stale = {n: "not connected to the coordinator" for n in by_node if n not in connected}
            fresh: dict[str, tuple[str, Summary]] = {}
            for index in range(max((len(b) for b in by_node.values()), default=0)):
                asked = {n: b[index] for n, b in by_node.items() if index < len(b) and n not in stale}
                got, failed = _gather(fleet, name, spec, asked, timeout=definition.timeout)
                stale.update(failed)
                fresh.update({asked[n].id: (n, s) for n, s in got.items()})
            summaries = _batch_summaries(self._store, state, spec)
            summaries.update({bid: ns for bid, ns in fresh.items() if ns[0] not in stale})
            members = _members_of(state, summaries, spec)
            update = FederationUpdate(
                summaries={bid: (encode(s.to_params()), s.count) for bid, (n, s) in fresh.items() if n not in stale},
                members={n: _member_state(s, stale.get(n)) for n, s in members.items()},
                models=_fit_models(definition, members.values()),
                refreshed=json.dumps({"scheduled": scheduled, "stale": stale}),
            )
            self._store.update_federation(name, update)
        logger.info("federation %s: %s refresh done, %d rows%s", name, "scheduled" if scheduled else "requested",
                    sum(s.count for s in members.values()),
                    f"; stale: {', '.join(f'{n} ({r})' for n, r in stale.items())}" if stale else "")  # fmt: skip
        return self.show(name)

    # -- plumbing ---------------------------------------------------------------------------

    def _definition_json(self, name: str) -> str:
        return self._store.federation_state(name).federation.definition

    def _check_registered(self, nodes: Sequence[str] | Mapping[str, str]) -> None:
        active = {n.name for n in self._store.list_nodes() if not n.revoked}
        unknown = [n for n in nodes if n not in active]
        if unknown:
            raise NotFoundError(
                f"no registered node named {', '.join(map(repr, unknown))}; `fedlearn nodes list` shows the nodes"
            )

    def _check_new(self, name: str, node: str, dataset: str) -> None:
        """Refuse a dataset the member already contributes: its rows would count twice."""
        same = [b.id for b in self._store.federation_state(name).batches if b.node == node and b.dataset == dataset]
        if same:
            raise ConfigError(
                f"`dataset` {dataset!r} of node {node!r} is already batch {same[0]} of federation {name!r}; "
                "a batch is counted once (refresh re-reads it, or add its new rows as another dataset)"
            )

    @contextmanager
    def _change(self, wait: float) -> Iterator[None]:
        """Hold the one lock that serialises changes, waiting at most ``wait`` seconds for it."""
        if not self._changing.acquire(timeout=wait):
            raise FleetBusy(
                f"another federation change (a refresh or a batch) did not finish within {wait:g} s; try again"
            )
        try:
            yield
        finally:
            self._changing.release()


def _summarise_task(name: str, spec: SummarySpec, dataset: str, round_: int = 1) -> Task:
    return Task(
        kind=ANALYTICS_SUMMARIZE,
        round=round_,
        run_id=f"federation-{name}-{new_batch_id()}",  # a late reply to an earlier request never matches
        config={"spec": spec.to_json(), "dataset": dataset},
    )


def _validator(spec: SummarySpec) -> Any:
    """A reply is accepted only as a summary of exactly ``spec`` with a freshly computed (finite) R factor."""

    def validate(reply: Reply) -> None:
        summary = Summary.from_params(reply.params, spec)
        if not summary.factor.known:
            raise ValidationError("summary: the R factor of freshly scanned rows must be finite; got NaN")

    return validate


def _gather(
    fleet: Fleet, name: str, spec: SummarySpec, asked: Mapping[str, BatchRecord], *, timeout: float
) -> tuple[dict[str, Summary], dict[str, str]]:
    """One summary per asked node within ``timeout``, and why each other node gave none."""
    if not asked:
        return {}, {}
    tasks = {node: _summarise_task(name, spec, batch.dataset) for node, batch in asked.items()}
    gather = Gather(fleet, tasks, quorum=0, timeout=timeout, validate=_validator(spec), label="federation refresh")
    got = {reply.node_id: Summary.from_params(reply.params, spec) for reply in gather}
    failed = {n: gather.report.failures.get(n, "no answer") for n in asked if n not in got}
    return got, failed


def _batch_summaries(store: Any, state: FederationState, spec: SummarySpec) -> dict[str, tuple[str, Summary]]:
    """Every summarised batch's stored summary, by batch id, with its node."""
    return {
        b.id: (b.node, Summary.from_params(decode(store.get_blob(b.summary_digest)), spec))
        for b in state.batches
        if b.summary_digest is not None
    }


def _members_of(
    state: FederationState, summaries: Mapping[str, tuple[str, Summary]], spec: SummarySpec, *also: str
) -> dict[str, Summary]:
    """Each member's summary (the members of ``state`` and ``also``): the merge of its batches' summaries."""
    members: dict[str, Summary] = {}
    for node in dict.fromkeys([*(m.node for m in state.members), *also]):
        parts = [s for n, s in summaries.values() if n == node]
        members[node] = merge_all(parts) if parts else Summary.empty(spec)
    return members


def _member_state(summary: Summary, stale: str | None) -> MemberState:
    empty = summary.count == 0
    return MemberState(summary=None if empty else encode(summary.to_params()), rows=summary.count, stale=stale)


def _fit_models(definition: FederationDefinition, members: Any) -> dict[str, ModelState]:
    """Every kept model refitted from the merge of ``members``' summaries, or the reason it could not be."""
    parts = [s for s in members if s.count]
    pooled = merge_all(parts) if parts else Summary.empty(definition.spec())
    options = definition.options
    states: dict[str, ModelState] = {}
    for model in definition.models:
        try:
            estimator = build_estimator(model, alpha=options.alpha, intercept=options.fit_intercept,
                                        n_components=options.n_components).fit_summary(pooled)  # fmt: skip
            params = encode(ParamSet(learned_arrays(estimator)))
            states[model] = ModelState(params=params, rows=pooled.count)
        except (FedlearnError, ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            states[model] = ModelState(params=None, rows=pooled.count, error=f"{type(exc).__name__}: {exc}")
    return states
