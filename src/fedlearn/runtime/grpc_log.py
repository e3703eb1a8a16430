"""gRPC's C core log, read back into Python logging: failed TLS handshakes name their peer.

gRPC Python gives a server no callback when a connection fails its TLS handshake; only the C core
knows, and it writes what it knows to file descriptor 2, bypassing Python. An operator whose node
cannot connect then sees nothing on the coordinator, or a raw OpenSSL line such as
``WRONG_VERSION_NUMBER`` with no hint of who tried. The core's ``handshaker`` trace does name the
peer (``endpoint_peer_address``) beside the error, so the coordinator turns that trace on and reads
its own descriptor 2 through a pipe:

- a failed handshake becomes one warning that names the peer and says what it probably means
  (a node speaking plaintext to a TLS coordinator, a node without a client certificate, a
  certificate from another CA);
- the core's warnings and errors become log records of the ``grpc`` logger, so they follow
  ``--log-format json`` like everything else; its informational lines are dropped unless debugging.

Python's own ``sys.stderr`` is moved to a copy of the original descriptor first, so the process's
log lines and tracebacks never pass through the pipe. The reader is a daemon thread that never
stops reading: a full pipe would block the core's logging. The trace must be asked for before
``grpc`` is first imported, which ``fedlearn.cli.logs.trace_grpc_handshakes`` does (this package
imports grpc); :func:`capture_core_log` runs any time after.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

logger = logging.getLogger("grpc")

_RECORD = re.compile(rb"^[DIWEF]\d{4} ")
_FAILED = re.compile(
    r"CallNextHandshakerLocked: error=(?P<error>(?!OK ).+?) shutdown=.*?endpoint_peer_address=(?P<peer>[^,}\s]+)",
    re.S,
)
_HINTS = (
    ("WRONG_VERSION_NUMBER", "it does not speak TLS (a node started without --tls-ca?)"),
    ("HTTP_REQUEST", "it does not speak TLS (a node started without --tls-ca?)"),
    ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "it sent no client certificate (a node needs --tls-cert and --tls-key)"),
    ("CERTIFICATE_VERIFY_FAILED", "its certificate is not signed by the CA given as --tls-client-ca"),
    ("TLSV1_ALERT_UNKNOWN_CA", "it does not trust this coordinator's certificate (check the node's --tls-ca)"),
    ("TLSV1_ALERT_BAD_CERTIFICATE", "it refused this coordinator's certificate (check the name and the CA)"),
)
_LEVELS = {b"W": logging.WARNING, b"E": logging.ERROR, b"F": logging.CRITICAL, b"I": logging.DEBUG, b"D": logging.DEBUG}


def capture_core_log() -> None:
    """Point descriptor 2 at a pipe read into Python logging; Python's stderr keeps the original."""
    previous = sys.stderr
    previous.flush()
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    for handler in logging.getLogger().handlers:  # handlers made earlier hold the old stream object
        if isinstance(handler, logging.StreamHandler) and handler.stream is previous:
            handler.setStream(sys.stderr)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    reader = os.fdopen(read_end, "rb", buffering=0)
    threading.Thread(target=_pump, args=(reader,), name="fedlearn-grpc-log", daemon=True).start()


_QUIET_SECONDS = 10.0
_OPENSSL_CODE = re.compile(r"OPENSSL_internal:([A-Z0-9_]+)")


def _unknown(error: str) -> str:
    """A failure without a hint: its OpenSSL reason code, or the core's text, on one short line."""
    code = _OPENSSL_CODE.search(error)
    if code is not None:
        return f"{code[1]} (the TLS settings of the node and the coordinator disagree)"
    return " ".join(error.split())[:200]


class _PerAddress:
    """One warning per address per quiet period, so a peer that retries (or floods) cannot flood the log."""

    def __init__(self, quiet: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._quiet, self._clock = quiet, clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, address: str) -> int | None:
        """None to stay quiet; otherwise how many were suppressed since the last warning."""
        now = self._clock()
        if now - self._last.get(address, -math.inf) < self._quiet:
            self._suppressed[address] = self._suppressed.get(address, 0) + 1
            return None
        if len(self._last) > 10_000:  # bounded, whatever addresses connect
            self._last.clear()
        self._last[address] = now
        return self._suppressed.pop(address, 0)


_LIMITER = _PerAddress(_QUIET_SECONDS)


def _pump(stream: BinaryIO) -> None:
    for level, record in _records(stream):
        with contextlib.suppress(Exception):  # never stop reading: a full pipe would block the core
            translate(record.decode("utf-8", errors="replace"), level)


def _records(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Whole log records with their level, each as soon as it is complete.

    A line that does not start like a record continues the one before and shares its level, so
    the stack trace under an informational line is dropped with it.
    """
    pending, level = b"", logging.WARNING
    for line in iter(stream.readline, b""):
        if _RECORD.match(line):
            if pending:  # the continuation never came
                yield level, pending
            pending, level = b"", _LEVELS.get(line[:1], logging.WARNING)
        pending += line
        if b"CallNextHandshakerLocked" in pending and b"shutdown=" not in pending:
            continue  # a handshake error's text holds a newline: the record goes on on the next line
        yield level, pending
        pending = b""
    if pending:
        yield level, pending


def translate(record: str, level: int = logging.WARNING) -> None:
    """Log one core record as fedlearn would say it: a failed handshake by its peer, the rest at ``level``."""
    failed = _FAILED.search(record)
    if failed is not None:
        peer = failed["peer"].removeprefix("ipv4:").removeprefix("ipv6:")
        error = failed["error"]
        hint = next((h for code, h in _HINTS if code in error), None) or _unknown(error)
        repeats = _LIMITER.allow(peer.rsplit(":", 1)[0])
        if repeats is not None:
            more = f" ({repeats} more from this address in the last {_QUIET_SECONDS:g} s)" if repeats else ""
            logger.warning("TLS handshake with %s failed: %s%s", peer, hint, more)
        return
    if "CallNextHandshakerLocked" in record or "not suitable for production" in record:
        return
    message = record.split("] ", 1)[-1].strip() if _RECORD.match(record.encode()) else record.strip()
    if message:
        logger.log(level, "%s", message)
