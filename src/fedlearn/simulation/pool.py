"""A process-pool fleet: virtual nodes spread over worker processes on one machine.

Node ``i`` always runs in worker ``i mod W``, so a node's state (e.g. SCAFFOLD's control variate)
stays in one process and results do not depend on ``W``. Workers are forked at construction,
before any training, and inherit the node factory and its data without pickling. Tasks carry a
JSON header and a reference to the round's parameters in shared memory (see ``shared``), which each
worker maps once per round; replies come back as a JSON header naming a recycled shared slot that
the parent views without copying (see ``reply_slots``). A worker that dies turns its pending tasks
into error replies, so the engine's deadline and quorum logic handle it like any lost node.

Each worker has at most ``MAX_IN_FLIGHT`` tasks on its pipe; the rest wait in the parent until a
reply frees a place. Without that bound a round over thousands of nodes deadlocked: the parent
sent every task before reading any reply, so both directions' buffers filled and all three
processes blocked in a send. A worker lives no longer than its parent: it asks the kernel for a
SIGTERM when the parent dies (however it dies) and then exits through its own clean-up, so a
killed run leaves no process behind, and Python's resource tracker unlinks the shared memory the
parent could not.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import multiprocessing as mp
import os
import signal
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from fedlearn.client.allocator import retain_freed_memory
from fedlearn.client.threads import BlasThreads
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import Reply, Task, pack, unpack
from fedlearn.core.params import ParamSet
from fedlearn.simulation.nodes import NodeCache, NodeFactory
from fedlearn.simulation.reply_slots import ParentSlots, WorkerSlots
from fedlearn.simulation.shared import SharedBlock, attach, publish

_STOP = b"{}"
_MAPPED_ROUNDS = 2  # global-parameter blocks a worker keeps mapped: this round's and the last
MAX_IN_FLIGHT = 16
"""Tasks a worker may have on its pipe at once: enough to keep it busy, far below the pipe's buffer."""
_PR_SET_PDEATHSIG = 1  # prctl option, from <linux/prctl.h>


@dataclass(slots=True)
class _Worker:
    process: Any
    conn: Connection
    pending: dict[tuple[str, str, int], tuple[str, str]] = field(default_factory=dict)  # key -> (block, run id)
    queued: deque[bytes] = field(default_factory=deque)  # task headers not yet on the pipe
    in_flight: int = 0  # tasks on the pipe or being worked on, not yet answered
    slots: ParentSlots = field(default_factory=ParentSlots)

    def dispatch(self) -> None:
        """Put queued tasks on the pipe while fewer than ``MAX_IN_FLIGHT`` are unanswered."""
        while self.queued and self.in_flight < MAX_IN_FLIGHT:
            self.conn.send_bytes(self.queued[0])
            self.queued.popleft()
            self.in_flight += 1

    def return_slots(self) -> None:
        """Tell the worker which of its reply slots the parent no longer views."""
        released = self.slots.take_released()
        if released:
            with contextlib.suppress(OSError):  # a dead worker needs no slots back
                self.conn.send_bytes(json.dumps({"release": released}).encode())


