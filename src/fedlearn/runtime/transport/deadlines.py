"""Server-side deadlines for streams whose peer has gone quiet.

gRPC lets a client put a deadline on a call but gives the server none: a handler that reads the
next message of a stream, or sends the next chunk of one, waits for as long as the peer lets it.
A peer that opens streams and sends nothing would hold one of the server's threads per stream
for ever, and a few hundred of them starve every other node. A :class:`Watchdog` is the missing
deadline. A watched call says by when its peer must next move (:meth:`Deadline.expect`); a call
that misses it is cancelled, which wakes its handler with an error, and the reason is logged.

One thread watches every call, and only while there is something to watch. Time in which that
thread could not run at all (the process's GIL held for seconds, e.g. by a large decode) is not
counted against anyone: the peers' handlers could not run either.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

_TICK = 0.1  # seconds between looks at the clock: the precision of every deadline


class Deadline:
    """One call's deadline; it starts unarmed, so the call cannot be cancelled until it ``expect``s.

    ``missed`` is the reason once the deadline was missed. A handler needs it because a
    cancelled stream does not always read as an error: gRPC may report it as the peer's end of
    stream, which would otherwise pass for a truncated upload.
    """

    __slots__ = ("_cancel", "_watchdog", "missed")

    def __init__(self, watchdog: Watchdog, cancel: Callable[[], None]) -> None:
        self._watchdog = watchdog
        self._cancel = cancel
        self.missed: str | None = None

    def expect(self, seconds: float, reason: str) -> None:
        """The peer must move within ``seconds`` from now, or the call is cancelled and ``reason`` logged."""
        self._watchdog.arm(self, seconds, reason)

    def clear(self) -> None:
        """No deadline until the next ``expect``: the handler, not the peer, is busy, or the call is over."""
        self._watchdog.disarm(self)

    def cancel(self, reason: str) -> None:
        self.missed = reason
        self._cancel()


class Watchdog:
    """Cancels calls whose peer misses its deadline; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: dict[Deadline, tuple[float, str]] = {}
        self._running = False

    def watch(self, cancel: Callable[[], None]) -> Deadline:
        """A deadline for one call; ``cancel`` ends the call (``context.cancel``) when it is missed."""
        return Deadline(self, cancel)

    def arm(self, deadline: Deadline, seconds: float, reason: str) -> None:
        with self._lock:
            self._due[deadline] = (time.monotonic() + seconds, reason)
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._run, name="fedlearn-watchdog", daemon=True).start()

    def disarm(self, deadline: Deadline) -> None:
        with self._lock:
            self._due.pop(deadline, None)

    def _run(self) -> None:
        last = time.monotonic()
        while True:
            time.sleep(_TICK)
            now = time.monotonic()
            stalled = now - last - _TICK
            last = now
            with self._lock:
                if not self._due:
                    self._running = False
                    return
                if stalled > _TICK:  # this thread could not run: nor could the handlers it watches
                    self._due = {d: (due + stalled, why) for d, (due, why) in self._due.items()}
                missed = [(d, why) for d, (due, why) in self._due.items() if due <= now]
                for deadline, _ in missed:
                    del self._due[deadline]
            for deadline, reason in missed:
                logger.warning("cutting a call off: %s", reason)
                deadline.cancel(reason)
