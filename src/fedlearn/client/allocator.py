"""Keep freed model-sized buffers in the process instead of handing them back to the kernel.

Every fit allocates arrays the size of the model (the local copy, the SGD scratch, each step's
gradients), and the engine allocates more (the update) before freeing them all again. glibc's
malloc adapts its thresholds as it goes and, with this pattern, keeps returning the freed top of
the heap to the kernel, so the next node's arrays fault every page back in. On a 4 MB model that
was about 2,000 page faults per node and roughly a third of the round time (see BENCHMARKS.md),
while a plain NumPy loop with luckier allocation lifetimes saw 300.

:func:`retain_freed_memory` fixes both thresholds once per process: arrays up to 32 MiB (glibc's
largest allowed mmap threshold) come from the heap, and up to 256 MiB of freed heap is kept for
reuse rather than trimmed. The cost is that the process keeps that much memory after a run; peak
memory is unchanged. It changes the whole process for good, so it is applied only where
fedlearn owns the process or is asked to: each process-pool worker when it starts, a deployed
node when it is built, and an in-process simulation when ``simulate(..., tune_allocator=True)``
says so (``fedlearn simulate`` does, per ``[simulation] tune_allocator``). On a C library without
``mallopt`` (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's <malloc.h>
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20
TRIM_THRESHOLD_BYTES = 256 * 2**20


@functools.cache
def retain_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds (once per process); True when they were set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
