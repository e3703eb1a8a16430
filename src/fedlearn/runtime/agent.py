"""The node side of the gRPC link: dial out, say hello, heartbeat, run tasks, reconnect.

A node opens no port. It dials the coordinator, holds one ``Session`` stream open and heartbeats
on it; task headers arrive on the same stream. One worker thread answers tasks in order, so the
node's handler (a :class:`~fedlearn.client.node_app.NodeApp`) never runs twice at once. For each
task it fetches the blobs it does not already hold (the last two are kept, by digest, so
unchanged global parameters are not downloaded again), verifies them, runs the handler and
uploads the reply in chunks.

When the link drops (the stream breaks, or a transport keepalive ping to the coordinator goes
unanswered for ``keepalive`` seconds), the agent dials again after an exponential, capped,
jittered delay and carries on with whichever coordinator answers, so a coordinator restart costs
a node nothing. Liveness is the transport's job on purpose: its pings are answered inside gRPC's
C core, so neither side looks dead while the other is busy holding the GIL (decoding a large
model does). The heartbeats this agent sends let the coordinator drop a node that is idle yet
silent, e.g. one whose Python is hung. Being refused is different: an unknown or
revoked token, another node's certificate, a name taken over by another agent, a protocol mismatch, or an
identity key other than the one registered for the node raises :class:`ConfigError` with a message that
says what to do, instead of retrying forever.

``identity_key`` is the public half of the node's long-term Ed25519 key, sent in the Hello; a node
with one takes part in secure aggregation (see :mod:`fedlearn.runtime.identity`).
"""

from __future__ import annotations

import itertools
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from fedlearn.core.codec import decode
from fedlearn.core.errors import ConfigError, DeadlineExceeded, FedlearnError
from fedlearn.core.messages import Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.runtime.proto import fleet_pb2 as pb
from fedlearn.runtime.proto import fleet_pb2_grpc as pb_grpc
from fedlearn.runtime.tls import ClientTLS
from fedlearn.runtime.transport import limits
from fedlearn.runtime.transport.backoff import Backoff
from fedlearn.runtime.transport.blobs import ParamCache
from fedlearn.runtime.transport.chunks import Assembler
from fedlearn.runtime.transport.envelope import (
    NODE_KEY,
    PROTOCOL_VERSION,
    TOKEN_KEY,
    check_ref,
    encode_reply,
    task_from_header,
)

logger = logging.getLogger(__name__)

DEFAULT_BACKOFF = Backoff()
_TICK = 0.05  # how often the heartbeat loop looks at the clock and the stop flag
_HEARTBEAT = pb.NodeMessage(heartbeat=pb.Heartbeat())


class TaskHandler(Protocol):
    """Turns a task into a reply; :class:`~fedlearn.client.node_app.NodeApp` is one."""

    def handle(self, task: Task, /) -> Reply: ...


@dataclass(eq=False, slots=True)
class _Link:
    """One session: its channel and call, and the rules the coordinator's Welcome set."""

    channel: grpc.Channel
    stub: pb_grpc.FleetStub
    connect_timeout: float
    max_reply_bytes: int
    hello: pb.NodeMessage
    interval: float = 0.0
    welcomed: bool = False
    call: grpc.Future | None = None
    closed: threading.Event = field(default_factory=threading.Event)
    timed_out: bool = False

    def requests(self, stop: threading.Event) -> Iterator[pb.NodeMessage]:
        """Hello, then a heartbeat every interval, until the link closes; no Welcome in time ends it."""
        yield self.hello
        started = last_tx = time.monotonic()
        while not self.closed.is_set() and not stop.wait(_TICK):
            now = time.monotonic()
            if not self.welcomed and now - started > self.connect_timeout:
                self.timed_out = True
                break
            if self.welcomed and now - last_tx >= self.interval:
                last_tx = now
                yield _HEARTBEAT
        self.cancel()

    def welcome(self, welcome: pb.Welcome) -> bool:
        """Adopt the coordinator's heartbeat interval and reply size limit; False if they make no sense."""
        if not (0 < welcome.heartbeat_interval < math.inf and welcome.max_message_bytes > 0):
            return False
        self.interval, self.max_reply_bytes = welcome.heartbeat_interval, welcome.max_message_bytes
        self.welcomed = True
        return True

    def cancel(self) -> None:
        if self.call is not None:
            self.call.cancel()

    def close(self) -> None:
        self.closed.set()
        self.cancel()
        self.channel.close()


