"""A small HTTP client for the coordinator API, used by ``fedlearn run``, ``runs`` and ``analytics remote``.

Every answer is parsed into its model in :mod:`fedlearn.web.contract`, the same one the server
answers with. Transport failures and refusals become one-line errors that say what to check, never
a traceback: an unreachable coordinator, a wrong admin token, a request over the coordinator's
size limit, a bad config, an unknown run. Each refusal is raised as the error the coordinator
raised (a node's privacy refusal as a ``PrivacyError``, busy nodes as ``FleetBusy``), so the CLI
exits with that error's code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter
from pydantic import ValidationError as AnswerInvalid

from fedlearn.core.checks import check_name
from fedlearn.core.errors import ConfigError, CoordinatorUnavailable
from fedlearn.registry.fleet_contract import EvaluationAnswer, ScoringAnswer
from fedlearn.web.contract import (
    AliasRequest,
    AnalyticsResult,
    ModelDetail,
    ModelSummary,
    ModelVersion,
    NodeSummary,
    Refusal,
    RegisterRequest,
    RunDetail,
    RunRequest,
    RunSummary,
    refused_as,
)

T = TypeVar("T")

_RUN = TypeAdapter(RunSummary)
_RUNS = TypeAdapter(list[RunSummary])
_RUN_DETAIL = TypeAdapter(RunDetail)
_NODES = TypeAdapter(list[NodeSummary])
_ANALYTICS = TypeAdapter(AnalyticsResult)
_SCORING = TypeAdapter(ScoringAnswer)
_EVALUATION = TypeAdapter(EvaluationAnswer)
_REFUSAL = TypeAdapter(Refusal)
_MODELS = TypeAdapter(list[ModelSummary])
_MODEL_DETAIL = TypeAdapter(ModelDetail)
_MODEL_VERSION = TypeAdapter(ModelVersion)


class CoordinatorClient:
    def __init__(self, url: str, *, admin_token: str, timeout: float = 30.0) -> None:
        if not admin_token:
            raise ConfigError("no admin token: pass --admin-token or set FEDLEARN_ADMIN_TOKEN")
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, timeout=timeout, headers={"Authorization": f"Bearer {admin_token}"}
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CoordinatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, config_toml: str) -> RunSummary:
        return self._call(_RUN, "POST", "/api/runs", json=RunRequest(config=config_toml).model_dump())

    def runs(self) -> list[RunSummary]:
        return self._call(_RUNS, "GET", "/api/runs")

    def run(self, run_id: str) -> RunDetail:
        return self._call(_RUN_DETAIL, "GET", f"/api/runs/{run_id}")

    def stop(self, run_id: str) -> RunSummary:
        return self._call(_RUN, "POST", f"/api/runs/{run_id}/stop")

    def resume(self, run_id: str) -> RunSummary:
        return self._call(_RUN, "POST", f"/api/runs/{run_id}/resume")

    def nodes(self) -> list[NodeSummary]:
        return self._call(_NODES, "GET", "/api/nodes")

    def model(self, run_id: str) -> bytes:
        response = self._request("GET", f"/api/runs/{run_id}/model")
        return response.content

    def models(self) -> list[ModelSummary]:
        return self._call(_MODELS, "GET", "/api/models")

    def model_detail(self, name: str) -> ModelDetail:
        return self._call(_MODEL_DETAIL, "GET", f"/api/models/{_segment(name)}")

    def model_version(self, name: str, version: int) -> ModelVersion:
        return self._call(_MODEL_VERSION, "GET", f"/api/models/{_segment(name)}/versions/{int(version)}")

    def register_model(self, request: RegisterRequest) -> ModelVersion:
        """Register the next version of a model from a completed run or an analytics answer."""
        return self._call(_MODEL_VERSION, "POST", "/api/models", json=request.model_dump(exclude_none=True))

    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        body = AliasRequest(version=version).model_dump()
        return self._call(
            _MODEL_VERSION, "PUT", f"/api/models/{_segment(name)}/aliases/{_segment(alias, what='alias')}", json=body
        )

    def delete_alias(self, name: str, alias: str) -> None:
        self._request("DELETE", f"/api/models/{_segment(name)}/aliases/{_segment(alias, what='alias')}")

    def model_package(self, ref: str) -> bytes:
        """The package file of ``NAME``, ``NAME@VERSION`` or ``NAME@ALIAS``, as registered."""
        return self._request("GET", f"/api/models/{_segment(ref)}/package").content

    def analytics(
        self,
        *,
        columns: Sequence[str],
        members: Mapping[str, str],
        model: str,
        target: str | None = None,
        task: str = "regression",
        options: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
        wait: float = 10.0,
        secure: bool = False,
        classes: Sequence[int] | None = None,
        dp: Mapping[str, float] | None = None,
    ) -> AnalyticsResult:
        """Fit ``model`` on the union of ``members`` (node name -> dataset name); see ``POST /api/analytics``.

        ``secure`` sums the statistics under secure aggregation (``classes`` lists the class codes
        of a classification); no member's own statistics reach the coordinator. ``dp`` asks each
        member for one differentially private release: ``{"epsilon": ..., "delta": ...}`` or
        ``{"noise_multiplier": ..., "delta": ...}``.

        ``timeout`` bounds each node's answer to each task and ``wait`` the wait for a training
        run to free the nodes; this call waits as long as the coordinator may need for both. The
        request is sent as given and validated by the coordinator, whose 422 names a bad field.
        """
        body = {
            "columns": list(columns),
            "target": target,
            "task": task,
            "members": dict(members),
            "model": model,
            "options": dict(options or {}),
            "timeout": timeout,
            "wait": wait,
            "secure": secure,
            "classes": None if classes is None else list(classes),
            "dp": None if dp is None else dict(dp),
        }
        newton_steps = int((options or {}).get("max_iter", 100)) if model == "logistic" else 0  # the API's default
        stages = len(members) + 1 + newton_steps
        base = self._http.timeout.read
        deadline = None if base is None else wait + timeout * stages + base
        return self._call(_ANALYTICS, "POST", "/api/analytics", json=body, timeout=deadline)

    def score_remote(
        self,
        ref: str,
        *,
        dataset: str,
        write: str,
        keys: Sequence[str],
        nodes: Sequence[str] | None = None,
        timeout: float = 300.0,
        wait: float = 10.0,
        restart: bool = False,
    ) -> ScoringAnswer:
        """Each node scores its ``dataset`` with ``ref`` into its own table ``write`` (``POST .../score``)."""
        body = {"dataset": dataset, "write": write, "keys": list(keys), "timeout": timeout, "wait": wait,
                "nodes": None if nodes is None else list(nodes), "restart": restart}  # fmt: skip
        return self._call(_SCORING, "POST", f"/api/models/{_segment(ref)}/score", json=body,
                          timeout=self._deadline(timeout, wait))  # fmt: skip

    def evaluate_remote(
        self,
        ref: str,
        *,
        dataset: str,
        bins: int = 1000,
        nodes: Sequence[str] | None = None,
        timeout: float = 300.0,
        wait: float = 10.0,
    ) -> EvaluationAnswer:
        """Per-node and pooled metrics of ``ref`` on each node's held-out ``dataset`` rows."""
        body = {"dataset": dataset, "bins": bins, "timeout": timeout, "wait": wait,
                "nodes": None if nodes is None else list(nodes)}  # fmt: skip
        return self._call(_EVALUATION, "POST", f"/api/models/{_segment(ref)}/evaluate", json=body,
                          timeout=self._deadline(timeout, wait))  # fmt: skip

    def _deadline(self, timeout: float, wait: float) -> float | None:
        """Long enough for the coordinator to wait for the nodes, then for their one answer."""
        base = self._http.timeout.read
        return None if base is None else wait + timeout + base

    def _call(self, answer: TypeAdapter[T], method: str, path: str, **kwargs: Any) -> T:
        response = self._request(method, path, **kwargs)
        try:
            return answer.validate_json(response.content)
        except AnswerInvalid as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "the body"
            raise CoordinatorUnavailable(
                f"the coordinator at {self.url} answered {method} {path} with JSON this client cannot read "
                f"({where}: {first['msg']}); is it running the same fedlearn version?"
            ) from None

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CoordinatorUnavailable(
                f"cannot reach the coordinator at {self.url}: {exc}; is `fedlearn coordinator` running there?"
            ) from None
        if response.is_success:
            return response
        detail = _detail(response)
        if response.status_code == 401:
            raise ConfigError(f"the coordinator refused the admin token: {detail}")
        if response.status_code == 413:  # the detail names the coordinator's limit and how to raise it
            raise ConfigError(f"the coordinator refused {method} {path} as too large: {detail}")
        refusal = refused_as(response.status_code)
        if refusal is not None and response.headers.get("content-type") == "application/json":
            raise refusal(detail)
        raise CoordinatorUnavailable(f"the coordinator at {self.url} answered {response.status_code}: {detail}")


def _segment(text: str, *, what: str = "model name") -> str:
    """A model name (or ``NAME@SELECTOR`` reference, or alias) as one URL path segment, checked here first,
    so that a name holding '/' is refused in one line rather than sent to a route it does not name."""
    check_name(what, text.partition("@")[0], letter_first=what == "alias")
    return quote(text, safe="@")


def _detail(response: httpx.Response) -> str:
    """The one-line reason of a refusal, or the raw body of an answer that is not ours (a proxy's page)."""
    try:
        return _REFUSAL.validate_json(response.content).detail
    except AnswerInvalid:
        return response.text
