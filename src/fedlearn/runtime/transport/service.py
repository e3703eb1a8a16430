"""The coordinator's RPC handlers: authentication, sessions, downloads and uploads.

Handlers only translate between the wire and a :class:`Hub` (the ``GrpcFleet``), which owns
sessions and open tasks. Each call is authenticated first from its metadata; a refusal is
``UNAUTHENTICATED`` with a message that says what to do. Under mutual TLS the client
certificate's common name must also be the node's name (``PERMISSION_DENIED`` otherwise).
Everything a peer sends is hostile until checked: a bad upload becomes an error reply for its
task (the engine records the reason) and an error status for the caller, and never an exception
that escapes into the server. What a node may hold is bounded too: every call counts against its
node's ``max_calls_per_node``, every stream has server-side deadlines (a :class:`Watchdog`), and
replies are received into a bounded :class:`ReplyBuffer`, one upload per task. Requests reach
the handlers as raw bytes and are parsed here, so an unparsable frame is an ordinary
``INVALID_ARGUMENT``; left to gRPC's own deserialisation failure path, a garbage frame on a
stream could leave the call unfinished and hang the server's shutdown.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

import grpc

from fedlearn.core.errors import CodecError
from fedlearn.core.messages import Reply
from fedlearn.runtime.proto import fleet_pb2 as pb
from fedlearn.runtime.transport.admission import CallLimit, ReplyBuffer
from fedlearn.runtime.transport.chunks import Assembler
from fedlearn.runtime.transport.deadlines import Deadline, Watchdog
from fedlearn.runtime.transport.envelope import (
    NODE_KEY,
    PROTOCOL_VERSION,
    SERVICE,
    TOKEN_KEY,
    check_ref,
    decode_reply,
    parse,
)
from fedlearn.runtime.transport.stream import Blob

logger = logging.getLogger(__name__)

_MAX_NAME_CHARS = 128


@dataclass(eq=False, slots=True)
class SessionRecord:
    """One node's live session; ``outbox`` feeds its stream and ``None`` in it ends the stream."""

    node: str
    token: str  # re-checked while the session lives, so revoking the node ends it
    last_seen: float
    outbox: queue.SimpleQueue[pb.CoordinatorMessage | None] = field(default_factory=queue.SimpleQueue)
    hello: threading.Event = field(default_factory=threading.Event)
    protocol: int = 0
    identity_key: bytes = b""  # the node's Ed25519 public key from its Hello; empty if it has none
    tasks: dict[str, None] = field(default_factory=dict)  # open task ids in sending order; the hub's lock guards it
    ended: bool = False
    status: tuple[grpc.StatusCode, str] = (grpc.StatusCode.OK, "")


class Hub(Protocol):
    """What the handlers need from the fleet."""

    @property
    def authenticate(self) -> Callable[[str, str], bool]: ...
    @property
    def max_message_bytes(self) -> int: ...
    @property
    def chunk_bytes(self) -> int: ...
    @property
    def heartbeat_interval(self) -> float: ...
    @property
    def heartbeat_timeout(self) -> float: ...
    @property
    def max_calls_per_node(self) -> int: ...
    @property
    def upload_buffer_bytes(self) -> int: ...
    @property
    def node_upload_bytes(self) -> int: ...
    @property
    def first_message_timeout(self) -> float: ...
    @property
    def stream_idle_timeout(self) -> float: ...
    @property
    def upload_wait_timeout(self) -> float: ...
    @property
    def clock(self) -> Callable[[], float]: ...

    def open_session(self, session: SessionRecord) -> tuple[grpc.StatusCode, str] | None: ...
    def end_session(self, session: SessionRecord, reason: str, code: grpc.StatusCode) -> None: ...
    def claim_upload(self, task_id: str, node: str) -> tuple[str, int] | str: ...
    def busy(self, session: SessionRecord) -> bool: ...
    def settle(self, task_id: str, reply: Reply) -> bool: ...
    def blob_for(self, node: str, digest: str) -> Blob | None: ...
    def count_transfer(self, *, download: bool, nbytes: int) -> None: ...