class ProcessPoolFleet:
    """Runs node tasks in ``workers`` forked processes; see the module docstring."""

    def __init__(
        self, node_ids: Sequence[str], factory: NodeFactory, *, workers: int, blas_threads: int | None = 1
    ) -> None:
        if workers < 1:
            raise ConfigError(f"`workers` must be >= 1; got {workers}")
        threads = BlasThreads(blas_threads)
        self._node_ids = list(node_ids)
        ctx = mp.get_context("fork")
        self._workers: list[_Worker] = []
        for _ in range(min(workers, max(1, len(self._node_ids)))):
            parent, child = ctx.Pipe()
            siblings = [w.conn for w in self._workers]  # the child inherits these ends and must close them
            process = ctx.Process(target=_worker_main, args=(child, factory, threads, siblings), daemon=True)
            process.start()
            child.close()
            self._workers.append(_Worker(process=process, conn=parent))
        self._home = {node: self._workers[i % len(self._workers)] for i, node in enumerate(self._node_ids)}
        self._blocks: dict[str, SharedBlock] = {}
        self._current: tuple[ParamSet, ParamSet, SharedBlock] | None = None
        self._undeliverable: list[Reply] = []

    def available(self) -> Sequence[str]:
        return [n for n in self._node_ids if self._home[n].process.is_alive()]

    def send(self, node_id: str, task: Task) -> None:
        worker = self._home[node_id]
        block = self._block_for(task)
        header = {
            "node": node_id,
            "kind": task.kind,
            "round": task.round,
            "run_id": task.run_id,
            "config": dict(task.config),
            "block": block.name,
            "layout": block.layout,
        }
        if not worker.process.is_alive():  # fail the task now rather than at the deadline
            self._undeliverable.append(
                Reply(
                    node_id=node_id,
                    kind=task.kind,
                    round=task.round,
                    run_id=task.run_id,
                    error="simulation worker is not running",
                )
            )
            return
        block.users += 1
        worker.pending[(node_id, task.kind, task.round)] = (block.name, task.run_id)
        worker.queued.append(json.dumps(header).encode())
        worker.return_slots()
        self._dispatch(worker)

    def receive(self, timeout: float) -> list[Reply]:
        if self._undeliverable:
            failed, self._undeliverable = self._undeliverable, []
            return failed
        for worker in self._workers:
            worker.return_slots()
        busy = [w for w in self._workers if w.pending]
        if not busy:
            wait([], timeout)
            return []
        handles: list[Any] = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        ready = set(wait(handles, timeout))
        replies: list[Reply] = []
        for worker in busy:
            if worker.conn in ready:  # a reply, or EOF because the worker died
                try:
                    replies.append(self._read_reply(worker))
                except (EOFError, OSError):
                    replies.extend(self._fail_pending(worker))
                    continue
                worker.in_flight -= 1
                self._dispatch(worker)
            elif worker.process.sentinel in ready:
                replies.extend(self._fail_pending(worker))
        if self._undeliverable:
            replies.extend(self._undeliverable)
            self._undeliverable = []
        return replies

    def close(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send_bytes(_STOP)
        for worker in self._workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():  # stuck in a task: SIGTERM lets it unlink its reply slots first
                worker.process.terminate()
                worker.process.join(timeout=2)
            if worker.process.is_alive():
                worker.process.kill()
            worker.conn.close()
            worker.slots.close()
        for block in self._blocks.values():
            block.release()
        self._blocks.clear()
        self._current = None

    def __enter__(self) -> ProcessPoolFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dispatch(self, worker: _Worker) -> None:
        """Move the worker's queued tasks onto its pipe; a dead worker fails all of its tasks at once."""
        try:
            worker.dispatch()
        except OSError:
            self._undeliverable.extend(self._fail_pending(worker))

    def _block_for(self, task: Task) -> SharedBlock:
        """The shared block holding this task's arrays, publishing them only if they are new."""
        current = self._current
        if current is not None and current[0] is task.params and _same_extras(current[1], task.extras):
            return current[2]
        block = publish(pack(task.params, task.extras))
        self._blocks[block.name] = block
        if current is not None:
            self._drop_if_unused(current[2])
        self._current = (task.params, task.extras, block)
        return block

    def _drop_if_unused(self, block: SharedBlock) -> None:
        current = self._current
        if block.users == 0 and (current is None or current[2] is not block):
            self._blocks.pop(block.name, None)
            block.release()

    def _finish(self, worker: _Worker, key: tuple[str, str, int]) -> str:
        """Settle a pending task; returns the run id it was sent with."""
        name, run_id = worker.pending.pop(key, ("", ""))
        block = self._blocks.get(name)
        if block is not None:
            block.users -= 1
            self._drop_if_unused(block)
        return run_id

    def _read_reply(self, worker: _Worker) -> Reply:
        header = json.loads(worker.conn.recv_bytes())
        params, extras = unpack(worker.slots.view(header))
        key = (header["node"], header["kind"], header["round"])
        run_id = self._finish(worker, key)
        return Reply(
            node_id=header["node"],
            kind=header["kind"],
            round=header["round"],
            run_id=run_id,
            params=params,
            extras=extras,
            num_examples=header["num_examples"],
            metrics=header["metrics"],
            error=header["error"],
        )

    def _fail_pending(self, worker: _Worker) -> list[Reply]:
        code = worker.process.exitcode
        failed = [
            Reply(node_id=node, kind=kind, round=rnd, run_id=run_id, error=f"simulation worker exited with code {code}")
            for (node, kind, rnd), (_, run_id) in worker.pending.items()
        ]
        for key in list(worker.pending):
            self._finish(worker, key)
        worker.queued.clear()
        worker.in_flight = 0
        return failed


def _same_extras(a: ParamSet, b: ParamSet) -> bool:
    """Whether two tasks' extras are the same arrays; every task without extras has its own empty set."""
    return a is b or (len(a) == 0 and len(b) == 0)


def _worker_main(conn: Connection, factory: NodeFactory, threads: BlasThreads, siblings: list[Connection]) -> None:
    """Worker entry point: this process only ever runs node tasks, so it sets its BLAS limit once
    and tunes its allocator for model-sized buffers (see ``fedlearn.client.allocator``)."""
    for sibling in siblings:  # held open here, another worker's pipe would never see its parent go
        sibling.close()
    _exit_with_parent()
    retain_freed_memory()
    with threads():
        _serve(conn, NodeCache(factory))


def _exit_with_parent() -> None:
    """Turn SIGTERM into a clean exit, and have the kernel send it when the parent dies.

    The parent may be killed without running any clean-up of its own (SIGTERM or SIGKILL). Then
    this worker must not go on computing for nobody: it exits through ``_serve``'s ``finally``,
    which unlinks its reply slots.
    """
    parent = os.getppid()
    signal.signal(signal.SIGTERM, _raise_system_exit)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request was in place
        raise SystemExit(0)


def _raise_system_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _serve(conn: Connection, nodes: NodeCache) -> None:
    """Answer tasks until told to stop or the parent goes away."""
    slots = WorkerSlots(owner=os.getppid())
    mapped: dict[str, ParamSet] = {}  # global-parameter blocks by name, oldest first
    inbox: deque[bytes] = deque()  # tasks read early while looking for released slots
    try:
        while True:
            try:
                raw = inbox.popleft() if inbox else conn.recv_bytes()
            except (EOFError, OSError):
                return
            if raw == _STOP:
                return
            header = json.loads(raw)
            if _apply_release(header, slots):
                continue
            reply = _answer(nodes, header, mapped)
            _collect_releases(conn, slots, inbox)
            meta = slots.write(pack(reply.params, reply.extras))
            meta.update(
                node=reply.node_id,
                kind=reply.kind,
                round=reply.round,
                num_examples=reply.num_examples,
                metrics=dict(reply.metrics),
                error=reply.error,
            )
            conn.send_bytes(json.dumps(meta).encode())
    finally:
        slots.close()


def _apply_release(header: dict[str, Any], slots: WorkerSlots) -> bool:
    """Free the reply slots a release message names; False for any other message."""
    if "release" not in header:
        return False
    for name in header["release"]:
        slots.release(name)
    return True


def _collect_releases(conn: Connection, slots: WorkerSlots, inbox: deque[bytes]) -> None:
    """Apply every release already sent, keeping other messages for later, in order."""
    try:
        while conn.poll():
            raw = conn.recv_bytes()
            if raw == _STOP or not _apply_release(json.loads(raw), slots):
                inbox.append(raw)
    except (EOFError, OSError):
        return  # the parent is gone; the main loop finds out on its next read


def _mapped_block(mapped: dict[str, ParamSet], header: dict[str, Any]) -> ParamSet:
    """The task's global parameters, mapped once per block rather than once per task."""
    name = header["block"]
    if name not in mapped:
        mapped[name] = attach(name, header["layout"])
        while len(mapped) > _MAPPED_ROUNDS:
            del mapped[next(iter(mapped))]
    return mapped[name]


def _answer(nodes: NodeCache, header: dict[str, Any], mapped: dict[str, ParamSet]) -> Reply:
    node_id, kind, rnd = header["node"], header["kind"], header["round"]
    try:
        params, extras = unpack(_mapped_block(mapped, header))
        task = Task(
            kind=kind,
            round=rnd,
            run_id=header["run_id"],
            config=header["config"],
            params=params,
            extras=extras,
        )
        return nodes.get(node_id).handle(task)
    except Exception as exc:  # a node must never take its worker down
        return Reply(node_id=node_id, kind=kind, round=rnd, error=f"{type(exc).__name__}: {exc}")
