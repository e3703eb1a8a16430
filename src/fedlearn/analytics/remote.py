"""One analytics request over a live fleet: join the named datasets, inspect them, fit one model.

This is what the coordinator's ``POST /api/analytics`` runs while it holds the nodes. The request
is validated whole before any node is asked anything, and the answer is plain JSON: the inspect
report and the fitted model's learned arrays as (nested) lists, or the ``describe`` table. Values
that are not finite (a min or max unknown after a removal) travel as ``null``.

With ``dp`` each member makes one differentially private release (:class:`PrivateAnalyticsJob`) and
the answer's ``privacy`` says what it spent: the largest ε over members at δ, and every release.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedlearn.analytics.catalog import CLASSIFIERS, ITERATIVE, NEEDS_TARGET, ModelName, build_estimator, learned_arrays
from fedlearn.analytics.covariance import describe
from fedlearn.analytics.job import AnalyticsJob, JobReport, schema_problems
from fedlearn.analytics.private_job import DPRequest, PrivateAnalyticsJob
from fedlearn.analytics.secure_job import SecureAnalyticsJob
from fedlearn.analytics.summary import SummarySpec
from fedlearn.core.errors import QuorumError
from fedlearn.engine.fleet import Fleet
from fedlearn.privacy.statistics import MAX_DELTA


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AnalyticsOptions(_Strict):
    """The fitted model's options; each applies only to the models named in its description."""

    alpha: float = Field(default=1.0, ge=0, description="ridge penalty")
    fit_intercept: bool = Field(default=True, description="linear, ridge and logistic")
    n_components: int | None = Field(default=None, ge=1, description="pca components to keep")
    C: float = Field(default=1.0, gt=0, description="logistic inverse regularisation strength")
    max_iter: int = Field(default=100, ge=1, le=1000, description="logistic Newton steps at most, one round each")


