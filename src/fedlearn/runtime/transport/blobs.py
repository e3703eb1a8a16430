"""Where blobs live between being sent and being used, on each side of the link.

Coordinator: :class:`BlobStore` encodes a parameter set once per version, however many nodes get
it, and holds the blob (a header plus views of the arrays, see ``stream``) while any open task
refers to it. The engine hands every node of a round the same ``ParamSet`` object, so the store
recognises a version by identity first and only encodes what it has not seen. It also keeps the
last versions it published after their tasks end, because the parameters a round evaluates are
the ones the next round trains from, but only until a new version arrives: a blob holds its
arrays, and a version the engine has moved on from must not stay in memory beside the new one.

Node: :class:`ParamCache` keeps the last two decoded blobs by digest, so a node that already holds
the current global parameters does not download them again. Before a download it lets go of
what would take it past its byte budget, so a node with a large model never holds the old
version while it receives the new one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass

from fedlearn.core.params import ParamSet
from fedlearn.runtime.transport.stream import EMPTY_BLOB, Blob, stream_encode

_RECENT = 2
DEFAULT_CACHE_BYTES = 2**30  # 1 GiB: two versions of a model below 512 MB stay, a larger one replaces the last


@dataclass(slots=True)
class _Entry:
    blob: Blob
    users: int = 0


class BlobStore:
    """Encoded task blobs, shared by all nodes and counted by open tasks; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._recent: deque[tuple[ParamSet, Blob]] = deque(maxlen=_RECENT)  # strong refs keep ids unique
        self.encoded = 0

    def acquire(self, params: ParamSet) -> Blob:
        """The blob of ``params``, encoding it only if this version is new; one more user holds it."""
        if not params:
            return EMPTY_BLOB
        with self._lock:
            blob = next((b for p, b in self._recent if p is params), None)
        fresh = blob is None
        if blob is None:
            blob = stream_encode(params)  # outside the lock: hashing a large model takes a while
        with self._lock:
            entry = self._entries.setdefault(blob.digest, _Entry(blob=blob))
            entry.users += 1
            if fresh:
                self.encoded += 1
                previous = list(self._recent)
                in_use = [(p, b) for p, b in previous if self._users(b.digest) > 0]
                self._recent = deque([*in_use, (params, entry.blob)], maxlen=_RECENT)
                for _, old in previous:
                    self._drop_if_unused(old.digest)
            return entry.blob

    def release(self, digest: str) -> None:
        """One user is done with the blob; it goes once nobody uses it and it is not recent."""
        if not digest:
            return
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None:
                entry.users -= 1
                self._drop_if_unused(digest)

    def get(self, digest: str) -> Blob | None:
        with self._lock:
            entry = self._entries.get(digest)
            return entry.blob if entry is not None else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _users(self, digest: str) -> int:
        entry = self._entries.get(digest)
        return entry.users if entry is not None else 0

    def _drop_if_unused(self, digest: str) -> None:
        entry = self._entries.get(digest)
        if entry is not None and entry.users <= 0 and all(b.digest != digest for _, b in self._recent):
            del self._entries[digest]


class ParamCache:
    """The last few decoded blobs by digest, least recently used evicted first; one thread only."""

    def __init__(self, capacity: int = _RECENT, budget_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self._capacity = capacity
        self._budget = budget_bytes
        self._items: OrderedDict[str, ParamSet] = OrderedDict()

    def get(self, digest: str) -> ParamSet | None:
        params = self._items.get(digest)
        if params is not None:
            self._items.move_to_end(digest)
        return params

    def make_room(self, nbytes: int) -> None:
        """Evict the least recently used blobs until ``nbytes`` more would fit the byte budget."""
        while self._items and sum(p.nbytes for p in self._items.values()) + nbytes > self._budget:
            self._items.popitem(last=False)

    def put(self, digest: str, params: ParamSet) -> None:
        """Keep ``params``; the newest blob is always kept, however large, since its task uses it anyway."""
        self._items[digest] = params
        self._items.move_to_end(digest)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)
