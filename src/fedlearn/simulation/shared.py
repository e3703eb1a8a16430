"""Publish a parameter set into shared memory and map it read-only in another process.

The pool sends the same global model to many nodes each round. Writing it once into a POSIX
shared-memory block and mapping that block read-only in the workers replaces one pickled copy per
node with one copy per round. Replies travel the same way in the other direction: the worker
writes its trained parameters once, and the parent maps them without copying. Only a small JSON
layout (name, dtype, shape, offset) crosses the pipe. NumPy views onto a mapping keep it alive,
so a block's name can be unlinked as soon as it is mapped: the memory goes away with the last view.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from multiprocessing import resource_tracker
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


def hand_over(params: ParamSet) -> tuple[str, Layout]:
    """Publish ``params`` for another process that will :func:`attach` it with ``take=True``.

    This process lets go of the block entirely, so its resource tracker will not unlink it at exit.
    """
    block = publish(params)
    resource_tracker.unregister(block.memory._name, "shared_memory")  # type: ignore[attr-defined]
    block.memory.close()
    return block.name, block.layout


def attach(name: str, layout: Layout, *, take: bool = False) -> ParamSet:
    """Map a published block read-only and view it as a ``ParamSet`` (no copy).

    With ``take=True`` the block's name is unlinked once it is mapped, for blocks handed over
    with :func:`hand_over`: nobody else will open it, and the memory lives as long as the views.
    """
    path = os.path.join(_SHM_DIR, name)
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        mapping = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
        if take:
            os.unlink(path)
    arrays: dict[str, Any] = {}
    for key, dtype, shape, offset in layout:
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        arrays[key] = np.frombuffer(mapping, dtype=dt, count=count, offset=offset).reshape(shape)
    return ParamSet(arrays)
