"""The API's gate, called as plain ASGI: what it answers from the headers alone, and how much body it reads."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from fedlearn.core.errors import ConfigError
from fedlearn.runtime.coordinator import Coordinator
from fedlearn.runtime.store import Store
from fedlearn.simulation.inprocess import InProcessFleet
from fedlearn.web.api import create_app
from tests.web.test_api import ADMIN, AUTH, _no_node

LIMIT = 4096
TOKEN = (b"authorization", f"Bearer {ADMIN}".encode())
TOO_LARGE = (
    f"the request body is larger than this coordinator's limit of {LIMIT} bytes; send less, "
    "or start `fedlearn coordinator` with a larger --max-request-bytes"
)


def _app(store: Store, *, body_timeout: float = 30.0) -> FastAPI:
    coordinator = Coordinator(store, InProcessFleet([], _no_node))
    return create_app(coordinator, admin_token=ADMIN, max_request_bytes=LIMIT, body_timeout=body_timeout)


@pytest.fixture
def app(store: Store) -> FastAPI:
    return _app(store)


@dataclass
class Exchange:
    """One request as the server side of ASGI sees it: the body chunks it offers and what the app did."""

    chunks: Sequence[bytes] = ()
    endless: bool = False  # after the chunks, more of the last one forever
    stalls: bool = False  # after the chunks, nothing more ever arrives
    reads: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        if self.reads <= len(self.chunks):
            more = self.endless or self.stalls or self.reads < len(self.chunks)
            return {"type": "http.request", "body": self.chunks[self.reads - 1], "more_body": more}
        if self.endless:
            return {"type": "http.request", "body": self.chunks[-1], "more_body": True}
        await anyio.sleep_forever()
        raise AssertionError("a stalled body never arrives")

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def detail(self) -> str:
        return str(json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))["detail"])


def _call(
    app: FastAPI, exchange: Exchange, *, path: str = "/api/runs", headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "headers": [(b"content-type", b"application/json"), *headers],
        "server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 50000),
    }  # fmt: skip
    anyio.run(app, scope, exchange.receive, exchange.send)


@pytest.mark.parametrize(
    "authorization",
    [None, b"Bearer wrong-token-0123456789abcdef", f"Basic {ADMIN}".encode(), ADMIN.encode(), b"Bearer "],
    ids=["none", "wrong", "basic", "no-scheme", "empty"],
)
def test_request_without_the_token_is_a_401_before_its_body_is_read(app: FastAPI, authorization: bytes | None) -> None:
    exchange = Exchange(chunks=[b"x" * 1024], endless=True)
    headers = [(b"transfer-encoding", b"chunked")] + ([(b"authorization", authorization)] if authorization else [])

    _call(app, exchange, headers=headers)

    assert (exchange.status, exchange.reads) == (401, 0)
    assert exchange.detail == "missing or wrong admin token: send 'Authorization: Bearer <token>'"
    assert exchange.headers[b"www-authenticate"] == b"Bearer"
    assert exchange.headers[b"connection"] == b"close"


def test_token_scheme_is_case_insensitive(app: FastAPI) -> None:
    exchange = Exchange(chunks=[b'{"config": "x"}'])

    _call(app, exchange, headers=[(b"authorization", f"bearer {ADMIN}".encode()), (b"content-length", b"15")])

    assert exchange.status == 422


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    return [
        (method, route.path.replace("{run_id}", "some-run"))
        for route in app.routes
        if isinstance(route, APIRoute)
        for method in sorted(route.methods)
    ]


def test_every_route_but_health_needs_the_token(app: FastAPI) -> None:
    api = TestClient(app)
    routes = [*_routes(app), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc"), ("GET", "/no-such-page")]

    statuses = {(method, path): api.request(method, path).status_code for method, path in routes}

    assert statuses.pop(("GET", "/api/health")) == 200
    assert set(statuses.values()) == {401}


def test_body_whose_length_is_over_the_limit_is_a_413_before_it_is_read(app: FastAPI) -> None:
    exchange = Exchange(chunks=[b"x" * (LIMIT + 1)])

    _call(app, exchange, headers=[TOKEN, (b"content-length", str(LIMIT + 1).encode())])

    assert (exchange.status, exchange.reads, exchange.detail) == (413, 0, TOO_LARGE)
    assert exchange.headers[b"connection"] == b"close"


def test_body_at_the_limit_is_read(app: FastAPI) -> None:
    exchange = Exchange(chunks=[b"x" * LIMIT])

    _call(app, exchange, headers=[TOKEN, (b"content-length", str(LIMIT).encode())])

    assert (exchange.status, exchange.reads) == (422, 1)  # read, and found not to be JSON


def test_chunked_body_is_read_only_until_it_passes_the_limit_then_is_a_413(app: FastAPI) -> None:
    chunk = b"x" * 1000
    exchange = Exchange(chunks=[chunk], endless=True)

    _call(app, exchange, headers=[TOKEN, (b"transfer-encoding", b"chunked")])

    assert (exchange.status, exchange.detail) == (413, TOO_LARGE)
    assert exchange.reads == math.ceil((LIMIT + 1) / len(chunk))
    assert exchange.headers[b"connection"] == b"close"


def test_body_that_stops_arriving_is_a_408_at_the_deadline(store: Store) -> None:
    exchange = Exchange(chunks=[b'{"config": '], stalls=True)
    started = time.monotonic()

    _call(_app(store, body_timeout=0.2), exchange, headers=[TOKEN, (b"content-length", b"100")])

    assert 0.2 <= time.monotonic() - started < 1.0
    assert exchange.status == 408
    assert exchange.detail == (
        "the request body did not arrive within 0.2 s of its headers; "
        "check the network between the client and the coordinator"
    )
    assert exchange.headers[b"connection"] == b"close"


def test_answer_given_before_the_body_is_read_closes_the_connection(app: FastAPI) -> None:
    exchange = Exchange(chunks=[b"x" * 10])

    _call(app, exchange, path="/api/runs/some-run/stop", headers=[TOKEN, (b"content-length", b"10")])

    assert exchange.status == 404  # the route never reads its body, so the rest of it must not be read either
    assert exchange.headers[b"connection"] == b"close"


def test_answer_to_a_request_without_a_body_keeps_the_connection(app: FastAPI) -> None:
    response = TestClient(app).get("/api/runs", headers=AUTH)

    assert response.status_code == 200
    assert "connection" not in response.headers


def test_docs_pages_are_not_served(app: FastAPI) -> None:
    api = TestClient(app)

    assert [api.get(page, headers=AUTH).status_code for page in ("/docs", "/redoc")] == [404, 404]


def test_openapi_schema_is_served_with_the_token_and_names_no_outside_address(app: FastAPI) -> None:
    response = TestClient(app).get("/openapi.json", headers=AUTH)

    assert response.status_code == 200
    assert "/api/runs" in response.json()["paths"]
    assert "://" not in response.text


def test_request_limit_must_be_a_positive_integer(store: Store) -> None:
    coordinator = Coordinator(store, InProcessFleet([], _no_node))

    with pytest.raises(ConfigError, match=r"`max_request_bytes` must be an integer >= 1; got 0"):
        create_app(coordinator, admin_token=ADMIN, max_request_bytes=0)
