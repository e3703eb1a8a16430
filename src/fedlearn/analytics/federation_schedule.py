"""Scheduled refreshes of standing federations: a background thread on the coordinator.

Every ``poll`` seconds the scheduler asks the store which federations are due (``refresh_seconds``
since their last refresh, or never refreshed) and refreshes each in turn. A refresh has its own
deadlines (each node's ``timeout``, the ``wait`` for the nodes), so one unreachable member delays a
refresh by at most its timeout and is recorded stale; nodes busy with a training run, or a change in
progress, make the scheduler try again at its next poll. Nothing here blocks the HTTP API.
"""

from __future__ import annotations

import logging
import threading

from fedlearn.analytics.federation import Federations
from fedlearn.core.checks import POSITIVE, check_real
from fedlearn.core.errors import FedlearnError, FleetBusy

logger = logging.getLogger(__name__)

DEFAULT_POLL_SECONDS = 1.0


class FederationScheduler:
    """Refreshes due federations from a daemon thread; ``start`` it, ``close`` it."""

    def __init__(self, federations: Federations, *, poll: float = DEFAULT_POLL_SECONDS) -> None:
        self._federations = federations
        self._poll = check_real("poll", poll, POSITIVE)
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._closing.clear()
        self._thread = threading.Thread(target=self._loop, name="fedlearn-federations", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_due(self) -> list[str]:
        """Refresh every federation due now; returns the ones refreshed. Failures are logged, not raised."""
        done = []
        for name in self._federations.due():
            if self._closing.is_set():
                break
            try:
                self._federations.refresh(name, scheduled=True)
                done.append(name)
            except FleetBusy as exc:
                logger.info("federation %s: scheduled refresh postponed: %s", name, exc)
            except FedlearnError as exc:  # a deleted federation, a store hiccup: try again at the next poll
                logger.warning("federation %s: scheduled refresh failed: %s", name, exc)
        return done

    def _loop(self) -> None:
        while not self._closing.wait(self._poll):
            try:
                self.run_due()
            except Exception:  # keep scheduling; the reason is in the log for the operator
                logger.exception("federation scheduler: unexpected error")
