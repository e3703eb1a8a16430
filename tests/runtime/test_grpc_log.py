"""gRPC core log lines, as the C core writes them, read back as fedlearn log records."""

from __future__ import annotations

import io
import logging

import pytest

from fedlearn.runtime import grpc_log

PLAINTEXT_PEER = (
    b"I1202 06:30:44.829555   29823 handshaker.cc:155] CallNextHandshakerLocked: error=OK shutdown=false index=1, "
    b"args={endpoint=0x7f, args={grpc.internal.endpoint_peer_address=ipv4:10.1.2.3:52972, grpc.resource_quota=0x56}}\n"
    b"I1202 06:30:44.829761   29822 ssl_transport_security.cc:2563] Handshake failed with error SSL_ERROR_SSL: "
    b"error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER: Invalid certificate verification context\n"
    b"I1202 06:30:44.829788   29822 handshaker.cc:155] CallNextHandshakerLocked: error=UNKNOWN: Ssl handshake failed "
    b"(TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER: "
    b"Invalid certificate verification context: OK\n"
    b" shutdown=false index=2, args={endpoint=0x7f, args={grpc.internal.endpoint_local_address=ipv4:127.0.0.1:37951, "
    b"grpc.internal.endpoint_peer_address=ipv4:10.1.2.3:52972, grpc.resource_quota=0x56}}\n"
    b"I1202 06:30:44.829808   29822 channel_trace.h:396] handshake manager 0x7f: Failed with error: UNKNOWN: Ssl\n"
    b"=== Source Location Trace: ===\n"
    b"src/core/util/status_helper.cc:68\n"
    b"E1202 06:30:45.000000   29822 server.cc:10] something the core thinks is an error\n"
)


@pytest.fixture(autouse=True)
def _fresh_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grpc_log, "_LIMITER", grpc_log._PerAddress(grpc_log._QUIET_SECONDS))


def _logged(raw: bytes, caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[tuple[int, str]]:
    caplog.set_level(level, logger="grpc")
    for record_level, record in grpc_log._records(io.BytesIO(raw)):
        grpc_log.translate(record.decode(), record_level)
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "grpc"]


def test_a_failed_handshake_names_its_peer_with_a_hint_and_nothing_raw(caplog: pytest.LogCaptureFixture) -> None:
    logged = _logged(PLAINTEXT_PEER, caplog)

    assert logged == [
        (logging.WARNING, "TLS handshake with 10.1.2.3:52972 failed: it does not speak TLS (a node started without "
         "--tls-ca?)"),
        (logging.ERROR, "something the core thinks is an error"),
    ]  # fmt: skip


def test_informational_lines_and_their_continuations_appear_only_when_debugging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logged = _logged(PLAINTEXT_PEER, caplog, level=logging.DEBUG)

    assert (logging.DEBUG, "src/core/util/status_helper.cc:68") in logged
    assert not any("CallNextHandshakerLocked" in message for _, message in logged)


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "it sent no client certificate"),
        ("CERTIFICATE_VERIFY_FAILED", "not signed by the CA given as --tls-client-ca"),
        ("SOMETHING_NEW", "SOMETHING_NEW"),
    ],
)
def test_each_known_failure_gets_its_hint(code: str, hint: str, caplog: pytest.LogCaptureFixture) -> None:
    raw = PLAINTEXT_PEER.replace(b"WRONG_VERSION_NUMBER", code.encode())

    [(_, warning), _] = _logged(raw, caplog)

    assert hint in warning


def test_a_peer_that_keeps_failing_is_reported_once_per_quiet_period(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limiter = grpc_log._PerAddress(10.0, clock=lambda: now[0])
    grpc_log._LIMITER = limiter  # the autouse fixture puts a fresh one back afterwards

    first = _logged(PLAINTEXT_PEER * 50, caplog)
    now[0] = 11.0
    caplog.clear()
    later = _logged(PLAINTEXT_PEER, caplog)

    assert sum("TLS handshake" in m for _, m in first) == 1
    [warning] = [m for _, m in later if "TLS handshake" in m]
    assert warning.endswith("(49 more from this address in the last 10 s)")