class FleetService:
    """The ``Fleet`` gRPC service over a :class:`Hub`; see the module docstring."""

    def __init__(self, hub: Hub, *, certificate_names: bool = False) -> None:
        self._hub = hub
        self._certificate_names = certificate_names
        self._calls = CallLimit(hub.max_calls_per_node)
        self._replies = ReplyBuffer(total=hub.upload_buffer_bytes, per_node=hub.node_upload_bytes)
        self._watchdog = Watchdog()

    def register(self, server: grpc.Server) -> None:
        """Serve the three methods; requests arrive as raw bytes and are parsed by ``envelope.parse``."""
        handlers = {
            "Session": grpc.stream_stream_rpc_method_handler(
                self.session, response_serializer=pb.CoordinatorMessage.SerializeToString
            ),
            "Download": grpc.unary_stream_rpc_method_handler(
                self.download, response_serializer=pb.Chunk.SerializeToString
            ),
            "Upload": grpc.stream_unary_rpc_method_handler(
                self.upload, response_serializer=pb.UploadAck.SerializeToString
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    # -- Session ---------------------------------------------------------------------------------

    def session(
        self, request_iterator: Iterator[bytes], context: grpc.ServicerContext
    ) -> Iterator[pb.CoordinatorMessage]:
        node, token = self._admit(context)
        hub = self._hub
        session = SessionRecord(node=node, token=token, last_seen=hub.clock())
        context.add_callback(lambda: hub.end_session(session, "the connection closed", grpc.StatusCode.CANCELLED))
        reader = threading.Thread(
            target=self._read, args=(session, request_iterator), name=f"fedlearn-session-{node}", daemon=True
        )
        reader.start()
        return self._talk(session, context)

    def _read(self, session: SessionRecord, requests: Iterator[bytes]) -> None:
        """Note every message's arrival (the heartbeat) until the node's side of the stream ends."""
        reason, code = "the node closed its session", grpc.StatusCode.OK
        try:
            for raw in requests:
                message = parse(pb.NodeMessage, raw)
                session.last_seen = self._hub.clock()
                if not session.hello.is_set():
                    if message.HasField("hello"):
                        session.protocol, session.identity_key = message.hello.protocol, message.hello.identity_key
                    session.hello.set()
        except CodecError as exc:
            reason, code = f"node {session.node} sent {exc}", grpc.StatusCode.INVALID_ARGUMENT
        except Exception as exc:  # grpc.RpcError when the connection drops; nothing here may escape
            reason, code = f"the connection was lost ({type(exc).__name__})", grpc.StatusCode.CANCELLED
        finally:
            session.hello.set()
            self._hub.end_session(session, reason, code)

    def _talk(self, session: SessionRecord, context: grpc.ServicerContext) -> Iterator[pb.CoordinatorMessage]:
        hub = self._hub
        hello = session.hello.wait(hub.first_message_timeout)
        if session.ended:
            _finish(context, *session.status)
            return
        if not hello:
            hub.end_session(session, "no Hello", grpc.StatusCode.DEADLINE_EXCEEDED)
            _finish(
                context,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no Hello within {hub.first_message_timeout:g} s (first_message_timeout)",
            )
            return
        if session.protocol != PROTOCOL_VERSION:
            hub.end_session(session, "protocol mismatch", grpc.StatusCode.FAILED_PRECONDITION)
            _finish(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"node {session.node} speaks protocol {session.protocol} but this coordinator speaks "
                f"{PROTOCOL_VERSION}; run the same fedlearn version on both",
            )
            return
        refusal = hub.open_session(session)
        if refusal is not None:
            _finish(context, *refusal)
            return
        logger.info("node %s is online", session.node)
        yield pb.CoordinatorMessage(
            welcome=pb.Welcome(
                heartbeat_interval=hub.heartbeat_interval,
                heartbeat_timeout=hub.heartbeat_timeout,
                max_message_bytes=hub.max_message_bytes,
            )
        )
        while True:
            waiting_since = hub.clock()
            try:
                message = session.outbox.get(timeout=hub.heartbeat_interval)
            except queue.Empty:
                self._check_heartbeat(session, overrun=hub.clock() - waiting_since - hub.heartbeat_interval)
                continue
            if message is None:
                _finish(context, *session.status)
                return
            yield message

    def _check_heartbeat(self, session: SessionRecord, *, overrun: float) -> None:
        """End the session of an idle node that has been silent past the heartbeat timeout.

        Two kinds of silence are not the node's fault. While it holds open tasks a node may be
        too busy to heartbeat (decoding a large model holds the GIL for seconds); whether it is
        alive is then the transport's keepalive's call, which needs no Python. And time this
        thread itself could not run (``overrun``: the coordinator's GIL was busy) is not counted.
        """
        hub = self._hub
        if overrun > 0:
            session.last_seen += overrun
        silent = hub.clock() - session.last_seen
        if silent > hub.heartbeat_timeout and not hub.busy(session):
            hub.end_session(session, f"no heartbeat for {silent:.1f} s", grpc.StatusCode.DEADLINE_EXCEEDED)

    # -- Download --------------------------------------------------------------------------------

    def download(self, raw: bytes, context: grpc.ServicerContext) -> Iterator[pb.Chunk]:
        node, _ = self._admit(context)
        try:
            request = parse(pb.BlobRequest, raw)
        except CodecError as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        blob = self._hub.blob_for(node, request.digest)
        if blob is None:
            _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"blob {request.digest[:16]!r} is not open for node {node}: its task has ended or was never sent",
            )
        self._hub.count_transfer(download=True, nbytes=blob.size)
        return self._send(blob, self._deadline(context), node)

    def _send(self, blob: Blob, deadline: Deadline, node: str) -> Iterator[pb.Chunk]:
        """The blob's chunks; a node that stops taking them is cut off after ``stream_idle_timeout``."""
        idle = self._hub.stream_idle_timeout
        for chunk in blob.chunks(self._hub.chunk_bytes):
            deadline.expect(idle, f"node {node} took no chunk of a download for {idle:g} s (stream_idle_timeout)")
            yield pb.Chunk(data=chunk)

    # -- Upload ----------------------------------------------------------------------------------

    def upload(self, request_iterator: Iterator[bytes], context: grpc.ServicerContext) -> pb.UploadAck:
        """Receive one reply: a header that claims its task, then chunks into a bounded buffer.

        Every wait here has a deadline: the header must come within ``first_message_timeout``,
        each chunk within ``stream_idle_timeout`` of the last, and room in the reply buffer
        within ``upload_wait_timeout``.
        """
        node, _ = self._admit(context)
        hub = self._hub
        deadline = self._deadline(context)
        messages = (parse(pb.UploadMessage, raw) for raw in request_iterator)
        wait = hub.first_message_timeout
        deadline.expect(wait, f"node {node} opened an upload and sent no header in {wait:g} s (first_message_timeout)")
        try:
            first = next(messages, None)
        except CodecError as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except grpc.RpcError:
            return pb.UploadAck(accepted=False, detail="the upload broke off")
        finally:
            deadline.clear()
        if deadline.missed is not None:  # cut off, which gRPC may show as an empty stream; nobody listens
            return pb.UploadAck(accepted=False, detail=deadline.missed)
        if first is None or first.WhichOneof("body") != "header":
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "an upload must start with a reply header")
        header = first.header
        claim = hub.claim_upload(header.task_id, node)
        if isinstance(claim, str):
            return pb.UploadAck(accepted=False, detail=claim)
        kind, round = claim

        def fail(code: grpc.StatusCode, reason: str) -> NoReturn:
            hub.settle(header.task_id, Reply(node_id=node, kind=kind, round=round, error=reason))
            _abort(context, code, reason)

        size = header.payload.size
        if size > hub.max_message_bytes:
            fail(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"node {node}'s reply is {size} bytes; the coordinator accepts at most {hub.max_message_bytes} "
                "(raise max_message_bytes)",
            )
        refusal = self._replies.acquire(node, size, timeout=hub.upload_wait_timeout)
        if refusal is not None:
            fail(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
        broke = None
        try:
            reply = self._receive(header, messages, deadline, node=node, kind=kind, round=round)
        except CodecError as exc:
            if deadline.missed is None:
                fail(grpc.StatusCode.INVALID_ARGUMENT, f"node {node} sent an unreadable reply: {exc}")
            broke = deadline.missed  # the stream ended because it was cut off, not because the node ended it
        except grpc.RpcError:  # the node went away mid-upload, or was cut off; nobody is left to tell
            broke = deadline.missed or f"node {node}'s upload broke off"
        finally:
            self._replies.release(node, size)
        if broke is not None:
            hub.settle(header.task_id, Reply(node_id=node, kind=kind, round=round, error=broke))
            return pb.UploadAck(accepted=False, detail=broke)
        hub.count_transfer(download=False, nbytes=size)
        if not hub.settle(header.task_id, reply):
            return pb.UploadAck(accepted=False, detail=f"task {header.task_id!r} ended while its reply was uploading")
        return pb.UploadAck(accepted=True)

    def _receive(
        self, header: pb.ReplyHeader, messages: Iterator[pb.UploadMessage], deadline: Deadline, *, node: str,
        kind: str, round: int,
    ) -> Reply:  # fmt: skip
        """Assemble and decode the payload that follows ``header``; each chunk is due within the idle timeout."""
        hub = self._hub
        idle = hub.stream_idle_timeout
        check_ref(header.payload, what="reply payload")
        assembler = Assembler(
            size=header.payload.size, digest=header.payload.digest, max_bytes=hub.max_message_bytes, what="reply"
        )
        while True:
            deadline.expect(idle, f"node {node} sent no chunk of its upload for {idle:g} s (stream_idle_timeout)")
            message = next(messages, None)
            deadline.clear()
            if message is None:
                break
            if message.WhichOneof("body") != "chunk":
                raise CodecError("an upload carries one header, then only chunks")
            assembler.add(message.chunk)
        payload = assembler.finish()
        return decode_reply(header, payload, node_id=node, kind=kind, round=round, max_bytes=hub.max_message_bytes)

    # -- admission -------------------------------------------------------------------------------

    def _admit(self, context: grpc.ServicerContext) -> tuple[str, str]:
        """Authenticate the call and count it against its node's ``max_calls_per_node`` until it ends."""
        node, token = self._authenticate(context)
        refusal = self._calls.admit(node)
        if refusal is not None:
            _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
        if not context.add_callback(lambda: self._calls.release(node)):
            self._calls.release(node)  # the call had already ended
        return node, token

    def _deadline(self, context: grpc.ServicerContext) -> Deadline:
        """A watchdog deadline that cancels this call when missed, and lapses when the call ends."""
        deadline = self._watchdog.watch(context.cancel)
        context.add_callback(deadline.clear)
        return deadline

    # -- authentication --------------------------------------------------------------------------

    def _authenticate(self, context: grpc.ServicerContext) -> tuple[str, str]:
        """The caller's node name and token once they check out; otherwise the call ends here."""
        metadata = dict(context.invocation_metadata())
        node, token = metadata.get(NODE_KEY), metadata.get(TOKEN_KEY)
        if not isinstance(node, str) or not isinstance(token, str) or not node or not token:
            _abort(
                context, grpc.StatusCode.UNAUTHENTICATED, f"every call must carry {NODE_KEY} and {TOKEN_KEY} metadata"
            )
        if len(node) > _MAX_NAME_CHARS:
            _abort(context, grpc.StatusCode.UNAUTHENTICATED, f"node names are at most {_MAX_NAME_CHARS} characters")
        if self._certificate_names:
            self._check_certificate(context, node)
        try:
            allowed = self._hub.authenticate(node, token)
        except Exception:  # the store is down: say so rather than call the node an impostor
            logger.exception("checking the token of node %r failed", node)
            _abort(context, grpc.StatusCode.UNAVAILABLE, "the coordinator cannot check tokens right now; retry later")
        if not allowed:
            _abort(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                f"node {node!r} is unknown or its token was revoked; ask the operator for a new token",
            )
        return node, token

    @staticmethod
    def _check_certificate(context: grpc.ServicerContext, node: str) -> None:
        """Under mutual TLS a node's certificate names it (its subject's common name), so one node's
        certificate cannot carry another node's name and token: both secrets must be that node's."""
        names = [raw.decode("utf-8", "replace") for raw in context.auth_context().get("x509_common_name", [])]
        if names != [node]:
            holder = repr(names[0])[:80] if names else "no name"
            _abort(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                f"its client certificate is issued to {holder}, not {node!r}; with mutual TLS each node must present "
                "the certificate issued for its own name",
            )


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    """End the call with an error status; ``context.abort`` always raises, which this tells the type checker."""
    context.abort(code, details)
    raise AssertionError("grpc's abort returned")  # pragma: no cover


def _finish(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> None:
    """End a streaming call with a status (abort would raise inside the response generator)."""
    if code is not grpc.StatusCode.OK:
        context.set_code(code)
        context.set_details(details)
