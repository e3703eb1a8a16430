"""The coordinator's side of the gRPC link: a :class:`~fedlearn.engine.fleet.Fleet` whose nodes dial in.

Nodes connect outward and hold one ``Session`` stream each; only task headers travel on it. The
parameters travel by ``Download``, in chunks, from a store that encodes each parameter version
once (see ``transport.blobs``), and replies come back by ``Upload``, also in chunks. Blobs are
named by the sha256 of their safetensors bytes, so the node can verify what it fetched before
decoding it and skip what it already holds.

Failure is reported, never waited out. A session ends when its stream breaks (a killed node's
socket closes at once), when the transport's keepalive ping goes unanswered for
``heartbeat_timeout`` (a frozen or unreachable node), when an idle node sends no heartbeat for
that long (a hung one), when it is replaced, or when its token stops being valid: every live
session's token is checked again each ``revocation_check_interval``, so a node revoked (or its
token rotated) in the store, even by another process, loses its session within a second and is
sent nothing more. Its open tasks then become error replies at once, so the engine can close the
round with the remaining nodes. A reply for a task that is no longer open is dropped.

No node can starve the others, whatever it sends (see ``transport.admission`` and
``transport.deadlines``): it may hold ``max_calls_per_node`` calls at once; a stream must send its
first message within ``first_message_timeout`` and may not stand still for longer than
``stream_idle_timeout``; a task takes one upload; and replies being received hold at most
``node_upload_bytes`` per node and ``upload_buffer_bytes`` in all, plus one larger reply at a
time.

A node name holds at most one session. A new session *replaces* the old one rather than being
refused: a node that restarts after a crash must get back in at once, without waiting for the
coordinator to notice that its old connection is dead. The replaced agent is told so
(``ALREADY_EXISTS``) and stops, because two live agents sharing a name is a configuration error.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Protocol

import grpc

from fedlearn.core import limits as core_limits
from fedlearn.core.checks import check_int
from fedlearn.core.errors import CodecError, ConfigError, FedlearnError
from fedlearn.core.messages import Reply, Task
from fedlearn.runtime.proto import fleet_pb2 as pb
from fedlearn.runtime.tls import ServerTLS
from fedlearn.runtime.transport import limits
from fedlearn.runtime.transport.blobs import BlobStore
from fedlearn.runtime.transport.envelope import task_header
from fedlearn.runtime.transport.service import FleetService, SessionRecord
from fedlearn.runtime.transport.stream import Blob

logger = logging.getLogger(__name__)

_MAX_OPEN_TASKS_PER_NODE = 8  # a stuck node must not pin old parameter versions forever
IDENTITY_KEY_BYTES = 32  # a raw Ed25519 public key


class Authenticate(Protocol):
    """True when ``token`` is the current token of node ``node``; the store provides it."""

    def __call__(self, node: str, token: str, /) -> bool: ...


class BindIdentity(Protocol):
    """Bind the identity key node ``node`` presented, or say why it is refused; the store provides it."""

    def __call__(self, node: str, identity_key: bytes, /) -> str | None: ...


class NodeStatusCallback(Protocol):
    """Told when a node comes online or goes offline, e.g. to persist it."""

    def __call__(self, node: str, online: bool, /) -> None: ...


@dataclass(frozen=True, slots=True)
class TransferStats:
    """What crossed the link so far: for dashboards, and to check that caching works."""

    blobs_encoded: int
    downloads: int
    bytes_downloaded: int
    uploads: int
    bytes_uploaded: int


@dataclass(frozen=True, slots=True)
class _OpenTask:
    node: str
    session: SessionRecord
    kind: str
    round: int
    run_id: str
    digests: tuple[str, str]


@dataclass(slots=True)
class _Counters:
    downloads: int = 0
    bytes_downloaded: int = 0
    uploads: int = 0
    bytes_uploaded: int = 0


@dataclass(slots=True)
class _State:
    sessions: dict[str, SessionRecord] = field(default_factory=dict)
    tasks: dict[str, _OpenTask] = field(default_factory=dict)
    uploading: set[str] = field(default_factory=set)  # open tasks whose reply is being uploaded
    counters: _Counters = field(default_factory=_Counters)
    closed: bool = False


class GrpcFleet:
    """Nodes connected over gRPC, as a ``Fleet``; serve it with :func:`serve`."""

    def __init__(
        self,
        *,
        authenticate: Authenticate,
        max_message_bytes: int = limits.DEFAULT_MAX_MESSAGE_BYTES,
        chunk_bytes: int = limits.DEFAULT_CHUNK_BYTES,
        heartbeat_interval: float = 2.0,
        heartbeat_timeout: float = 6.0,
        max_nodes: int = 256,
        max_calls_per_node: int = core_limits.DEFAULT_MAX_CALLS_PER_NODE,
        upload_buffer_bytes: int = core_limits.DEFAULT_UPLOAD_BUFFER_BYTES,
        node_upload_bytes: int = core_limits.DEFAULT_NODE_UPLOAD_BYTES,
        first_message_timeout: float = limits.DEFAULT_FIRST_MESSAGE_TIMEOUT,
        stream_idle_timeout: float = limits.DEFAULT_STREAM_IDLE_TIMEOUT,
        upload_wait_timeout: float = limits.DEFAULT_UPLOAD_WAIT_TIMEOUT,
        revocation_check_interval: float = limits.DEFAULT_REVOCATION_CHECK_INTERVAL,
        on_node_status: NodeStatusCallback | None = None,
        bind_identity: BindIdentity | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        limits.check_sizes(max_message_bytes=max_message_bytes, chunk_bytes=chunk_bytes)
        counts = {
            "max_calls_per_node": max_calls_per_node,
            "node_upload_bytes": node_upload_bytes,
            "upload_buffer_bytes": upload_buffer_bytes,
        }
        for name, count in counts.items():
            check_int(name, count, low=1)
        if upload_buffer_bytes < node_upload_bytes:
            raise ConfigError(
                f"`upload_buffer_bytes` must be at least `node_upload_bytes` ({node_upload_bytes}); "
                f"got {upload_buffer_bytes}"
            )
        timeouts = {
            "heartbeat_interval": heartbeat_interval,
            "heartbeat_timeout": heartbeat_timeout,
            "first_message_timeout": first_message_timeout,
            "stream_idle_timeout": stream_idle_timeout,
            "upload_wait_timeout": upload_wait_timeout,
            "revocation_check_interval": revocation_check_interval,
        }
        for name, seconds in timeouts.items():
            limits.check_timeout(name, seconds)
        if heartbeat_timeout <= heartbeat_interval:
            raise ConfigError(
                f"`heartbeat_timeout` must exceed `heartbeat_interval` ({heartbeat_interval}); got {heartbeat_timeout}"
            )
        if max_nodes < 1:
            raise ConfigError(f"`max_nodes` must be >= 1; got {max_nodes}")
        self.authenticate = authenticate
        self.max_message_bytes = max_message_bytes
        self.chunk_bytes = chunk_bytes
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.max_nodes = max_nodes
        self.max_calls_per_node = max_calls_per_node
        self.upload_buffer_bytes = upload_buffer_bytes
        self.node_upload_bytes = node_upload_bytes
        self.first_message_timeout = first_message_timeout
        self.stream_idle_timeout = stream_idle_timeout
        self.upload_wait_timeout = upload_wait_timeout
        self.revocation_check_interval = revocation_check_interval
        self.clock = clock
        self._on_node_status = on_node_status
        self._bind_identity = bind_identity
        self._lock = threading.Lock()
        self._state = _State()
        self._closing = threading.Event()
        self._token_checker: threading.Thread | None = None
        self._blobs = BlobStore()
        self._replies: queue.Queue[Reply] = queue.Queue()

    # -- the Fleet protocol ---------------------------------------------------------------------

    def available(self) -> Sequence[str]:
        with self._lock:
            return sorted(self._state.sessions)

    def send(self, node_id: str, task: Task) -> None:
        with self._lock:
            connected = node_id in self._state.sessions
        if not connected:
            self._replies.put(_failed(node_id, task, f"node {node_id} is not connected"))
            return
        try:
            params = self._blobs.acquire(task.params)
            try:
                extras = self._blobs.acquire(task.extras)
            except CodecError:
                self._blobs.release(params.digest)
                raise
        except CodecError as exc:
            self._replies.put(_failed(node_id, task, f"cannot encode the task: {exc}"))
            return
        task_id = uuid.uuid4().hex
        with self._lock:  # the node may have reconnected, or gone, while the blobs were prepared
            session = self._state.sessions.get(node_id)
            if session is not None:
                open_task = _OpenTask(
                    node_id, session, task.kind, task.round, task.run_id, (params.digest, extras.digest)
                )
                self._state.tasks[task_id] = open_task
                session.tasks[task_id] = None
                overflow = list(session.tasks)[: max(0, len(session.tasks) - _MAX_OPEN_TASKS_PER_NODE)]
        if session is None:
            self._blobs.release(params.digest)
            self._blobs.release(extras.digest)
            self._replies.put(_failed(node_id, task, f"node {node_id} disconnected"))
            return
        for old in overflow:
            self._fail(old, f"superseded: node {node_id} has more than {_MAX_OPEN_TASKS_PER_NODE} open tasks")
        session.outbox.put(pb.CoordinatorMessage(task=task_header(task_id, task, params=params, extras=extras)))

    def receive(self, timeout: float) -> list[Reply]:
        try:
            replies = [self._replies.get(timeout=max(0.0, timeout))]
        except queue.Empty:
            return []
        while True:
            try:
                replies.append(self._replies.get_nowait())
            except queue.Empty:
                return replies

    def close(self) -> None:
        """End every session (nodes will reconnect to whoever serves next) and refuse new ones."""
        self._closing.set()
        with self._lock:
            self._state.closed = True
            sessions = list(self._state.sessions.values())
        for session in sessions:
            self.end_session(session, "the coordinator is shutting down", grpc.StatusCode.UNAVAILABLE)

    # -- operations for the coordinator ---------------------------------------------------------

    def disconnect(self, node_id: str, reason: str) -> None:
        """End a node's session, e.g. after its token was revoked; it will have to authenticate again."""
        with self._lock:
            session = self._state.sessions.get(node_id)
        if session is not None:
            self.end_session(session, reason, grpc.StatusCode.UNAVAILABLE)

    @property
    def stats(self) -> TransferStats:
        with self._lock:
            c = self._state.counters
            return TransferStats(self._blobs.encoded, c.downloads, c.bytes_downloaded, c.uploads, c.bytes_uploaded)

    # -- used by the service ---------------------------------------------------------------------

    def open_session(self, session: SessionRecord) -> tuple[grpc.StatusCode, str] | None:
        """Register a session, replacing any older one of the same node; a refusal says why.

        A node that presents an identity key (it takes part in secure aggregation) must present the
        one bound to its name: see :class:`BindIdentity`.
        """
        refusal = self._check_identity(session)
        if refusal is not None:
            return refusal
        with self._lock:
            if self._state.closed:
                return grpc.StatusCode.UNAVAILABLE, "the coordinator is shutting down"
            if session.ended:  # the connection closed before the session could open
                return grpc.StatusCode.CANCELLED, "the connection closed"
            old = self._state.sessions.get(session.node)
            if old is None and len(self._state.sessions) >= self.max_nodes:
                return grpc.StatusCode.RESOURCE_EXHAUSTED, f"the coordinator is full (max_nodes={self.max_nodes})"
            self._state.sessions[session.node] = session
            if self._token_checker is None:
                self._token_checker = threading.Thread(
                    target=self._check_tokens, name="fedlearn-token-checker", daemon=True
                )
                self._token_checker.start()
        if old is not None:
            reason = f"node {session.node} connected again from another session"
            self.end_session(old, reason, grpc.StatusCode.ALREADY_EXISTS)
        else:
            self._notify(session.node, online=True)
        return None

    def _check_identity(self, session: SessionRecord) -> tuple[grpc.StatusCode, str] | None:
        key = session.identity_key
        if not key:
            return None
        if len(key) != IDENTITY_KEY_BYTES:
            reason = f"node {session.node} sent a {len(key)}-byte identity key; an Ed25519 public key has 32 bytes"
            return grpc.StatusCode.INVALID_ARGUMENT, reason
        if self._bind_identity is None:
            return None
        try:
            refusal = self._bind_identity(session.node, key)
        except Exception:  # the store is down: say so rather than call the node an impostor
            logger.exception("binding the identity key of node %r failed", session.node)
            return grpc.StatusCode.UNAVAILABLE, "the coordinator cannot check identity keys right now; retry later"
        if refusal is not None:
            logger.warning("node %s refused: %s", session.node, refusal)
            return grpc.StatusCode.PERMISSION_DENIED, refusal
        return None

    def end_session(self, session: SessionRecord, reason: str, code: grpc.StatusCode) -> None:
        """End ``session`` once; its open tasks become error replies and the node goes offline."""
        with self._lock:
            if session.ended:
                return
            session.ended = True
            session.status = (code, reason)
            current = self._state.sessions.get(session.node) is session
            if current:
                del self._state.sessions[session.node]
            orphans = list(session.tasks)
        session.outbox.put(None)
        message = f"node {session.node} disconnected before replying: {reason}"
        for task_id in orphans:
            self._fail(task_id, message)
        if current:
            logger.info("node %s is offline: %s", session.node, reason)
            self._notify(session.node, online=False)

    def _check_tokens(self) -> None:
        """End every session whose token is no longer valid, each ``revocation_check_interval``.

        Authentication is checked on every call, but a session is one long call: without this a
        revoked node would keep its session, and be sent tasks, until it reconnected. While the
        store cannot answer, sessions are left alone and that is logged once, not on every pass.
        """
        store_down = False
        while not self._closing.wait(self.revocation_check_interval):
            with self._lock:
                sessions = list(self._state.sessions.values())
            try:
                invalid = [s for s in sessions if not self.authenticate(s.node, s.token)]
            except Exception as exc:
                if not store_down:
                    logger.warning("cannot re-check node tokens, sessions stay open meanwhile: %s", exc)
                store_down = True
                continue
            if store_down:
                logger.info("node tokens can be checked again")
            store_down = False
            for session in invalid:
                self.end_session(session, "its token was revoked or rotated", grpc.StatusCode.UNAUTHENTICATED)

    def claim_upload(self, task_id: str, node: str) -> tuple[str, int] | str:
        """Kind and round of an open task of ``node``, now claimed by one upload; or why it cannot be.

        A task takes one upload. Without that rule any number of uploads of one reply would each
        buffer it in full; a second one is refused while the first runs, and once the first has
        settled the task, it is no longer open.
        """
        with self._lock:
            task = self._state.tasks.get(task_id)
            if task is None or task.node != node:
                return f"task {task_id[:40]!r} is not open for node {node}"
            if task_id in self._state.uploading:
                return f"task {task_id[:40]!r} is already being uploaded; a task takes one upload"
            self._state.uploading.add(task_id)
            return task.kind, task.round

    def busy(self, session: SessionRecord) -> bool:
        """Whether tasks sent on ``session`` are still open."""
        with self._lock:
            return bool(session.tasks)

    def settle(self, task_id: str, reply: Reply) -> bool:
        """Close an open task with ``reply``; False when it was already closed (the reply is dropped)."""
        with self._lock:
            task = self._state.tasks.pop(task_id, None)
            self._state.uploading.discard(task_id)
            if task is not None:
                task.session.tasks.pop(task_id, None)
        if task is None:
            return False
        self._release(task)
        self._replies.put(replace(reply, run_id=task.run_id))  # from the task we sent, never from the node
        return True

    def _fail(self, task_id: str, reason: str) -> None:
        with self._lock:
            task = self._state.tasks.get(task_id)
        if task is not None:
            self.settle(task_id, Reply(node_id=task.node, kind=task.kind, round=task.round, error=reason))

    def blob_for(self, node: str, digest: str) -> Blob | None:
        """A blob that one of ``node``'s open tasks refers to; other nodes' blobs stay private."""
        with self._lock:
            session = self._state.sessions.get(node)
            tasks = [self._state.tasks[t] for t in session.tasks] if session is not None else []
        wanted = digest != "" and any(digest in task.digests for task in tasks)
        return self._blobs.get(digest) if wanted else None

    def count_transfer(self, *, download: bool, nbytes: int) -> None:
        with self._lock:
            c = self._state.counters
            if download:
                c.downloads += 1
                c.bytes_downloaded += nbytes
            else:
                c.uploads += 1
                c.bytes_uploaded += nbytes

    def _release(self, task: _OpenTask) -> None:
        for digest in task.digests:
            self._blobs.release(digest)

    def _notify(self, node: str, *, online: bool) -> None:
        if self._on_node_status is None:
            return
        try:
            self._on_node_status(node, online)
        except FedlearnError as exc:  # e.g. the store is down: one line, and the link stays up
            logger.warning("could not record node %s as %s: %s", node, "online" if online else "offline", exc)
        except Exception:  # a bug in the hook: worth its traceback, but it must not take the link down
            logger.exception("on_node_status(%r, %r) failed", node, online)


