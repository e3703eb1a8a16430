"""The HTTP API's gate: a request is judged on its headers, before a byte of its body is read.

FastAPI reads and parses a request's body before it runs the route's dependencies, so a token
checked by a dependency is checked too late: three token-less 250 MiB POSTs once made the
coordinator buffer and parse them all, and stalled ``/api/health`` meanwhile. :class:`RequestGuard`
wraps the app as plain ASGI and refuses, with the contract's one-line :class:`Refusal`:

- any path but :data:`OPEN_PATHS` without ``Authorization: Bearer <admin token>`` (compared in
  constant time): 401, before the app runs;
- a ``Content-Length`` over the limit: 413 at once;
- a body without a length (chunked) that passes the limit while the app reads it: 413 there;
- a body still incomplete ``body_timeout`` seconds after the headers: 408, so a client that
  trickles bytes cannot hold a connection and a request handler forever.

Whenever an answer starts before the request's body was read in full, whether it is one of these
refusals or a route that ignores its body, the answer says ``Connection: close``, and the server
closes the connection after it instead of reading the rest of the body.

The model server (:mod:`fedlearn.web.model_server`) reuses the guard with its own open paths, an
optional token, its own name in the messages and its own shape of refusal body.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fedlearn.web.contract import Refusal

OPEN_PATHS = frozenset({"/api/health"})
"""The paths served without the admin token: only what a load balancer's health check needs."""

UNAUTHORISED = "missing or wrong admin token: send 'Authorization: Bearer <token>'"

_CLOSE = (b"connection", b"close")


def detail_body(status: int, detail: str) -> Mapping[str, Any]:
    """The coordinator's refusal body: the contract's :class:`Refusal`."""
    return Refusal(detail=detail).model_dump()


class RequestGuard:
    """ASGI middleware that checks the admin token and bounds each request body in size and time.

    ``admin_token=None`` admits every request (the model server without ``--bearer-token``);
    ``server`` and ``limit_option`` name the process and its size option in the messages, and
    ``refusal`` shapes a refusal's JSON body from its status and one-line message.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        admin_token: str | None,
        max_body_bytes: int,
        body_timeout: float,
        open_paths: frozenset[str] = OPEN_PATHS,
        server: str = "coordinator",
        limit_option: str = "`fedlearn coordinator` with a larger --max-request-bytes",
        refusal: Callable[[int, str], Mapping[str, Any]] = detail_body,
    ) -> None:
        self.app = app
        self._token = admin_token.encode() if admin_token is not None else None
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.open_paths = open_paths
        self.server = server
        self.limit_option = limit_option
        self.refusal = refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan, or a websocket, which no route of this API accepts
            await self.app(scope, receive, send)
            return
        body = _Body(scope, receive, send, guard=self)
        if scope["path"] not in self.open_paths and not self._admitted(scope):
            await self._refuse(scope, body, 401, UNAUTHORISED, {"WWW-Authenticate": "Bearer"})
        elif body.length is not None and body.length > self.max_body_bytes:
            await self._refuse(scope, body, 413, body.too_large())
        else:
            await self.app(scope, body.receive, body.send)

    async def _refuse(
        self, scope: Scope, body: _Body, status: int, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        """Answer ``status`` with ``detail`` without running the app; the answer never reads the body."""
        response = JSONResponse(self.refusal(status, detail), status_code=status, headers=headers)
        await response(scope, body.receive, body.send)

    def _admitted(self, scope: Scope) -> bool:
        if self._token is None:
            return True
        value = _header(scope, b"authorization") or b""
        scheme, _, credentials = value.partition(b" ")
        # compare_digest takes as long for a wrong token as for a right one, whatever their common prefix
        return hmac.compare_digest(credentials.strip(), self._token) and scheme.lower() == b"bearer"


class _Body:
    """One request's body as the app reads it: counted against the limit, timed against the deadline."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, *, guard: RequestGuard) -> None:
        self._receive = receive
        self._send = send
        self.guard = guard
        self.limit = guard.max_body_bytes
        self.timeout = guard.body_timeout
        self.deadline = anyio.current_time() + self.timeout
        length = _header(scope, b"content-length")
        self.length = int(length) if length is not None and length.isdigit() else None
        chunked = _header(scope, b"transfer-encoding") is not None
        self.pending = chunked or bool(self.length)  # whether body bytes are still to come
        self.received = 0

    def too_large(self) -> str:
        return (
            f"the request body is larger than this {self.guard.server}'s limit of {self.limit} bytes; send less, "
            f"or start {self.guard.limit_option}"
        )

    async def receive(self) -> Message:
        if not self.pending:  # the body is in: what is left to wait for is the client going away
            return await self._receive()
        try:
            with anyio.fail_after(max(self.deadline - anyio.current_time(), 0)):
                message = await self._receive()
        except TimeoutError:
            late = f"the request body did not arrive within {self.timeout:g} s of its headers"
            check = f"check the network between the client and the {self.guard.server}"
            raise HTTPException(408, f"{late}; {check}") from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                raise HTTPException(413, self.too_large())
            self.pending = message.get("more_body", False)
        else:  # http.disconnect
            self.pending = False
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self.pending:
            message = {**message, "headers": [*message.get("headers", []), _CLOSE]}
        await self._send(message)


def _header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of the header ``name`` (lower case, as ASGI gives names), or None."""
    return next((value for key, value in scope["headers"] if key == name), None)
