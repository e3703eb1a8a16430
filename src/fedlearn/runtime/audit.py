"""A node's audit log: one JSON line per task it answered, so a site can show what was computed on its data.

The node calls the log (``NodeApp(audit=...)``) with every task and its reply, refusals included,
before the reply leaves: a record that cannot be written withholds the reply. Each record is
written with one ``write`` and synced to disk on its own, so a crash loses at most the task in
flight. The file is created readable by its owner only (0600); the node only ever appends to it.

A task's record::

    {"time": "2025-03-14T09:26:53.589Z", "event": "task", "node": "node-000", "run_id": "analytics-3f…",
     "kind": "analytics.summarize", "round": 2, "dataset": "visits", "columns": ["age", "bmi", "y"],
     "extrema": "withheld", "rows": 412, "outcome": "released",
     "released": {"moments/count": [], "moments/mean": [3], "moments/comoment": [3, 3], …}, "metrics": []}

``rows`` is the reply's example count: the rows a summary or a training round covered. ``released``
names each array sent back with its shape, and ``metrics`` each metric's name: never a value. A
refused task has ``"outcome": "refused"`` and the ``reason`` the coordinator was given. What a task
touched (``dataset``, ``columns``, …) comes from a :class:`Describe` function for its kind. When the
node starts it writes ``{"event": "start", "node": …, "policy": {…}}``, so the log also shows which
policy was in force.

What a task names (its run id, kind, dataset, columns) comes from the coordinator, so every string
is cut to :data:`~fedlearn.core.limits.DEFAULT_MAX_AUDIT_CHARS` characters and every list or mapping
to :data:`~fedlearn.core.limits.DEFAULT_MAX_AUDIT_ITEMS` entries, so no task can make its record
larger than some tens of kilobytes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from fedlearn.core.errors import ConfigError
from fedlearn.core.limits import DEFAULT_MAX_AUDIT_CHARS, DEFAULT_MAX_AUDIT_ITEMS
from fedlearn.core.messages import Reply, Task

logger = logging.getLogger(__name__)


class Describe(Protocol):
    """What a task touched on the node, for its record, e.g. ``{"dataset": "visits", "columns": [...]}``."""

    def __call__(self, task: Task, reply: Reply, /) -> Mapping[str, Any]: ...


def utc_now() -> str:
    """The current time as UTC ISO 8601 with milliseconds, e.g. ``2025-03-14T09:26:53.589Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bounded(value: Any) -> Any:
    """``value`` with every string, list and mapping cut to the audit bounds, saying how much was cut."""
    if isinstance(value, str):
        if len(value) <= DEFAULT_MAX_AUDIT_CHARS:
            return value
        return f"{value[:DEFAULT_MAX_AUDIT_CHARS]}… ({len(value) - DEFAULT_MAX_AUDIT_CHARS} more characters)"
    if isinstance(value, Mapping):
        items = list(value.items())
        kept = {bounded(str(k)): bounded(v) for k, v in items[:DEFAULT_MAX_AUDIT_ITEMS]}
        if len(items) > DEFAULT_MAX_AUDIT_ITEMS:
            kept["…"] = f"{len(items) - DEFAULT_MAX_AUDIT_ITEMS} more"
        return kept
    if isinstance(value, (list, tuple)):
        kept_items = [bounded(v) for v in value[:DEFAULT_MAX_AUDIT_ITEMS]]
        if len(value) > DEFAULT_MAX_AUDIT_ITEMS:
            kept_items.append(f"… {len(value) - DEFAULT_MAX_AUDIT_ITEMS} more")
        return kept_items
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return bounded(str(value))


def task_record(task: Task, reply: Reply, *, node: str, time: str, touched: Mapping[str, Any]) -> dict[str, Any]:
    """The audit record of one answered task (see the module docstring), already bounded."""
    record: dict[str, Any] = {
        "time": time,
        "event": "task",
        "node": node,
        "run_id": task.run_id,
        "kind": task.kind,
        "round": task.round,
        **touched,
        "rows": reply.num_examples,
    }
    if reply.ok:
        arrays = {**reply.params.spec(), **{f"extras/{k}": v for k, v in reply.extras.spec().items()}}
        record["outcome"] = "released"
        record["released"] = {name: list(shape) for name, (shape, _) in arrays.items()}
        record["metrics"] = sorted(reply.metrics)
    else:
        record["outcome"] = "refused"
        record["reason"] = reply.error
    return dict(bounded(record))


class AuditLog:
    """Appends audit records to ``path``: pass it as ``NodeApp(audit=...)``.

    ``describe`` maps task kinds to what their tasks touched; a kind without one is recorded with
    what every task carries. Records are written under a lock, one line each.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        node: str,
        describe: Mapping[str, Describe] | None = None,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.path = Path(path)
        self.node = node
        self._describe = dict(describe or {})
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"[policy] audit_log: cannot open {str(self.path)!r} for appending: {exc.strerror}"
            ) from None

    def __call__(self, task: Task, reply: Reply, /) -> None:
        describe = self._describe.get(task.kind)
        touched: Mapping[str, Any] = {}
        if describe is not None:
            try:
                touched = describe(task, reply)
            except Exception:  # a task too malformed to describe is still recorded, with its reply's reason
                logger.info("audit: could not describe a %s task", task.kind, exc_info=True)
        self.write(task_record(task, reply, node=self.node, time=self._clock(), touched=touched))

    def started(self, policy: Mapping[str, Any]) -> None:
        """Record that the node started, and under which policy."""
        self.write(bounded({"time": self._clock(), "event": "start", "node": self.node, "policy": policy}))

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record as one line, and sync it to disk before returning."""
        line = (json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
