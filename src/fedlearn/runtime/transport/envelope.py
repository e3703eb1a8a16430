"""Tasks and replies in and out of their wire form: protobuf headers plus safetensors blobs.

Metadata rides in protobuf headers (task config and reply metrics as JSON objects); arrays ride
in safetensors blobs named by the sha256 of their bytes. A task has two blobs, its parameters and
its extras, so a node that already holds this round's parameters skips them even when the extras
change. A reply has one payload blob holding its parameters and extras, packed by
:func:`~fedlearn.core.messages.pack` as the process pool packs them. Decoding never trusts the
peer: every failure is a :class:`CodecError`, and the reply's node, kind and round come from the
coordinator's own record of the task, not from the node.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message

from fedlearn.core.codec import decode
from fedlearn.core.errors import CodecError, ConfigError, ValidationError
from fedlearn.core.messages import Reply, Task, pack, unpack
from fedlearn.core.params import ParamSet
from fedlearn.runtime.proto import fleet_pb2 as pb
from fedlearn.runtime.transport.stream import EMPTY_BLOB, Blob, stream_encode

PROTOCOL_VERSION = 1
SERVICE = pb.DESCRIPTOR.services_by_name["Fleet"].full_name
NODE_KEY = "x-fedlearn-node"
TOKEN_KEY = "x-fedlearn-token"
MAX_ERROR_CHARS = 1000
_DIGEST = re.compile(r"[0-9a-f]{64}")
M = TypeVar("M", bound=Message)


def parse(message_type: type[M], data: bytes) -> M:
    """A protobuf message from a peer's bytes; anything unparsable is a :class:`CodecError`.

    The coordinator parses requests itself rather than letting gRPC do it, so a garbage frame
    ends up here as an ordinary refusal instead of in gRPC's own error path.
    """
    message: M = message_type()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise CodecError(f"unreadable {message_type.DESCRIPTOR.name}: {exc}") from exc
    return message


def check_ref(ref: pb.BlobRef, *, what: str) -> None:
    """A reference is either empty or a sha256 hex digest with a size."""
    if ref.digest == "" and ref.size == 0:
        return
    if not _DIGEST.fullmatch(ref.digest):
        raise CodecError(f"{what} is named by {ref.digest[:80]!r}, which is not a sha256 hex digest")


def task_header(task_id: str, task: Task, *, params: Blob, extras: Blob) -> pb.TaskHeader:
    return pb.TaskHeader(
        task_id=task_id,
        kind=task.kind,
        round=task.round,
        run_id=task.run_id,
        config_json=json.dumps(dict(task.config)),
        params=params.ref,
        extras=extras.ref,
    )


def task_from_header(header: pb.TaskHeader, *, params: ParamSet, extras: ParamSet) -> Task:
    """The task a header describes, once its blobs have been fetched."""
    config = _json_object(header.config_json, "task config")
    try:
        return Task(
            kind=header.kind, round=header.round, run_id=header.run_id, config=config, params=params, extras=extras
        )
    except ConfigError as exc:
        raise CodecError(f"task header is invalid: {exc}") from exc


def encode_reply(task_id: str, reply: Reply) -> tuple[pb.ReplyHeader, Blob]:
    """The header and payload blob for ``reply``; a failed reply carries no payload."""
    payload = EMPTY_BLOB
    if reply.error is None:
        payload = stream_encode(pack(reply.params, reply.extras))
    header = pb.ReplyHeader(
        task_id=task_id,
        num_examples=reply.num_examples,
        metrics_json=json.dumps(dict(reply.metrics)),
        payload=payload.ref,
    )
    if reply.error is not None:
        header.error = reply.error[:MAX_ERROR_CHARS]
    return header, payload


def decode_reply(
    header: pb.ReplyHeader, payload: bytes | memoryview, *, node_id: str, kind: str, round: int, max_bytes: int
) -> Reply:
    """A :class:`Reply` from a header and its verified payload, for the task the coordinator recorded."""
    if header.HasField("error"):
        return Reply(node_id=node_id, kind=kind, round=round, error=header.error[:MAX_ERROR_CHARS] or "(no reason)")
    metrics = _json_object(header.metrics_json, "reply metrics")
    params, extras = decode_payload(payload, max_bytes=max_bytes)
    return Reply(
        node_id=node_id,
        kind=kind,
        round=round,
        params=params,
        extras=extras,
        num_examples=header.num_examples,
        metrics=metrics,  # values are checked by the engine's validation, with the reason recorded
    )


def decode_payload(data: bytes | memoryview, *, max_bytes: int) -> tuple[ParamSet, ParamSet]:
    """Split a reply payload into parameters and extras; any other name is refused."""
    if not data:
        return ParamSet(), ParamSet()
    try:
        return unpack(decode(data, max_bytes=max_bytes))
    except ValidationError as exc:  # a stray name, or one that is empty once its prefix is removed
        raise CodecError(f"reply payload is malformed: {exc}") from exc


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CodecError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CodecError(f"{what} must be a JSON object; got {type(value).__name__}")
    return value