_Work = queue.Queue[tuple[_Link, pb.TaskHeader] | None]


class NodeAgent:
    """Connects one node to a coordinator and answers its tasks; see the module docstring."""

    def __init__(
        self,
        handler: TaskHandler,
        *,
        coordinator: str,
        name: str,
        token: str,
        tls: ClientTLS | None = None,
        max_message_bytes: int = limits.DEFAULT_MAX_MESSAGE_BYTES,
        chunk_bytes: int = limits.DEFAULT_CHUNK_BYTES,
        connect_timeout: float = 10.0,
        transfer_timeout: float = 600.0,
        keepalive: float = 10.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        give_up_after: float | None = None,
        rng: random.Random | None = None,
        identity_key: bytes = b"",
    ) -> None:
        for what, value in (("name", name), ("token", token)):
            if not value or not value.isascii() or not value.isprintable():
                raise ConfigError(f"the node's `{what}` must be non-empty printable ASCII; got {value!r:.40}")
        limits.check_sizes(max_message_bytes=max_message_bytes, chunk_bytes=chunk_bytes)
        limits.check_timeout("connect_timeout", connect_timeout)
        limits.check_timeout("transfer_timeout", transfer_timeout)
        limits.check_timeout("keepalive", keepalive)
        if give_up_after is not None:
            limits.check_timeout("give_up_after", give_up_after)
        self.name = name
        self._handler = handler
        self._coordinator = coordinator
        self._metadata = ((NODE_KEY, name), (TOKEN_KEY, token))
        self._tls = tls
        self._max_message_bytes = max_message_bytes
        self._chunk_bytes = chunk_bytes
        self._connect_timeout = connect_timeout
        self._transfer_timeout = transfer_timeout
        self._keepalive = keepalive
        self._backoff = backoff
        self._give_up_after = give_up_after
        self._rng = rng if rng is not None else random.Random()  # OS-seeded: jitter must differ between nodes
        self._cache = ParamCache()
        self._hello = pb.NodeMessage(hello=pb.Hello(protocol=PROTOCOL_VERSION, identity_key=identity_key))

    def run(self, stop: threading.Event) -> None:
        """Serve tasks until ``stop`` is set.

        Raises :class:`ConfigError` when the coordinator refuses this node, and
        :class:`DeadlineExceeded` when ``give_up_after`` seconds pass without a session.
        """
        work: _Work = queue.Queue()
        worker = threading.Thread(target=self._work, args=(work,), name=f"fedlearn-agent-{self.name}", daemon=True)
        worker.start()
        attempt, since = 0, time.monotonic()
        try:
            while not stop.is_set():
                link = self._connect()
                try:
                    welcomed, reason = self._session(link, work, stop)
                finally:
                    link.close()
                if stop.is_set():
                    return
                if welcomed:
                    attempt, since = 0, time.monotonic()
                waited = time.monotonic() - since
                if self._give_up_after is not None and waited >= self._give_up_after:
                    raise DeadlineExceeded(
                        f"node {self.name} has had no session with the coordinator at {self._coordinator} for "
                        f"{waited:.1f} s ({reason}); check the address, the TLS settings and that it is running"
                    )
                delay = self._backoff.delay(attempt, self._rng)
                attempt += 1
                logger.warning("node %s: %s; reconnecting in %.1f s", self.name, reason, delay)
                stop.wait(delay)
        finally:
            work.put(None)
            worker.join(timeout=1.0)  # a handler stuck in training cannot be interrupted; it is a daemon

    def _connect(self) -> _Link:
        options: list[tuple[str, str | int]] = [*limits.client_options(keepalive=self._keepalive)]
        if self._tls is not None:
            options += self._tls.channel_options()
            channel = grpc.secure_channel(self._coordinator, self._tls.credentials(), options)
        else:
            channel = grpc.insecure_channel(self._coordinator, options)
        return _Link(
            channel=channel,
            stub=pb_grpc.FleetStub(channel),  # type: ignore[no-untyped-call]
            connect_timeout=self._connect_timeout,
            max_reply_bytes=self._max_message_bytes,
            hello=self._hello,
        )

    def _session(self, link: _Link, work: _Work, stop: threading.Event) -> tuple[bool, str]:
        """Run one session to its end; returns whether it got going and why it ended."""
        try:
            call = link.stub.Session(link.requests(stop), metadata=self._metadata)
            link.call = call
            for message in call:
                body = message.WhichOneof("body")
                if body == "welcome":
                    if not link.welcome(message.welcome):
                        return False, "the coordinator's Welcome has impossible timing or size rules"
                    logger.info("node %s: connected to %s", self.name, self._coordinator)
                elif body == "task" and link.welcomed:
                    work.put((link, message.task))
        except grpc.RpcError as exc:
            if stop.is_set():
                return link.welcomed, "stopped"
            if link.timed_out:
                return False, f"no Welcome from the coordinator within {link.connect_timeout:g} s"
            self._raise_if_refused(exc)
            return link.welcomed, _connection_problem(exc, self._coordinator, self._tls)
        return link.welcomed, "the coordinator ended the session"

    def _raise_if_refused(self, exc: grpc.RpcError) -> None:
        code = exc.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            raise ConfigError(
                f"the coordinator refused node {self.name}: unknown or revoked token; ask the operator for a new token"
            ) from exc
        if code == grpc.StatusCode.ALREADY_EXISTS:
            raise ConfigError(
                f"node {self.name} was replaced by another agent using the same name; give every node its own name"
            ) from exc
        if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED):
            raise ConfigError(f"the coordinator refused node {self.name}: {exc.details()}") from exc

    # -- the worker ------------------------------------------------------------------------------

    def _work(self, work: _Work) -> None:
        while (item := work.get()) is not None:
            link, header = item
            if link.closed.is_set():
                continue  # the coordinator failed this task when the session dropped
            try:
                self._serve(link, header)
            except Exception:  # one task must never stop the node
                if link.closed.is_set():  # the channel closed under the task; the coordinator failed it
                    logger.info("node %s: task %s dropped: the session ended", self.name, header.task_id)
                else:
                    logger.exception("node %s: task %s failed unexpectedly", self.name, header.task_id)

    def _serve(self, link: _Link, header: pb.TaskHeader) -> None:
        started = time.monotonic()
        try:
            params = self._fetch(link, header.params, "parameter blob")
            extras = self._fetch(link, header.extras, "extras blob")
            reply = self._answer(task_from_header(header, params=params, extras=extras))
        except FedlearnError as exc:
            reply = self._failed(header, f"node {self.name} could not load the task: {exc}")
        except grpc.RpcError as exc:
            if link.closed.is_set():
                return
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                link.cancel()  # the next session is refused with a clear error
                return
            reply = self._failed(header, f"node {self.name} could not download the task: {_describe(exc)}")
        _log_task(self.name, header, reply, time.monotonic() - started)
        if not link.closed.is_set():
            self._upload(link, header, reply)

    def _fetch(self, link: _Link, ref: pb.BlobRef, what: str) -> ParamSet:
        check_ref(ref, what=f"the task's {what}")
        if not ref.digest:
            return ParamSet()
        cached = self._cache.get(ref.digest)
        if cached is not None:
            return cached
        assembler = Assembler(
            size=ref.size, digest=ref.digest, max_bytes=self._max_message_bytes, what=f"the task's {what}"
        )
        self._cache.make_room(ref.size)
        request = pb.BlobRequest(digest=ref.digest)
        for chunk in link.stub.Download(request, timeout=self._transfer_timeout, metadata=self._metadata):
            assembler.add(chunk.data)
        params = decode(assembler.finish(), max_bytes=self._max_message_bytes)
        self._cache.put(ref.digest, params)
        return params

    def _answer(self, task: Task) -> Reply:
        try:
            reply = self._handler.handle(task)
        except Exception as exc:  # NodeApp never raises, but a bare handler might
            return Reply(node_id=self.name, kind=task.kind, round=task.round, error=f"{type(exc).__name__}: {exc}")
        if not isinstance(reply, Reply):
            return Reply(
                node_id=self.name, kind=task.kind, round=task.round, error="the handler did not return a Reply"
            )
        return reply

    def _upload(self, link: _Link, header: pb.TaskHeader, reply: Reply) -> None:
        try:
            reply_header, payload = encode_reply(header.task_id, reply)
        except FedlearnError as exc:
            reply_header, payload = encode_reply(header.task_id, self._failed(header, f"cannot encode reply: {exc}"))
        if payload.size > link.max_reply_bytes:
            reason = (
                f"node {self.name}'s reply is {payload.size} bytes; the coordinator accepts at most "
                f"{link.max_reply_bytes} (raise its max_message_bytes)"
            )
            reply_header, payload = encode_reply(header.task_id, self._failed(header, reason))
        messages = itertools.chain(
            [pb.UploadMessage(header=reply_header)],
            (pb.UploadMessage(chunk=chunk) for chunk in payload.chunks(self._chunk_bytes)),
        )
        try:
            ack = link.stub.Upload(messages, timeout=self._transfer_timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                link.cancel()
            logger.warning("node %s: the reply to task %s was refused: %s", self.name, header.task_id, _describe(exc))
            return
        if not ack.accepted:
            logger.info("node %s: the reply to task %s was dropped: %s", self.name, header.task_id, ack.detail)

    def _failed(self, header: pb.TaskHeader, reason: str) -> Reply:
        return Reply(node_id=self.name, kind=header.kind, round=header.round, error=reason)


def _log_task(name: str, header: pb.TaskHeader, reply: Reply, seconds: float) -> None:
    """One line per task answered, so a site's log shows what its node did and how it went."""
    where = f"node {name}: {header.kind} task of run {header.run_id or '-'} round {header.round}"
    if reply.error is None:
        logger.info("%s: answered in %.2f s (%d examples)", where, seconds, reply.num_examples)
    else:
        logger.info("%s: refused or failed in %.2f s: %s", where, seconds, reply.error)


def _connection_problem(exc: grpc.RpcError, address: str, tls: ClientTLS | None) -> str:
    """Why a session failed, in one line, with what to check for the usual set-up mistakes.

    gRPC reports them as OpenSSL codes or a bare "Socket closed"; the operator wants to know that
    the port is wrong, that one side speaks TLS and the other does not, or that a certificate is missing.
    """
    details = exc.details() or ""
    if "Connection refused" in details:
        return f"nothing listens at {address}: is the coordinator running, and is this its --listen address?"
    if "WRONG_VERSION_NUMBER" in details:
        return (
            f"the coordinator at {address} does not speak TLS: leave out --tls-ca (and --tls-cert/--tls-key), "
            "or start the coordinator with --tls-cert and --tls-key"
        )
    if "CERTIFICATE_VERIFY_FAILED" in details:
        return (
            f"the certificate of the coordinator at {address} is not signed by the CA in --tls-ca, or not issued "
            "for the name dialled (--server-name sets the name to check)"
        )
    if "Socket closed" in details:
        if tls is None:
            return (
                f"the coordinator at {address} closed the connection: if it uses TLS, pass --tls-ca; and check "
                "that this is its gRPC --listen address, not its HTTP API"
            )
        if tls.cert is None:
            return (
                f"the coordinator at {address} closed the TLS handshake: it probably requires client certificates "
                "(mutual TLS), so pass --tls-cert and --tls-key"
            )
        return (
            f"the coordinator at {address} closed the TLS handshake: check that this node's certificate was "
            "issued by the CA the coordinator trusts (--tls-client-ca)"
        )
    return _describe(exc)


def _describe(exc: grpc.RpcError) -> str:
    """One line for a failed call: the status and the first line of its details."""
    code = exc.code()
    details = (exc.details() or "").strip().splitlines()
    return f"{code.name if code else 'UNKNOWN'}: {details[0] if details else 'no details'}"
