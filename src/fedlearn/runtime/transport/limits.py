"""Size and timing rules shared by both ends of the gRPC link.

Two sizes matter and they are kept apart on purpose. A *message* is one logical blob, a task's
parameters or a node's reply, and ``max_message_bytes`` bounds it on each side; the bound is
checked against the announced size before a single byte is buffered. A *frame* is one gRPC
message carrying a chunk of a blob or a small header. Frames stay at most a few MiB whatever the
model size, so gRPC's own message limit (and its 2 GB ceiling) never comes into play.
"""

from __future__ import annotations

from fedlearn.core import limits as core_limits
from fedlearn.core.errors import ConfigError

DEFAULT_CHUNK_BYTES = 1 << 20
"""1 MiB: large enough to amortise per-message overhead, small enough to interleave sessions."""

MAX_CHUNK_BYTES = 4 << 20

HEADER_ALLOWANCE = 1 << 20
"""Room in a frame beside the chunk: task config and reply metrics travel as JSON headers."""

MAX_FRAME_BYTES = MAX_CHUNK_BYTES + HEADER_ALLOWANCE

DEFAULT_MAX_MESSAGE_BYTES = core_limits.DEFAULT_MAX_MESSAGE_BYTES

DEFAULT_FIRST_MESSAGE_TIMEOUT = 10.0
"""Seconds a new stream may take to send its first message (a session's Hello, an upload's header)."""

DEFAULT_STREAM_IDLE_TIMEOUT = 30.0
"""Seconds a transfer may stand still: no chunk of an upload arrives, or no chunk of a download
is taken. A transfer that moves is never cut off."""

DEFAULT_UPLOAD_WAIT_TIMEOUT = 300.0
"""Seconds an upload may wait for room in the coordinator's reply buffer. Generous, because
replies larger than ``node_upload_bytes`` are received one at a time and a large model's take
a while each; the waiting upload costs a thread, not memory."""

DEFAULT_REVOCATION_CHECK_INTERVAL = 0.5
"""Seconds between re-checks of every live session's token, so revoking a node (in the store,
perhaps from another process) closes its session within a second."""


def check_sizes(*, max_message_bytes: int, chunk_bytes: int) -> None:
    """Refuse sizes that could not work, naming the parameter."""
    if max_message_bytes <= 0:
        raise ConfigError(f"`max_message_bytes` must be positive; got {max_message_bytes}")
    if not 0 < chunk_bytes <= MAX_CHUNK_BYTES:
        raise ConfigError(f"`chunk_bytes` must be in (0, {MAX_CHUNK_BYTES}]; got {chunk_bytes}")


def check_timeout(name: str, value: float) -> None:
    """Every wait has a deadline, so a deadline must be a positive number of seconds."""
    if not value > 0:
        raise ConfigError(f"`{name}` must be a positive number of seconds; got {value}")


def server_options(*, keepalive_interval: float, keepalive_timeout: float) -> list[tuple[str, int]]:
    """Frame limits, no silent port sharing, and transport keepalive towards the nodes.

    Keepalive pings are HTTP/2 PINGs answered inside gRPC's C core without Python, so a node busy
    holding the GIL still answers them, while a frozen, dead or unreachable one does not and its
    connection is closed. Nodes ping too (see :func:`client_options`); that is allowed at any rate.
    """
    return [
        *_frame_options(),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", _ms(keepalive_interval)),
        ("grpc.keepalive_timeout_ms", _ms(keepalive_timeout)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.ping_timeout_ms", _ms(keepalive_timeout)),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 0),
        ("grpc.http2.max_ping_strikes", 0),
    ]


def client_options(*, keepalive: float) -> list[tuple[str, int]]:
    """Frame limits and transport keepalive towards the coordinator, so a node notices it is gone."""
    return [
        *_frame_options(),
        ("grpc.keepalive_time_ms", _ms(keepalive)),
        ("grpc.keepalive_timeout_ms", _ms(keepalive)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.ping_timeout_ms", _ms(keepalive)),
    ]


def _frame_options() -> list[tuple[str, int]]:
    """Frames above ``MAX_FRAME_BYTES`` are refused by gRPC itself."""
    return [
        ("grpc.max_receive_message_length", MAX_FRAME_BYTES),
        ("grpc.max_send_message_length", MAX_FRAME_BYTES),
    ]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
