"""Logging for the long-running processes, ``fedlearn coordinator`` and ``fedlearn node``.

Both write timestamped lines to stderr, where a supervisor (systemd, a container runtime) collects
them. ``--log-format json`` writes one JSON object a line instead, for log shippers that index
fields; ``--log-level`` chooses how much. gRPC's own C-core messages are not Python log records
and are left to gRPC's environment variables.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer

_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


LogLevelOption = Annotated[LogLevel, typer.Option(help="Least severe messages to log.")]
LogFormatOption = Annotated[LogFormat, typer.Option(help="text: one line a message; json: one JSON object a line.")]


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time (UTC, ISO 8601), level, logger, message, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def quiet_grpc(level: LogLevel) -> None:
    """Keep gRPC's C core from writing its own lines (raw OpenSSL errors) between ours, unless debugging.

    It reads ``GRPC_VERBOSITY`` once, when grpc is first imported, so this runs before that; an
    operator's own setting of the variable wins.
    """
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR" if level is LogLevel.debug else "NONE")


def trace_grpc_handshakes(level: LogLevel) -> None:
    """Have gRPC's C core log each TLS handshake with its peer, for ``fedlearn.runtime.grpc_log`` to read back.

    For the coordinator, which otherwise cannot name a node whose handshake failed. Like
    :func:`quiet_grpc`, this must run before grpc is first imported; an operator's own
    ``GRPC_VERBOSITY`` still wins.
    """
    traces = [t for t in os.environ.get("GRPC_TRACE", "").split(",") if t]
    os.environ["GRPC_TRACE"] = ",".join(traces if "handshaker" in traces else [*traces, "handshaker"])
    os.environ.setdefault("GRPC_VERBOSITY", "DEBUG" if level is LogLevel.debug else "INFO")  # traces are INFO


def configure_logging(level: LogLevel, log_format: LogFormat) -> None:
    """Send every logger's records at ``level`` or above to stderr in ``log_format``, replacing earlier setup."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format is LogFormat.json else logging.Formatter(_TEXT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
