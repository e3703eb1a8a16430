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

    A reply counts at the size its header announces, from the header on (before a byte of it is
    buffered) until its upload ends. A node's replies together may take ``per_node`` bytes of a
    shared buffer of ``total`` bytes, so however slowly it sends, no node holds more than its
    share; a second upload of a node that would pass its share is refused at once (an honest node
    uploads one reply at a time). A reply larger than ``per_node``, from a node with nothing else
    in flight, goes through a lane of its own, one such reply at a time: a large model can still
    be sent, and a node that announces a huge reply and then trickles it holds up only the other
    large replies. Memory for replies being received is thus at most ``total`` plus the largest
    reply, however many nodes send. Uploads wait for room first come first served, in each lane,
    for at most ``timeout``; then they are refused with a message naming the limit.
    """

    def __init__(self, *, total: int, per_node: int) -> None:
        self.total = total
        self.per_node = per_node
        self._changed = threading.Condition()
        self._shared = 0  # bytes held in the shared buffer
        self._large = False  # whether the lane for a reply larger than per_node is taken
        self._by_node: dict[str, int] = {}
        self._queues: dict[bool, collections.deque[object]] = {False: collections.deque(), True: collections.deque()}

    def acquire(self, node: str, nbytes: int, *, timeout: float) -> str | None:
        """Hold ``nbytes`` for ``node``'s upload, waiting up to ``timeout`` s; or say why not."""
        if nbytes == 0:
            return None
        with self._changed:
            mine = self._by_node.get(node, 0)
            large = mine + nbytes > self.per_node
            if large and mine:
                return (
                    f"node {node} is already sending {mine} bytes of replies; another {nbytes} would pass the "
                    f"{self.per_node} bytes a node's uploads may hold at once (node_upload_bytes)"
                )
            self._by_node[node] = mine + nbytes
            queue = self._queues[large]
            ticket = object()
            queue.append(ticket)
            deadline = time.monotonic() + timeout
            try:
                while queue[0] is not ticket or (self._large if large else self._shared + nbytes > self.total):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._give_back(node, nbytes)
                        return self._no_room(node, nbytes, large, timeout)
                    self._changed.wait(remaining)
                if large:
                    self._large = True
                else:
                    self._shared += nbytes
                return None
            finally:
                queue.remove(ticket)
                self._changed.notify_all()

    def release(self, node: str, nbytes: int) -> None:
        """``node``'s upload of ``nbytes`` has ended, received or not."""
        if nbytes == 0:
            return
        with self._changed:
            if nbytes > self.per_node:  # only a reply in the large lane can be this big
                self._large = False
            else:
                self._shared -= nbytes
            self._give_back(node, nbytes)
            self._changed.notify_all()

    def _give_back(self, node: str, nbytes: int) -> None:
        left = self._by_node.pop(node) - nbytes
        if left:
            self._by_node[node] = left

    def _no_room(self, node: str, nbytes: int, large: bool, timeout: float) -> str:
        waited = f"node {node}'s reply of {nbytes} bytes waited {timeout:g} s (upload_wait_timeout)"
        if large:
            return (
                f"{waited} behind another reply larger than node_upload_bytes ({self.per_node}); such replies are "
                "received one at a time"
            )
        return f"{waited} for room: {self._shared} bytes of other replies fill upload_buffer_bytes ({self.total})"
