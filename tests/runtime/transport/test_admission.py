"""What one node may hold on the coordinator: calls, deadlines on silent streams, and reply bytes.

Each test plays a hostile node by hand over a real loopback channel and checks the refusal names
its limit, while honest work goes on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import pytest

from fedlearn.core.messages import Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.runtime.proto import fleet_pb2 as pb
from fedlearn.runtime.transport.envelope import encode_reply
from tests.runtime.transport.conftest import (
    AgentThread,
    Coordinator,
    metadata,
    raw_session,
    receive_all,
    wait_until,
)

StartCoordinator = Callable[..., Coordinator]
StartAgent = Callable[..., AgentThread]
TASK = Task(kind="fit", round=1, params=ParamSet({"w": np.arange(16, dtype=np.float32)}))
REPLY_PARAMS = ParamSet({"w": np.zeros(4096, np.float32)})  # 16 KiB: 16 chunks of 1 KiB
SETTLE = 0.3  # seconds for the server to take in what a client just sent


class SilentCall:
    """A stream from node ``node`` that never sends a message; ``result`` says how it ended."""

    def __init__(self, coordinator: Coordinator, method: str = "Upload", node: str = "raw") -> None:
        self._stop = threading.Event()
        stub = coordinator.stub()
        if method == "Upload":
            self._future = stub.Upload.future(self._nothing(), metadata=metadata(node), timeout=10)
        else:
            self._call = stub.Session(self._nothing(), metadata=metadata(node), timeout=10)
            self._future = None

    def _nothing(self) -> Iterator[pb.UploadMessage]:
        self._stop.wait(10)
        yield from ()

    def result(self) -> grpc.RpcError | None:
        """How the call ended: its error, or None if it ended well."""
        try:
            if self._future is not None:
                self._future.result()
            else:
                list(self._call)
        except grpc.RpcError as exc:
            return exc
        finally:
            self._stop.set()
        return None


class HeldUpload:
    """A real reply to ``task_id``, uploaded in 1 KiB chunks, that stops before chunk ``hold`` until released.

    With ``pace`` it instead sends a chunk every ``pace`` seconds: slow, but never idle.
    """

    def __init__(self, coordinator: Coordinator, task_id: str, *, node: str = "raw", hold: int = 3,
                 pace: float = 0.0) -> None:  # fmt: skip
        header, payload = encode_reply(task_id, Reply(node_id=node, kind="fit", round=1, params=REPLY_PARAMS))
        self.size = payload.size
        self.release = threading.Event()
        self.held = threading.Event()
        chunks = list(payload.chunks(1024))

        def messages() -> Iterator[pb.UploadMessage]:
            yield pb.UploadMessage(header=header)
            for index, chunk in enumerate(chunks):
                if pace:
                    time.sleep(pace)
                elif index == hold:
                    self.held.set()
                    self.release.wait(10)
                yield pb.UploadMessage(chunk=chunk)

        self.future = coordinator.stub().Upload.future(messages(), metadata=metadata(node), timeout=20)

    def result(self) -> pb.UploadAck | grpc.StatusCode:
        try:
            return self.future.result()
        except grpc.RpcError as exc:
            return exc.code()
        finally:
            self.release.set()


def _upload_nothing(coordinator: Coordinator, node: str = "raw") -> pb.UploadAck:
    """An upload for a task that does not exist: answered at once, so it shows whether a call gets in."""
    header = pb.ReplyHeader(task_id="no-such-task")
    return coordinator.stub().Upload(iter([pb.UploadMessage(header=header)]), metadata=metadata(node), timeout=5)


# -- calls per node --------------------------------------------------------------------------------


def test_calls_past_max_calls_per_node_are_refused_and_other_nodes_are_served(
    start_coordinator: StartCoordinator, start_agent: StartAgent
) -> None:
    coordinator = start_coordinator(max_calls_per_node=3)
    silent = [SilentCall(coordinator, method) for method in ("Upload", "Session", "Upload")]
    time.sleep(SETTLE)

    with pytest.raises(grpc.RpcError) as refused:
        _upload_nothing(coordinator)
    start_agent(coordinator, "a")
    wait_until(lambda: coordinator.fleet.available() == ["a"])
    coordinator.fleet.send("a", TASK)
    [reply] = receive_all(coordinator.fleet, 1)

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.details() == "node raw already has 3 calls open; a node may have 3 (max_calls_per_node)"
    assert reply.ok, reply.error
    for call in silent:
        call._stop.set()


def test_a_silent_upload_is_cancelled_after_first_message_timeout_and_frees_its_call(
    start_coordinator: StartCoordinator,
) -> None:
    coordinator = start_coordinator(max_calls_per_node=1, first_message_timeout=0.3)
    started = time.monotonic()

    ended = SilentCall(coordinator).result()
    took = time.monotonic() - started

    assert ended is not None and ended.code() == grpc.StatusCode.CANCELLED and took < 2.0
    assert not _upload_nothing(coordinator).accepted  # answered: the node's one call is free again


def test_a_session_that_never_says_hello_ends_after_first_message_timeout(
    start_coordinator: StartCoordinator,
) -> None:
    coordinator = start_coordinator(first_message_timeout=0.3)

    ended = SilentCall(coordinator, "Session").result()

    assert ended is not None and ended.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert ended.details() == "no Hello within 0.3 s (first_message_timeout)"


def test_an_upload_that_stalls_midway_is_cut_off_and_its_task_fails(start_coordinator: StartCoordinator) -> None:
    coordinator = start_coordinator(stream_idle_timeout=0.5)
    with raw_session(coordinator) as raw:
        coordinator.fleet.send("raw", TASK)
        stalled = HeldUpload(coordinator, raw.get().task_id)

        [reply] = receive_all(coordinator.fleet, 1, timeout=5)
        ended = stalled.result()

    assert reply.error == "node raw sent no chunk of its upload for 0.5 s (stream_idle_timeout)"
    assert ended == grpc.StatusCode.CANCELLED


def test_a_download_nobody_reads_is_cut_off_after_stream_idle_timeout(start_coordinator: StartCoordinator) -> None:
    coordinator = start_coordinator(stream_idle_timeout=0.5, chunk_bytes=1 << 16)
    model = ParamSet({"w": np.zeros(16 << 20, np.float32)})  # 64 MiB: far more than flow control lets through
    with raw_session(coordinator) as raw:
        coordinator.fleet.send("raw", Task(kind="fit", round=1, params=model))
        chunks = coordinator.stub().Download(
            pb.BlobRequest(digest=raw.get().params.digest), metadata=metadata(), timeout=20
        )
        received = len(next(chunks).data)
        time.sleep(1.5)  # the server's sends block; its deadline passes

        with pytest.raises(grpc.RpcError) as cut:
            for chunk in chunks:
                received += len(chunk.data)

    assert cut.value.code() == grpc.StatusCode.CANCELLED
    assert received < 64 << 20


# -- reply bytes -----------------------------------------------------------------------------------


def test_a_second_upload_of_a_task_is_refused_while_the_first_proceeds(start_coordinator: StartCoordinator) -> None:
    coordinator = start_coordinator()
    with raw_session(coordinator) as raw:
        coordinator.fleet.send("raw", TASK)
        task_id = raw.get().task_id
        first = HeldUpload(coordinator, task_id)
        assert first.held.wait(5)
        time.sleep(SETTLE)

        second = HeldUpload(coordinator, task_id, hold=-1).result()
        first.release.set()
        accepted = first.result()
        [reply] = receive_all(coordinator.fleet, 1)

    assert isinstance(second, pb.UploadAck) and not second.accepted
    assert second.detail == f"task {task_id[:40]!r} is already being uploaded; a task takes one upload"
    assert isinstance(accepted, pb.UploadAck) and accepted.accepted
    assert reply.ok and reply.params.bitwise_equal(REPLY_PARAMS)
    assert coordinator.fleet.stats.uploads == 1


def test_a_nodes_concurrent_uploads_past_node_upload_bytes_are_refused(start_coordinator: StartCoordinator) -> None:
    coordinator = start_coordinator(node_upload_bytes=10_000)  # less than one 16 KiB reply: still accepted alone
    with raw_session(coordinator) as raw:
        coordinator.fleet.send("raw", TASK)
        coordinator.fleet.send("raw", TASK)
        first = HeldUpload(coordinator, raw.get().task_id)
        assert first.held.wait(5)
        time.sleep(SETTLE)

        second = HeldUpload(coordinator, raw.get().task_id, hold=-1).result()
        [refused] = receive_all(coordinator.fleet, 1)
        first.release.set()
        accepted = first.result()
        [reply] = receive_all(coordinator.fleet, 1)

    assert second == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.error is not None and refused.error.startswith("node raw is already sending ")
    assert refused.error.endswith("bytes a node's uploads may hold at once (node_upload_bytes)")
    assert isinstance(accepted, pb.UploadAck) and accepted.accepted and reply.ok


def test_uploads_from_two_nodes_take_turns_when_the_buffer_holds_one(start_coordinator: StartCoordinator) -> None:
    coordinator = start_coordinator(upload_buffer_bytes=20_000, node_upload_bytes=20_000)  # room for one reply
    with raw_session(coordinator) as raw, raw_session(coordinator, node="b") as b:
        coordinator.fleet.send("raw", TASK)
        coordinator.fleet.send("b", TASK)
        first = HeldUpload(coordinator, raw.get().task_id)
        assert first.held.wait(5)
        time.sleep(SETTLE)
        second = HeldUpload(coordinator, b.get().task_id, node="b", hold=-1)
        time.sleep(SETTLE)
        waited = not second.future.done() and coordinator.fleet.stats.uploads == 0

        first.release.set()
        acks = [first.result(), second.result()]
        replies = receive_all(coordinator.fleet, 2)

    assert waited
    assert all(isinstance(ack, pb.UploadAck) and ack.accepted for ack in acks)
    assert sorted(r.node_id for r in replies if r.ok) == ["b", "raw"]


def test_an_upload_that_finds_no_room_in_time_fails_its_task_naming_the_limit(
    start_coordinator: StartCoordinator,
) -> None:
    coordinator = start_coordinator(upload_buffer_bytes=20_000, node_upload_bytes=20_000, upload_wait_timeout=0.6)
    with raw_session(coordinator) as raw, raw_session(coordinator, node="b") as b:
        coordinator.fleet.send("raw", TASK)
        coordinator.fleet.send("b", TASK)
        slow = HeldUpload(coordinator, raw.get().task_id, pace=0.1)  # never idle, done after 1.6 s
        time.sleep(SETTLE)

        refused = HeldUpload(coordinator, b.get().task_id, node="b", hold=-1).result()
        [failed] = receive_all(coordinator.fleet, 1)
        accepted = slow.result()

    assert refused == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failed.node_id == "b" and failed.error is not None
    assert failed.error.startswith("node b's reply of ")
    assert failed.error.endswith("waited 0.6 s (upload_wait_timeout) for room: 16456 bytes of other replies fill "
                                 "upload_buffer_bytes (20000)")  # fmt: skip
    assert isinstance(accepted, pb.UploadAck) and accepted.accepted
