"""Pin the BLAS thread count while a node computes, in simulation and in deployment alike.

OpenBLAS splits a matrix product differently for different thread counts, and the sums come out
in a different order, so the same node with the same seed gives different low bits on a 2-thread
run than on a 1-thread run. Every node therefore computes with the same fixed count (default 1):
in process, in a pool worker or in a deployed node agent. Results then depend neither on the
executor, the worker count nor the machine's core count, which is what makes a simulation and a
deployment with the same seed agree bit for bit; and a pool of W workers uses W cores without
oversubscribing them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fedlearn.core.checks import check_int

if TYPE_CHECKING:
    from threadpoolctl import ThreadpoolController


class BlasThreads:
    """A reusable context manager; ``None`` leaves the libraries' own settings alone."""

    def __init__(self, count: int | None) -> None:
        if count is not None:  # None leaves BLAS alone
            check_int("blas_threads", count, low=1)
        self._count = count
        self._controller: ThreadpoolController | None = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if self._count is None:
            yield
            return
        if self._controller is None:  # built on first use, after the node has loaded its libraries
            from threadpoolctl import ThreadpoolController

            self._controller = ThreadpoolController()
        with self._controller.limit(limits=self._count, user_api="blas"):
            yield
