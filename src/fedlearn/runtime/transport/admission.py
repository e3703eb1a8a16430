"""How much of the coordinator one node may occupy: open calls, and bytes of replies being received.

Authentication says who a peer is; these bounds say how much it may hold, so that one node, buggy
or in hostile hands, cannot starve the others. Each check answers with a refusal that names its
limit, or None; the handlers turn a refusal into ``RESOURCE_EXHAUSTED``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time

logger = logging.getLogger(__name__)


class CallLimit:
    """At most ``limit`` open calls per node, of any method.

    An honest node holds one session and one transfer at a time, and briefly a second session
    while it reconnects, so a limit of a few calls costs it nothing and keeps a node that opens
    hundreds of streams to a handful of the server's threads. The first refusal while a node is
    at its limit is logged; the rest are not, since the node may be refused thousands of times.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._refusing: set[str] = set()

    def admit(self, node: str) -> str | None:
        """Count a new call of ``node``, or say why it is refused (then it is not counted)."""
        with self._lock:
            count = self._open.get(node, 0)
            if count < self.limit:
                self._open[node] = count + 1
                return None
            first = node not in self._refusing
            self._refusing.add(node)
        reason = f"node {node} already has {count} calls open; a node may have {self.limit} (max_calls_per_node)"
        if first:
            logger.warning("refusing calls: %s", reason)
        return reason

    def release(self, node: str) -> None:
        """One call of ``node`` has ended."""
        with self._lock:
            count = self._open.pop(node) - 1
            if count:
                self._open[node] = count
            self._refusing.discard(node)


class ReplyBuffer:
    """Bytes of replies being received, bounded per node and in total.

    A reply counts at the size its header announces, from the header on, before a byte of it is
    buffered, and until its upload ends. Per node: a node's uploads together may hold
    ``per_node`` bytes, but a single upload may be as large as a reply may be, so a node can
    always send its reply; a second upload that would pass the bound is refused at once (an honest
    node uploads one reply at a time). In total: uploads wait, first come first served, until
    they fit in ``total`` bytes, a single one again being allowed to exceed it. So memory for
    replies being received is at most ``max(total, the largest reply)``, however many nodes send.
    Waiting has a deadline: an upload that finds no room within it is refused.
    """

    def __init__(self, *, total: int, per_node: int) -> None:
        self.total = total
        self.per_node = per_node
        self._changed = threading.Condition()
        self._held = 0
        self._by_node: dict[str, int] = {}
        self._queue: collections.deque[object] = collections.deque()

    def acquire(self, node: str, nbytes: int, *, timeout: float) -> str | None:
        """Hold ``nbytes`` for ``node``'s upload, waiting up to ``timeout`` s; or say why not."""
        if nbytes == 0:
            return None
        with self._changed:
            mine = self._by_node.get(node, 0)
            if mine and mine + nbytes > self.per_node:
                return (
                    f"node {node} is already sending {mine} bytes of replies; another {nbytes} would pass the "
                    f"{self.per_node} bytes a node's uploads may hold at once (node_upload_bytes)"
                )
            self._by_node[node] = mine + nbytes
            ticket = object()
            self._queue.append(ticket)
            deadline = time.monotonic() + timeout
            try:
                while self._queue[0] is not ticket or (self._held > 0 and self._held + nbytes > self.total):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._give_back(node, nbytes)
                        return (
                            f"node {node}'s reply of {nbytes} bytes found no room in {timeout:g} s: the coordinator "
                            f"is receiving {self._held} bytes of other replies (upload_buffer_bytes={self.total})"
                        )
                    self._changed.wait(remaining)
                self._held += nbytes
                return None
            finally:
                self._queue.remove(ticket)
                self._changed.notify_all()

    def release(self, node: str, nbytes: int) -> None:
        """``node``'s upload of ``nbytes`` has ended, received or not."""
        if nbytes == 0:
            return
        with self._changed:
            self._held -= nbytes
            self._give_back(node, nbytes)
            self._changed.notify_all()

    def _give_back(self, node: str, nbytes: int) -> None:
        left = self._by_node.pop(node) - nbytes
        if left:
            self._by_node[node] = left
