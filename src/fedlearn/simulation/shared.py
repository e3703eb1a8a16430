"""Publish a parameter set once into shared memory and map it read-only in other processes.

The pool sends the same global model to many nodes each round. Writing it once into a POSIX
shared-memory block and mapping that block read-only in the workers replaces one pickled copy per
node with one copy per round. Only a small JSON layout (name, dtype, shape, offset) crosses the
pipe; workers build NumPy views onto the mapping, which the kernel keeps alive until the last
view is gone.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from fedlearn.core.params import ParamSet

_ALIGN = 64
_SHM_DIR = "/dev/shm"

Layout = list[tuple[str, str, list[int], int]]


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


@dataclass(slots=True)
class SharedBlock:
    """One published parameter set; ``users`` counts tasks that still need it."""

    memory: SharedMemory
    layout: Layout
    users: int = 0

    @property
    def name(self) -> str:
        return self.memory.name

    def release(self) -> None:
        self.memory.close()
        self.memory.unlink()


def publish(params: ParamSet) -> SharedBlock:
    """Copy ``params`` into a fresh shared-memory block."""
    layout: Layout = []
    offset = 0
    for name, array in params.items():
        layout.append((name, array.dtype.str, list(array.shape), offset))
        offset = _aligned(offset + array.nbytes)
    memory = SharedMemory(create=True, size=max(offset, 1))
    for (_, _, _, start), array in zip(layout, params.values(), strict=True):
        if array.nbytes:
            memory.buf[start : start + array.nbytes] = np.ascontiguousarray(array).reshape(-1).view(np.uint8).data
    return SharedBlock(memory=memory, layout=layout)


def attach(name: str, layout: Layout) -> ParamSet:
    """Map a published block read-only and view it as a ``ParamSet`` (no copy)."""
    fd = os.open(os.path.join(_SHM_DIR, name), os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        mapping = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    arrays: dict[str, Any] = {}
    for key, dtype, shape, offset in layout:
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        arrays[key] = np.frombuffer(mapping, dtype=dt, count=count, offset=offset).reshape(shape)
    return ParamSet(arrays)
