"""Real loopback coordinators and node agents for the transport tests; no mocks.

Timings are shrunk (heartbeat every 0.1 s, offline after 0.6 s, reconnect within 0.2 s) so
failure handling is observable in a fraction of a second.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest

from fedlearn.core.messages import Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.runtime.agent import NodeAgent, TaskHandler
from fedlearn.runtime.grpc_fleet import GrpcFleet, serve
from fedlearn.runtime.proto import fleet_pb2 as pb
from fedlearn.runtime.proto import fleet_pb2_grpc as pb_grpc
from fedlearn.runtime.tls import ClientTLS, ServerTLS
from fedlearn.runtime.transport.backoff import Backoff

TOKENS = {"a": "token-a", "b": "token-b", "c": "token-c", "raw": "token-raw"}
FAST_BACKOFF = Backoff(initial=0.05, maximum=0.2)


def authenticate(node: str, token: str) -> bool:
    return TOKENS.get(node) == token


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)


def receive_all(fleet: GrpcFleet, count: int, timeout: float = 10.0) -> list[Reply]:
    replies: list[Reply] = []
    deadline = time.monotonic() + timeout
    while len(replies) < count and time.monotonic() < deadline:
        replies += fleet.receive(timeout=0.1)
    return replies


def metadata(node: str = "raw", token: str | None = None) -> tuple[tuple[str, str], ...]:
    return (("x-fedlearn-node", node), ("x-fedlearn-token", TOKENS.get(node, "") if token is None else token))


class ShiftHandler:
    """Adds ``offset`` to every parameter (``None``: echoes them) and echoes the extras."""

    def __init__(self, offset: float | None = 1.0, delay: float = 0.0) -> None:
        self.offset = offset
        self.delay = delay
        self.tasks: list[Task] = []

    def handle(self, task: Task) -> Reply:
        self.tasks.append(task)
        time.sleep(self.delay)
        offset = self.offset
        params = task.params if offset is None else task.params.map(lambda a: a + np.asarray(offset, dtype=a.dtype))
        return Reply(
            node_id="ignored",
            kind=task.kind,
            round=task.round,
            params=params,
            extras=task.extras,
            num_examples=7,
            metrics={"loss": 0.25},
        )


@dataclass
class Coordinator:
    fleet: GrpcFleet
    server: grpc.Server
    port: int
    statuses: list[tuple[str, bool]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.fleet.close()
        self.server.stop(0).wait()

    def stub(self, tls: ClientTLS | None = None) -> pb_grpc.FleetStub:
        channel = grpc.secure_channel(self.address, tls.credentials()) if tls else grpc.insecure_channel(self.address)
        return pb_grpc.FleetStub(channel)


@dataclass
class AgentThread:
    agent: NodeAgent
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> AgentThread:
        def main() -> None:
            try:
                self.agent.run(self.stop)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        return self

    def halt(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(timeout=10)


@pytest.fixture
def start_coordinator() -> Iterator[Callable[..., Coordinator]]:
    started: list[Coordinator] = []

    def start(*, port: int = 0, tls: ServerTLS | None = None, **options: Any) -> Coordinator:
        statuses: list[tuple[str, bool]] = []
        settings: dict[str, Any] = {"heartbeat_interval": 0.1, "heartbeat_timeout": 0.6, **options}
        fleet = GrpcFleet(
            authenticate=authenticate, on_node_status=lambda node, online: statuses.append((node, online)), **settings
        )
        server, bound = serve(fleet, f"127.0.0.1:{port}", tls)
        coordinator = Coordinator(fleet=fleet, server=server, port=bound, statuses=statuses)
        started.append(coordinator)
        return coordinator

    yield start
    for coordinator in started:
        coordinator.stop()


@pytest.fixture
def start_agent() -> Iterator[Callable[..., AgentThread]]:
    running: list[AgentThread] = []

    def start(coordinator: Coordinator, name: str, handler: TaskHandler | None = None, **options: Any) -> AgentThread:
        settings: dict[str, Any] = {"token": TOKENS.get(name, "nope"), "backoff": FAST_BACKOFF, **options}
        agent = NodeAgent(handler or ShiftHandler(), coordinator=coordinator.address, name=name, **settings)
        thread = AgentThread(agent).start()
        running.append(thread)
        return thread

    yield start
    for thread in running:
        thread.halt()


@pytest.fixture
def params() -> ParamSet:
    rng = np.random.default_rng(0)
    return ParamSet(
        {
            "dense/w": rng.standard_normal((64, 32)).astype(np.float32),
            "dense/b": np.array([np.nan, -0.0, np.inf, 1e-45], np.float32),  # bit patterns, not values
            "steps": np.array(12345678901, np.int64),
            "mask": rng.integers(0, 255, size=17, dtype=np.uint8),
            "double": rng.standard_normal(5),
        }
    )


class RawSession:
    """A hand-driven session for one node (``raw`` unless told): its task headers land in a queue."""

    def __init__(self, coordinator: Coordinator, *, node: str, heartbeat: bool) -> None:
        self.headers: queue.Queue[pb.TaskHeader] = queue.Queue()
        self._done = threading.Event()
        self._heartbeat = heartbeat
        self._call = coordinator.stub().Session(self._requests(), metadata=metadata(node))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_until(lambda: node in coordinator.fleet.available())

    def _requests(self) -> Iterator[pb.NodeMessage]:
        yield pb.NodeMessage(hello=pb.Hello(protocol=1))
        while not self._done.wait(0.05):
            if self._heartbeat:
                yield pb.NodeMessage(heartbeat=pb.Heartbeat())

    def _read(self) -> None:
        try:
            for message in self._call:
                if message.HasField("task"):
                    self.headers.put(message.task)
        except grpc.RpcError:
            pass

    def get(self) -> pb.TaskHeader:
        return self.headers.get(timeout=5)

    def close(self) -> None:
        self._done.set()
        self._call.cancel()
        self._reader.join(timeout=5)

    def __enter__(self) -> RawSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_session(coordinator: Coordinator, *, node: str = "raw", heartbeat: bool = True) -> RawSession:
    return RawSession(coordinator, node=node, heartbeat=heartbeat)
