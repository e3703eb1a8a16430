"""The one boundary between the round engine and whatever carries tasks to nodes.

A ``Fleet`` only moves things: it lists nodes, sends a task and hands back replies as they
arrive. Sampling, deadlines, retries, ordering and validation all live in the engine, written
once, so the in-process simulator, the process pool, Ray and the gRPC coordinator behave alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from fedlearn.core.messages import Reply, Task


@runtime_checkable
class Fleet(Protocol):
    def available(self) -> Sequence[str]:
        """IDs of the nodes that can take a task right now, in a stable order."""
        ...

    def send(self, node_id: str, task: Task) -> None:
        """Queue ``task`` for ``node_id``; never blocks on the node doing the work."""
        ...

    def receive(self, timeout: float) -> list[Reply]:
        """Replies that have arrived, waiting at most ``timeout`` seconds for the first one.

        Each reply carries the ``run_id`` of the task it answers, set by the fleet itself. A
        node known to be gone may be reported at once as a ``Reply`` with ``error`` set, so the
        engine need not wait for the deadline.
        """
        ...

    def close(self) -> None:
        """Release workers, connections and shared memory."""
        ...