def _failed(node: str, task: Task, reason: str) -> Reply:
    return Reply(node_id=node, kind=task.kind, round=task.round, run_id=task.run_id, error=reason)


def serve(
    fleet: GrpcFleet, address: str, tls: ServerTLS | None = None, *, max_transfers: int = 32
) -> tuple[grpc.Server, int]:
    """Start a gRPC server for ``fleet`` on ``address`` (port 0 picks a free port); returns it and its port.

    Under mutual TLS every call's certificate must be issued to the node it names (see
    ``FleetService``). Each connected node holds one worker thread for its session, so the pool
    has ``max_nodes`` threads for sessions plus ``max_transfers`` for concurrent downloads and
    uploads; a node holds at most ``max_calls_per_node`` of them, each for a bounded time while
    its peer is silent, so one node cannot take the others' threads. Port reuse
    is off, so a second coordinator on the same port fails instead of silently sharing it. The
    transport pings every node each ``heartbeat_interval`` and drops it when a ping goes
    unanswered for ``heartbeat_timeout`` (see ``limits.server_options``).
    """
    server = grpc.server(
        ThreadPoolExecutor(max_workers=fleet.max_nodes + max_transfers, thread_name_prefix="fedlearn-grpc"),
        options=limits.server_options(
            keepalive_interval=fleet.heartbeat_interval, keepalive_timeout=fleet.heartbeat_timeout
        ),
    )
    FleetService(fleet, certificate_names=tls is not None and tls.mutual).register(server)
    try:
        port = server.add_secure_port(address, tls.credentials()) if tls else server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {address}: the port is taken or the address is not local") from exc
    server.start()
    logger.info("coordinator listening on %s (%s)", address, "TLS" if tls else "no TLS")
    return server, port
