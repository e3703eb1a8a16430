"""How the coordinator serves its HTTP API: uvicorn's h11 server, with a deadline on each request's headers.

uvicorn waits for a request's headers without a deadline: its keep-alive timer runs only between
two requests on one connection, and any byte received cancels it. A connection that opens and
sends nothing, or trickles its headers a byte at a time, is therefore held for ever, with its file
descriptor, which the coordinator's gRPC server and store draw on too. The server made here
closes a connection whose request headers are not complete ``header_timeout`` seconds after it
opened, or after the previous answer on it. The body has its own deadline, kept by
:mod:`fedlearn.web.guard`. A deadline bounds how long each connection is held, not how many a
peer opens: limiting connections per peer is the job of a reverse proxy or firewall in front.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from fedlearn.core.checks import POSITIVE, check_real
from fedlearn.core.limits import DEFAULT_REQUEST_SECONDS


def api_server(
    app: ASGIApp, *, host: str, port: int, header_timeout: float = DEFAULT_REQUEST_SECONDS
) -> uvicorn.Server:
    """A uvicorn server for ``app`` on ``host:port`` that drops connections whose headers come too late."""
    deadline = check_real("header_timeout", header_timeout, POSITIVE)

    class Protocol(_HeaderDeadline):
        header_timeout = deadline

    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, http=Protocol, log_level="warning"))


@contextmanager
def running_in_thread(server: uvicorn.Server, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
    """Run ``server`` from a daemon thread of this process on ``host:port``; yield the bound port, then stop it.

    For a notebook, a script or a test that serves and calls in one process. The socket is bound
    before the thread starts, so port 0 (any free port) is safe from races, and the port is known
    before the first request.
    """
    listening = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listening.bind((host, port))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        if not server.started:
            raise RuntimeError(f"the HTTP server on {host}:{port} did not start within 10 s")
        yield int(listening.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listening.close()


class _HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol, closing the connection when a request's headers miss their deadline."""

    header_timeout: float
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._start_timer()  # for the next request on this connection, if the client sends one

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def _start_timer(self) -> None:
        self._stop_timer()
        self._timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_late(self) -> None:
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():  # still no complete headers
            self.transport.close()
