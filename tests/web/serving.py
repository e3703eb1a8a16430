"""Serving the HTTP API on a real loopback socket from a thread, for tests that talk to it over TCP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fedlearn.runtime.coordinator import Coordinator
from fedlearn.runtime.store import Store
from fedlearn.simulation.inprocess import InProcessFleet
from fedlearn.web.api import create_app
from fedlearn.web.client import CoordinatorClient
from fedlearn.web.server import api_server, running_in_thread
from tests.web.test_api import ADMIN, _no_node

served_on_loopback = running_in_thread
"""Run a uvicorn server on a free loopback port in a daemon thread; yield the port, then stop it."""


@contextmanager
def coordinator_on_loopback(store: Store) -> Iterator[str]:
    """The URL of the API of a coordinator on ``store`` that has no node and is never started, served on loopback."""
    app = create_app(Coordinator(store, InProcessFleet([], _no_node)), admin_token=ADMIN)
    with served_on_loopback(api_server(app, host="127.0.0.1", port=0)) as port:
        yield f"http://127.0.0.1:{port}"


@contextmanager
def client_over_loopback(store: Store) -> Iterator[CoordinatorClient]:
    """A client over TCP to :func:`coordinator_on_loopback`, as the CLI talks to a coordinator."""
    with coordinator_on_loopback(store) as url, CoordinatorClient(url, admin_token=ADMIN) as opened:
        yield opened