class DPOptions(_Strict):
    """Differential privacy for each member's release: ``epsilon`` at ``delta``, or a ``noise_multiplier``."""

    epsilon: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="ε per member release")
    noise_multiplier: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    delta: float = Field(default=1e-5, gt=0, le=MAX_DELTA)

    @model_validator(mode="after")
    def _one(self) -> DPOptions:
        if (self.epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("`dp` gives `epsilon` or `noise_multiplier`; give exactly one")
        return self

    def request(self) -> DPRequest:
        return DPRequest(epsilon=self.epsilon, noise_multiplier=self.noise_multiplier, delta=self.delta)


class AnalyticsRequest(_Strict):
    """Which dataset on which node, which columns, and which model to fit on their union."""

    columns: list[str] = Field(min_length=1)
    target: str | None = None
    task: Literal["regression", "classification"] = "regression"
    members: dict[str, str] = Field(min_length=1, description="node name -> dataset name on that node")
    model: ModelName
    options: AnalyticsOptions = AnalyticsOptions()  # frozen, so sharing one default is safe
    timeout: float = Field(default=60.0, gt=0, le=3600, description="seconds each node has to answer each task")
    secure: bool = Field(default=False, description="sum the statistics under secure aggregation (3+ members)")
    classes: list[int] | None = Field(
        default=None, description="the class codes; needed when `secure` or `dp` classifies"
    )
    dp: DPOptions | None = Field(default=None, description="differentially private releases, noised on the nodes")
    wait: float = Field(default=10.0, ge=0, le=3600, description="seconds to wait for a training run to free the nodes")

    @model_validator(mode="after")
    def _consistent(self) -> AnalyticsRequest:
        if self.model in CLASSIFIERS and self.task != "classification":
            raise ValueError(f"`model` {self.model!r} needs `task` = 'classification'; got {self.task!r}")
        if self.model in NEEDS_TARGET and self.target is None:
            raise ValueError(f"`model` {self.model!r} needs a `target` column")
        SummarySpec(columns=tuple(self.columns), target=self.target, by_class=self.task == "classification")
        if self.secure and self.dp is not None:
            raise ValueError("`secure` and `dp` are not offered together yet; choose one")
        mode = "secure" if self.secure else "dp" if self.dp is not None else None
        if mode is not None:
            if self.model in ITERATIVE:
                raise ValueError(f"`model` {self.model!r} is not offered with `{mode}` yet: it needs Newton rounds")
            if (self.task == "classification") != (self.classes is not None):
                raise ValueError(f"with `{mode}`, `classes` lists the class codes of a classification, and only then")
        elif self.classes is not None:
            raise ValueError("`classes` is only used with `secure` or `dp`: in the clear, nodes report their classes")
        return self


def check_connected(members: Collection[str], connected: Collection[str]) -> None:
    """Refuse, naming them, members that are not connected: asking them would only time out."""
    missing = [n for n in members if n not in connected]
    if missing:
        raise QuorumError(
            f"{_names(missing)} not connected to the coordinator; connected: {', '.join(connected) or 'none'} "
            "(start the node, or check `fedlearn nodes list`)"
        )


def run_request(
    request: AnalyticsRequest, fleet: Fleet, *, identity_keys: Mapping[str, bytes] | None = None
) -> dict[str, Any]:
    """Join every member, inspect, fit; the caller must hold the fleet for the whole call.

    With ``request.secure`` the statistics are summed under secure aggregation, for which
    ``identity_keys`` are the members' registered identity keys; no member's rows are reported.
    """
    job: AnalyticsJob | SecureAnalyticsJob | PrivateAnalyticsJob
    privacy: dict[str, Any] | None = None
    report: dict[str, Any]
    if request.dp is not None:
        dp = request.dp.request()
        job = PrivateAnalyticsJob(columns=request.columns, target=request.target, task=request.task, dp=dp,
                                  classes=request.classes or (), fleet=fleet, timeout=request.timeout)  # fmt: skip
        for node, dataset in request.members.items():
            job.join(node, dataset)
        report = report_json(job.inspect())
        privacy = {
            "epsilon": job.epsilon(),
            "delta": dp.delta,
            "noise_multiplier": dp.multiplier,
            "releases": [{"node": r.node_id, "what": r.what, "epsilon": r.epsilon} for r in job.releases],
        }
    elif request.secure:
        job = SecureAnalyticsJob(columns=request.columns, target=request.target, task=request.task,
                                 classes=request.classes or (), fleet=fleet, identity_keys=identity_keys or {},
                                 timeout=request.timeout)  # fmt: skip
        for node, dataset in request.members.items():
            job.join(node, dataset)
        types = job.inspect()
        columns = job.spec.all_columns
        report = {
            "rows": job.summary.count,
            "members": [{"node": n, "dataset": d, "rows": None, "types": types[n]} for n, d in request.members.items()],
            "problems": list(schema_problems(columns, types)),
        }
    else:
        job = AnalyticsJob(
            columns=request.columns, target=request.target, task=request.task, fleet=fleet, timeout=request.timeout
        )
        for node, dataset in request.members.items():
            job.join(node, dataset)
        report = report_json(job.inspect())
    result: dict[str, Any] = {
        "model": request.model,
        "columns": list(request.columns),
        "target": request.target,
        "task": request.task,
        **report,
        "secure": request.secure,
        "privacy": privacy,
        "attributes": {},
        "description": None,
    }
    if request.model == "describe":
        result["description"] = [_plain(row) for row in describe(job.summary).rows()]
        return result
    options = request.options
    estimator = build_estimator(
        request.model,
        alpha=options.alpha,
        intercept=options.fit_intercept,
        n_components=options.n_components,
        c=options.C,
        max_iter=options.max_iter,
    )
    result["attributes"] = {k: _plain(v.tolist()) for k, v in learned_arrays(job.fit(estimator)).items()}
    return result


def report_json(report: JobReport) -> dict[str, Any]:
    return {
        "rows": report.total_rows,
        "members": [
            {"node": m.node_id, "dataset": m.dataset, "rows": m.rows, "types": dict(m.types)} for m in report.members
        ],
        "problems": list(report.problems),
    }


def _plain(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, which JSON can carry."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _names(nodes: list[str]) -> str:
    quoted = ", ".join(repr(n) for n in nodes)
    return f"node {quoted} is" if len(nodes) == 1 else f"nodes {quoted} are"
