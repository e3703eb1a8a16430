"""Serving the HTTP API on a real loopback socket from a thread, for tests that talk to it over TCP."""

from __future__ import annotations

from fedlearn.web.server import running_in_thread

served_on_loopback = running_in_thread
"""Run a uvicorn server on a free loopback port in a daemon thread; yield the port, then stop it."""
