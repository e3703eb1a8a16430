"""A node's lifetime privacy budget: one ledger across every run and analytics task on its data.

A coordinator's run ledger says what one run spent; it cannot say what the same rows gave away
to the run before, or to last week's analytics. So a node that sets ``[privacy] epsilon_budget``
keeps its own ledger in a file and charges it with every release it makes, and refuses any task
that would take it past the budget, before it computes anything (docs/privacy.md, "A node's
budget"). The coordinator can ask; it cannot reset what the node has spent.

The file is JSON, readable by the node's owner only (0600)::

    {"ledger": {"delta": 1e-05, "method": "rdp", "charges": [{"count": 12, "noise_multiplier": 1.1}]},
     "log": [{"time": "2025-03-14T09:26:53.589Z", "what": "fit task of run 'r1', round 3",
              "epsilon": 0.82, "charged": 0.07, "charge": {"count": 1, "noise_multiplier": 1.1}}, ...]}

``ledger`` is what the budget is checked against; ``log`` is a short history of the last
:data:`MAX_LOG_ENTRIES` charges and what they were for, for people. Every spend rewrites the
file atomically (a temporary file, fsync, rename, fsync of the directory), so a node killed at
any instant leaves either the old ledger or the new one, never a torn or empty one. A file that
does not parse is never taken as an empty ledger: the node refuses to start and says so, since
starting afresh would silently hand back budget that was spent.

Only one process may hold a ledger: it is locked (``flock``) for as long as the budget is open,
so two nodes started with one config cannot each spend the same budget.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from fedlearn.core.checks import POSITIVE, Interval, check
from fedlearn.core.errors import ConfigError, PrivacyError
from fedlearn.privacy.ledger import Charge, PrivacyLedger

MAX_LOG_ENTRIES = 1000
"""Charges kept in a ledger file's ``log``; the ledger itself keeps every charge (merged by kind)."""
_DELTA = Interval(0, 1, closed="neither")


class PrivacyBudget(Protocol):
    """What a release on a node asks before it happens: may I spend ``charge``? Raises PrivacyError if not.

    ``what`` says, for the ledger's log and the refusal message, which task the charge is for.
    Returns the node's ε after the charge.
    """

    def spend(self, charge: Charge, *more: Charge, what: str) -> float: ...


class NodeBudget:
    """A node's lifetime ledger in ``path``, charged against ``epsilon`` at ``delta``; see the module.

    Open it with :meth:`open`, which creates the file on the first start and refuses a corrupt one.
    """

    def __init__(self, path: Path, *, epsilon: float, ledger: PrivacyLedger, log: list[dict[str, Any]], lock: int):
        self.path = path
        self.budget = epsilon
        self._ledger = ledger
        self._epsilon = ledger.epsilon()
        self._log = log
        self._lock_fd = lock
        self._mutex = threading.Lock()

    @classmethod
    def open(cls, path: str | Path, *, epsilon: float, delta: float = 1e-5) -> NodeBudget:
        """The budget kept in ``path`` (made, empty, if absent); ConfigError for a file that is not a ledger."""
        check("epsilon_budget", epsilon, POSITIVE)
        check("delta", delta, _DELTA)
        path = Path(path)
        lock = _lock(path)
        try:
            if path.exists():
                ledger, log = _read(path, delta)
            else:
                ledger, log = PrivacyLedger(delta=delta), []
                _write(path, ledger, log)
        except BaseException:
            os.close(lock)
            raise
        return cls(path, epsilon=epsilon, ledger=ledger, log=log, lock=lock)

    @property
    def delta(self) -> float:
        return self._ledger.delta

    @property
    def ledger(self) -> PrivacyLedger:
        return self._ledger

    def epsilon(self) -> float:
        """ε spent so far, at the node's δ."""
        return self._epsilon

    def spend(self, charge: Charge, *more: Charge, what: str) -> float:
        """Record the charges durably, all or none, and return the new ε; PrivacyError, nothing spent, past the budget.

        A task that releases twice (a DP-SGD fit whose update the run noises again) passes both, so
        a refusal never leaves half of it spent.
        """
        with self._mutex:
            ledger = self._ledger
            for each in (charge, *more):
                ledger = ledger.plus(each)
            after = ledger.epsilon()
            if not after <= self.budget:
                raise PrivacyError(
                    f"{what} would bring this node's ε to {after:.4g}, above its lifetime budget "
                    f"[privacy] epsilon_budget = {self.budget:g} at δ = {self.delta:g} (spent so far: "
                    f"{self._epsilon:.4g}); it is refused"
                )
            charges = [each.to_json() for each in (charge, *more)]
            charged = {
                "epsilon": after,
                "charged": after - self._epsilon,
                "charge": charges[0] if not more else charges,
            }
            entry = {"time": _now(), "what": what, **charged}
            log = [*self._log, entry][-MAX_LOG_ENTRIES:]
            _write(self.path, ledger, log)
            self._ledger, self._log, self._epsilon = ledger, log, after
            return after

    def spent_for(self, what: str) -> tuple[float, float] | None:
        """The latest charge for ``what`` as (ε it added, the node's ε after it), if the log still holds one."""
        with self._mutex:
            for entry in reversed(self._log):
                if entry.get("what") == what:
                    return float(entry.get("charged", 0.0)), float(entry["epsilon"])
        return None

    def close(self) -> None:
        """Release the ledger's lock; the file stays as it is."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _lock(path: Path) -> int:
    """An exclusive lock on ``path``'s lock file, or ConfigError if another process holds it."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"[privacy] ledger: cannot open {str(lock_path)!r}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(
            f"[privacy] ledger {str(path)!r} is in use by another process; a ledger belongs to one node"
        ) from None
    return fd


def _read(path: Path, delta: float) -> tuple[PrivacyLedger, list[dict[str, Any]]]:
    """The ledger and log in ``path``, at the node's δ; ConfigError, never an empty ledger, if it is unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        charges = PrivacyLedger.from_json(data["ledger"]).charges
        log = data.get("log", [])
        if not isinstance(log, list) or not all(isinstance(e, dict) for e in log):
            raise ValueError("`log` is not a list of entries")
        ledger = PrivacyLedger(delta=delta, charges=charges)
        if not math.isfinite(ledger.epsilon()):
            raise ValueError("its charges compose to an infinite ε")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"[privacy] ledger {str(path)!r} is corrupt or unreadable ({type(exc).__name__}: {exc}); the node "
            "will not start, because starting with an empty ledger would hand back spent budget. Restore the file "
            "from a backup, or move it away only if you accept that what it recorded is forgotten"
        ) from None
    return ledger, log


def _write(path: Path, ledger: PrivacyLedger, log: list[dict[str, Any]]) -> None:
    """Replace ``path`` atomically and durably: temporary file (0600), fsync, rename, fsync of the directory."""
    text = json.dumps({"ledger": ledger.to_json(), "log": log}, allow_nan=False, separators=(",", ":"))
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(text.encode())
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise PrivacyError(f"cannot record the charge in the ledger {str(path)!r}: {exc.strerror}") from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
