"""A small HTTP client for the coordinator API, used by ``fedlearn run``, ``runs`` and ``analytics remote``.

Transport failures and refusals become one-line errors that say what to check, never a
traceback: an unreachable coordinator, a wrong admin token, a bad config, an unknown run. Each
refusal is raised as the error the coordinator raised (a node's privacy refusal as a
``PrivacyError``, busy nodes as ``FleetBusy``), so the CLI exits with that error's code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from fedlearn.core.errors import (
    ConfigError,
    CoordinatorUnavailable,
    FedlearnError,
    FleetBusy,
    NotFoundError,
    PrivacyError,
    QuorumError,
)


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

    def submit(self, config_toml: str) -> dict[str, Any]:
        return self._call("POST", "/api/runs", json={"config": config_toml})

    def runs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/runs")

    def run(self, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/runs/{run_id}")

    def stop(self, run_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/runs/{run_id}/stop")

    def nodes(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/nodes")

    def model(self, run_id: str) -> bytes:
        response = self._request("GET", f"/api/runs/{run_id}/model")
        return response.content

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
    ) -> dict[str, Any]:
        """Fit ``model`` on the union of ``members`` (node name -> dataset name); see ``POST /api/analytics``.

        ``timeout`` bounds each node's answer to each task and ``wait`` the wait for a training
        run to free the nodes; this call waits as long as the coordinator may need for both.
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
        }
        newton_steps = int((options or {}).get("max_iter", 100)) if model == "logistic" else 0  # the API's default
        stages = len(members) + 1 + newton_steps
        base = self._http.timeout.read
        deadline = None if base is None else wait + timeout * stages + base
        return self._call("POST", "/api/analytics", json=body, timeout=deadline)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

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
        if response.status_code in _ERRORS and response.headers.get("content-type") == "application/json":
            raise _ERRORS[response.status_code](detail)
        raise CoordinatorUnavailable(f"the coordinator at {self.url} answered {response.status_code}: {detail}")


# The coordinator's refusals (see ``fedlearn.web.api``), raised here as the errors they were there.
_ERRORS: dict[int, type[FedlearnError]] = {
    403: PrivacyError,
    404: NotFoundError,
    409: FleetBusy,
    422: ConfigError,
    503: QuorumError,
}


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return detail if isinstance(detail, str) else str(detail)
