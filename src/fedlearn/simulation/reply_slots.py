"""Recycled shared-memory slots that carry replies from pool workers to the parent.

A fresh shared-memory block per reply costs more than the copy it saves: the worker faults every
page of the new block in, the parent faults them in again when it maps the block, and unmapping
it frees them all. With a 4 MB model that was several milliseconds a reply, about a third of a
node's fit. So each worker keeps a few slots and writes each reply into a free one; the parent
maps each slot once and views the reply in place, without copying.

A slot is free again when the parent has dropped the reply: the parent's views hang off one
holder array per reply, and a finalizer on that holder queues the slot's name, which the pool
sends back to its worker with the next message. A reply the engine still holds (a robust
reducer keeps a whole round's) keeps its slot, so the worker then simply makes another one;
nothing ever waits for a release.

Slot names are unlinked as soon as the parent maps them, so a crash of either process leaks
nothing that outlives both mappings. A slot keeps its mapping but no file descriptor, so a round
whose replies are all held at once (10,000 nodes under a robust reducer) does not run into the
process's limit on open files.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import weakref
from collections import deque
from typing import Any

import numpy as np

from fedlearn.core.params import ParamSet
from fedlearn.simulation.shared import SHM_DIR, Layout, block_name, plan_layout, view_layout, write_layout


class WorkerSlots:
    """A worker's slots: it writes each reply into a free one and learns of releases by name.

    ``owner`` is the pool's parent process, whose pid names the slots (see ``block_name``).
    """

    def __init__(self, owner: int) -> None:
        self._owner = owner
        self._slots: dict[str, _Slot] = {}
        self._free: set[str] = set()
        self._retired: list[str] = []

    def release(self, name: str) -> None:
        if name in self._slots:
            self._free.add(name)

    def write(self, params: ParamSet) -> dict[str, Any]:
        """Copy ``params`` into a free slot; the header the parent needs to view them."""
        layout, size = plan_layout(params)
        name = ""
        if size:
            slot = self._acquire(size)
            write_layout(slot.buf, layout, params)
            name = slot.name
        retired, self._retired = self._retired, []
        return {"slot": name, "layout": layout, "retired": retired}

    def close(self) -> None:
        for slot in self._slots.values():
            slot.buf.close()
            with contextlib.suppress(FileNotFoundError):  # the parent unlinks every slot it mapped
                os.unlink(os.path.join(SHM_DIR, slot.name))
        self._slots.clear()
        self._free.clear()

    def _acquire(self, size: int) -> _Slot:
        fitting = [name for name in self._free if self._slots[name].size >= size]
        if fitting:
            name = min(fitting, key=lambda n: self._slots[n].size)
            self._free.discard(name)
            return self._slots[name]
        for name in self._free:  # every free slot is too small for this reply: retire them
            self._slots.pop(name).buf.close()
            self._retired.append(name)
        self._free.clear()
        slot = _Slot.create(size, owner=self._owner)
        self._slots[slot.name] = slot
        return slot


class _Slot:
    """A named shared-memory block mapped read-write, without an open file descriptor."""

    __slots__ = ("buf", "name", "size")

    def __init__(self, name: str, buf: mmap.mmap) -> None:
        self.name = name
        self.buf = buf
        self.size = len(buf)

    @classmethod
    def create(cls, size: int, *, owner: int) -> _Slot:
        name = block_name("reply", owner=owner)
        fd = os.open(os.path.join(SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, size)
            return cls(name, mmap.mmap(fd, size))
        finally:
            os.close(fd)


class ParentSlots:
    """The parent's view of one worker's slots: each is mapped once, replies are viewed in place."""

    def __init__(self) -> None:
        self._mappings: dict[str, mmap.mmap] = {}
        self._released: deque[str] = deque()  # one object for good: finalizers append to it at any time

    def view(self, header: dict[str, Any]) -> ParamSet:
        """The reply's arrays, read-only views into its slot; the slot is released when they go."""
        for retired in header["retired"]:
            self._mappings.pop(retired, None)  # views of a retired slot keep its mapping alive
        name: str = header["slot"]
        layout: Layout = header["layout"]
        if not name:
            return view_layout(b"", layout)
        mapping = self._mappings.get(name)
        if mapping is None:
            mapping = self._mappings[name] = _map_and_unlink(name)
        holder = np.frombuffer(mapping, dtype=np.uint8)  # every view's base: it dies with the last
        weakref.finalize(holder, self._released.append, name)
        return view_layout(holder, layout)

    def take_released(self) -> list[str]:
        """Names of the slots released since the last call."""
        released = []
        while self._released:
            released.append(self._released.popleft())
        return released

    def close(self) -> None:
        self._mappings.clear()  # views still alive keep their mapping; the rest unmap now


def _map_and_unlink(name: str) -> mmap.mmap:
    path = os.path.join(SHM_DIR, name)
    fd = os.open(path, os.O_RDONLY)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
        os.unlink(path)
