"""Publish a parameter set into shared memory and map it read-only in another process.

The pool sends the same global model to many nodes each round. Writing it once into a POSIX
shared-memory block and mapping that block read-only in the workers replaces one pickled copy per
node with one copy per round. Only a small JSON layout (name, dtype, shape, offset) crosses the
pipe. NumPy views onto a mapping keep it alive, so a block's name can be unlinked while workers
still use it: the memory goes away with the last view. Replies travel back through recycled
slots built from the same layout helpers (see ``reply_slots``).
"""

from __future__ import annotations

import mmap
import os
import secrets
from dataclasses import dataclass
from multiprocessing import resource_tracker
from typing import Any

import numpy as np

from fedlearn.core.params import ParamSet

_ALIGN = 64
SHM_DIR = "/dev/shm"
SHM_PREFIX = "fedlearn_"


def block_name(role: str, *, owner: int | None = None) -> str:
    """``fedlearn_<owner pid>_<role>_<random>``: whose pool a block serves, and what it holds.

    ``owner`` is the pool's parent process (default: this one); its workers name their reply
    slots after it too. A block left in ``/dev/shm`` then says which process to look at, and
    each test can watch its own pool's blocks alone, whatever else runs on the machine.
    """
    return f"{SHM_PREFIX}{os.getpid() if owner is None else owner}_{role}_{secrets.token_hex(8)}"


Layout = list[tuple[str, str, list[int], int]]


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def plan_layout(params: ParamSet) -> tuple[Layout, int]:
    """Where each array goes in a block: ``(name, dtype, shape, offset)`` rows and the block size."""
    layout: Layout = []
    offset = 0
    for name, array in params.items():
        layout.append((name, array.dtype.str, list(array.shape), offset))
        offset = _aligned(offset + array.nbytes)
    return layout, offset


def write_layout(buffer: memoryview | mmap.mmap | None, layout: Layout, params: ParamSet) -> None:
    """Copy ``params`` into ``buffer`` (a block's ``buf``) at the offsets of ``layout``."""
    if buffer is None:
        raise ValueError("cannot write into a closed shared-memory block")
    for (_, _, _, start), array in zip(layout, params.values(), strict=True):
        if array.nbytes:
            buffer[start : start + array.nbytes] = np.ascontiguousarray(array).reshape(-1).view(np.uint8).data


def view_layout(buffer: Any, layout: Layout) -> ParamSet:
    """Arrays viewing ``buffer`` (no copy), all with one ``uint8`` array over it as their base."""
    holder = buffer if isinstance(buffer, np.ndarray) else np.frombuffer(buffer, dtype=np.uint8)
    arrays: dict[str, Any] = {}
    for key, dtype, shape, offset in layout:
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        arrays[key] = holder[offset : offset + nbytes].view(dt).reshape(shape)
    return ParamSet(arrays)


@dataclass(slots=True)
class SharedBlock:
    """One published parameter set; ``users`` counts tasks that still need it."""

    name: str
    buffer: mmap.mmap
    layout: Layout
    users: int = 0

    def release(self) -> None:
        self.buffer.close()
        os.unlink(os.path.join(SHM_DIR, self.name))
        resource_tracker.unregister(f"/{self.name}", "shared_memory")


def publish(params: ParamSet) -> SharedBlock:
    """Copy ``params`` into a fresh shared-memory block.

    The name is handed to Python's resource tracker (a separate process that unlinks what a dead
    parent left) *before* the block exists. ``SharedMemory`` registers only after creating it, so
    a parent SIGKILLed in between leaked the block for good; now a kill at any point leaves at
    worst a name the tracker finds already gone.
    """
    layout, size = plan_layout(params)
    name = block_name("model")
    resource_tracker.register(f"/{name}", "shared_memory")
    try:
        fd = os.open(os.path.join(SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    except BaseException:
        resource_tracker.unregister(f"/{name}", "shared_memory")
        raise
    try:
        os.ftruncate(fd, max(size, 1))
        buffer = mmap.mmap(fd, max(size, 1))
    except BaseException:
        os.unlink(os.path.join(SHM_DIR, name))
        resource_tracker.unregister(f"/{name}", "shared_memory")
        raise
    finally:
        os.close(fd)
    write_layout(buffer, layout, params)
    return SharedBlock(name=name, buffer=buffer, layout=layout)


def attach(name: str, layout: Layout) -> ParamSet:
    """Map a published block read-only and view it as a ``ParamSet`` (no copy)."""
    fd = os.open(os.path.join(SHM_DIR, name), os.O_RDONLY)
    try:
        mapping = mmap.mmap(fd, os.fstat(fd).st_size, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    return view_layout(mapping, layout)
