"""A small HTTP client for the coordinator API, used by ``fedlearn run`` and ``fedlearn runs``.

Transport failures and refusals become one-line errors that say what to check, never a
traceback: an unreachable coordinator, a wrong admin token, a bad config, an unknown run.
"""

from __future__ import annotations

from typing import Any

import httpx

from fedlearn.core.errors import ConfigError, FedlearnError, NotFoundError


class CoordinatorUnavailable(FedlearnError, ConnectionError):
    """The coordinator's HTTP API could not be reached or answered with a server error."""

    exit_code = 7


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
        if response.status_code == 404:
            raise NotFoundError(detail)
        if response.status_code == 422:
            raise ConfigError(detail)
        raise CoordinatorUnavailable(f"the coordinator at {self.url} answered {response.status_code}: {detail}")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return detail if isinstance(detail, str) else str(detail)
