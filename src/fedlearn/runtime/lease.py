"""Exclusive use of the fleet: one training run, or one other caller such as analytics, at a time.

The fleet has one reply queue, and a ``Gather`` drops replies that are not for its own tasks, so
two users gathering at once would steal each other's replies. Whoever sends tasks holds the lease.

A training run holds it for the whole run but lends it out between rounds, when the engine is not
gathering, to anyone waiting: callers waiting in :meth:`FleetLease.borrow` always go before a run
taking the lease (back), so an analytics request waits for the current round, not the whole run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from fedlearn.core.errors import FleetBusy


class FleetLease:
    """Who may send tasks to the fleet right now; safe to use from any thread."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._holder: str | None = None
        self._borrowers = 0

    @property
    def holder(self) -> str | None:
        """A description of who holds the lease (``"training run ID"``), or None when it is free."""
        with self._changed:
            return self._holder

    @property
    def contended(self) -> bool:
        """True while a borrower is waiting: a run should lend the lease at its next chance."""
        with self._changed:
            return self._borrowers > 0

    def hold(self, holder: str, timeout: float) -> bool:
        """Take the lease for a run once it is free and nobody waits to borrow it; False after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._holder is not None or self._borrowers:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            self._holder = holder
            return True

    def release(self, holder: str) -> None:
        """Give the lease back; a no-op unless ``holder`` holds it, so a double release is harmless."""
        with self._changed:
            if self._holder == holder:
                self._holder = None
                self._changed.notify_all()

    @contextmanager
    def borrow(self, holder: str, wait: float) -> Iterator[None]:
        """Hold the lease for the ``with`` block, waiting at most ``wait`` seconds for it.

        Raises :class:`~fedlearn.core.errors.FleetBusy`, naming who holds the lease, when it does not come free in time.
        """
        deadline = time.monotonic() + wait
        with self._changed:
            self._borrowers += 1
            try:
                while self._holder is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise FleetBusy(
                            f"the nodes are busy: {self._holder} did not free them within {wait:g} s "
                            "(a run frees them between rounds); try again when it finishes, or allow a longer `wait`"
                        )
                    self._changed.wait(remaining)
                self._holder = holder
            finally:
                self._borrowers -= 1
                self._changed.notify_all()  # a run waiting for the borrowers to go may now proceed
        try:
            yield
        finally:
            self.release(holder)
