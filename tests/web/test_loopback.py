"""The API under uvicorn on loopback, with hostile clients: floods, bodies over the limit, bodies that never end.

The flood and the client's view run against a real ``fedlearn coordinator`` process, whose memory
is measured from outside; the slow clients against the app served as the coordinator serves it,
in a thread, with deadlines short enough to wait for.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.runtime.coordinator import Coordinator
from fedlearn.runtime.store import open_store
from fedlearn.simulation.inprocess import InProcessFleet
from fedlearn.web.api import create_app
from fedlearn.web.server import api_server
from tests.runtime.deploy.conftest import ADMIN, Deployment
from tests.web.serving import served_on_loopback
from tests.web.test_api import _no_node

LIMIT = 65536
READ_TIMEOUT = 0.5
TIMER_SLACK = 0.02  # asyncio fires a timer up to its clock resolution early; seen 0.4990 s for 0.5 s
ATTACK_SECONDS = 1.5
ANNOUNCED = 256 << 20  # what each hostile POST claims it will send


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("coordinator")
    deployed = Deployment(tmp=tmp, store_url=f"sqlite:///{tmp / 'coordinator.db'}")
    deployed.start_coordinator("--max-request-bytes", str(LIMIT))
    yield deployed
    deployed.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[int]:
    """The app served in a thread, with short deadlines for headers and body; yields its port."""
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        app = create_app(Coordinator(store, InProcessFleet([], _no_node)), admin_token=ADMIN, body_timeout=READ_TIMEOUT)
        server = api_server(app, host="127.0.0.1", port=0, header_timeout=READ_TIMEOUT)
        with served_on_loopback(server) as port:
            yield port


def _hostile_posts(port: int, until: float) -> list[int]:
    """Token-less POSTs announcing ANNOUNCED bytes, one after another until ``until``: the bytes each got to send."""
    head = (
        f"POST /api/runs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {ANNOUNCED}\r\n\r\n"
    )
    chunk = bytes(1 << 20)
    sent = []
    while time.monotonic() < until:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(head.encode())
            total = 0
            try:
                while total < ANNOUNCED and time.monotonic() < until:
                    total += sock.send(chunk)
            except OSError:  # the server closed the connection: what it should do
                pass
            sent.append(total)
    return sent


@pytest.mark.slow
def test_token_less_floods_leave_memory_flat_and_health_answering(coordinator: Deployment) -> None:
    assert coordinator.coordinator is not None
    server = psutil.Process(coordinator.coordinator.pid)
    health = f"{coordinator.api}/api/health"
    httpx.get(health).raise_for_status()
    before = server.memory_info().rss
    peak, slowest, probes = before, 0.0, 0

    with ThreadPoolExecutor(4) as pool:
        attacks = [
            pool.submit(_hostile_posts, coordinator.http_port, time.monotonic() + ATTACK_SECONDS) for _ in range(4)
        ]
        while not all(a.done() for a in attacks):
            started = time.monotonic()
            assert httpx.get(health, timeout=5).status_code == 200
            slowest, probes = max(slowest, time.monotonic() - started), probes + 1
            peak = max(peak, server.memory_info().rss)
            time.sleep(0.02)
        sent = [n for a in attacks for n in a.result()]

    assert probes >= 10
    assert slowest < 1.0
    assert (peak - before) / 2**20 < 20
    assert max(sent) < 32 << 20, "a refused body was read far past its headers"


def test_client_reports_a_request_over_the_limit_in_one_line(coordinator: Deployment) -> None:
    with coordinator.client() as client, pytest.raises(ConfigError) as refused:
        client.submit("#" * (LIMIT + 1))

    assert str(refused.value) == (
        f"the coordinator refused POST /api/runs as too large: the request body is larger than this coordinator's "
        f"limit of {LIMIT} bytes; send less, or start `fedlearn coordinator` with a larger --max-request-bytes"
    )


def _answer_and_close(sock: socket.socket, *, trickle: bytes = b"", within: float) -> tuple[bytes, float]:
    """What the server answers before it closes, and after how long, sending ``trickle`` every 50 ms."""
    started = time.monotonic()
    sock.settimeout(0.05)
    answer = b""
    while time.monotonic() - started < within:
        try:
            if trickle:
                sock.send(trickle)
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionError:  # reset after the answer was read: closed all the same
            break
        if not data:
            break
        answer += data
    else:
        pytest.fail(f"the connection was still open after {within} s; answered so far: {answer!r}")
    return answer, time.monotonic() - started


def test_body_trickled_forever_is_cut_off_at_the_deadline(served: int) -> None:
    head = f"POST /api/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: 100000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(head.encode() + b'{"config": ')

        answer, after = _answer_and_close(sock, trickle=b" ", within=READ_TIMEOUT + 2)

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert READ_TIMEOUT - TIMER_SLACK <= after < READ_TIMEOUT + 1


def test_token_less_request_is_answered_and_closed_without_waiting_for_its_body(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(b"POST /api/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")

        answer, after = _answer_and_close(sock, within=1.0)

    assert answer.startswith(b"HTTP/1.1 401 ")
    assert after < 0.5


def test_connection_that_sends_nothing_is_closed_at_the_deadline(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        answer, after = _answer_and_close(sock, within=READ_TIMEOUT + 2)

    assert answer == b""
    assert READ_TIMEOUT - TIMER_SLACK <= after < READ_TIMEOUT + 1


def test_headers_trickled_forever_are_cut_off_at_the_deadline(served: int) -> None:
    with socket.create_connection(("127.0.0.1", served)) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")

        answer, after = _answer_and_close(sock, trickle=b"X-Slow: 1\r\n", within=READ_TIMEOUT + 2)

    assert answer == b""
    assert READ_TIMEOUT - TIMER_SLACK <= after < READ_TIMEOUT + 1


def test_connection_kept_alive_gets_a_fresh_deadline_for_each_request(served: int) -> None:
    answers = []
    with socket.create_connection(("127.0.0.1", served), timeout=2) as sock:
        for _ in range(4):  # in all longer than the deadline, though each pause is shorter
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"}"):
                received = sock.recv(65536)
                if not received:
                    pytest.fail(f"the server closed the connection after {len(answers)} answers")
                answer += received
            answers.append(answer.split(b"\r\n", 1)[0])
            time.sleep(READ_TIMEOUT * 0.6)

    assert answers == [b"HTTP/1.1 200 OK"] * 4
