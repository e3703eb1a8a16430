"""GrpcFleet and NodeAgent over a real loopback server, with agents in threads."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import grpc
import numpy as np
import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import Reply, Task
from fedlearn.core.params import ParamSet
from fedlearn.runtime.grpc_fleet import GrpcFleet
from fedlearn.runtime.proto import fleet_pb2 as pb
from fedlearn.runtime.transport.stream import stream_encode
from tests.runtime.transport.conftest import (
    AgentThread,
    Coordinator,
    ShiftHandler,
    metadata,
    raw_session,
    receive_all,
    wait_until,
)

StartCoordinator = Callable[..., Coordinator]
StartAgent = Callable[..., AgentThread]


class OversizedReplyHandler:
    """Answers with far more bytes than it was sent."""

    def handle(self, task: Task) -> Reply:
        big = ParamSet({"w": np.zeros(1 << 18, np.float32)})
        return Reply(node_id="x", kind=task.kind, round=task.round, params=big, num_examples=1)


def _task(params: ParamSet, round: int = 1, extras: ParamSet | None = None) -> Task:
    return Task(kind="fit", round=round, params=params, extras=extras or ParamSet(), config={"lr": 0.5, "tag": "x"})


def _connected(coordinator: Coordinator, *names: str) -> None:
    wait_until(lambda: set(names) <= set(coordinator.fleet.available()))


def test_task_round_trips_with_bit_identical_params(
    start_coordinator: StartCoordinator, start_agent: StartAgent, params: ParamSet
) -> None:
    coordinator = start_coordinator()
    handler = ShiftHandler(offset=None)
    start_agent(coordinator, "a", handler)
    _connected(coordinator, "a")
    extras = ParamSet({"c": np.arange(3, dtype=np.float64)})

    coordinator.fleet.send("a", _task(params, extras=extras))
    [reply] = receive_all(coordinator.fleet, 1)

    assert reply.ok, reply.error
    assert (reply.node_id, reply.kind, reply.round, reply.num_examples) == ("a", "fit", 1, 7)
    assert reply.params.bitwise_equal(params)
    assert reply.extras.bitwise_equal(extras)
    assert dict(reply.metrics) == {"loss": 0.25}
    assert dict(handler.tasks[0].config) == {"lr": 0.5, "tag": "x"}


def test_node_holding_current_params_does_not_download_them_again(
    start_coordinator: StartCoordinator, start_agent: StartAgent, params: ParamSet
) -> None:
    coordinator = start_coordinator()
    start_agent(coordinator, "a")
    _connected(coordinator, "a")

    for round in (1, 2):
        coordinator.fleet.send("a", _task(params, round))
        assert receive_all(coordinator.fleet, 1)[0].ok

    assert coordinator.fleet.stats.downloads == 1


def test_new_params_are_downloaded_once_and_encoded_once_for_all_nodes(
    start_coordinator: StartCoordinator, start_agent: StartAgent, params: ParamSet
) -> None:
    coordinator = start_coordinator()
    for name in "abc":
        start_agent(coordinator, name)
    _connected(coordinator, "a", "b", "c")

    for name in "abc":
        coordinator.fleet.send(name, _task(params))
    replies = receive_all(coordinator.fleet, 3)

    assert all(r.ok for r in replies)
    assert coordinator.fleet.stats.blobs_encoded == 1
    assert coordinator.fleet.stats.downloads == 3


def test_multi_chunk_model_reassembles_bit_for_bit(
    start_coordinator: StartCoordinator, start_agent: StartAgent
) -> None:
    coordinator = start_coordinator(chunk_bytes=4096)
    start_agent(coordinator, "a", ShiftHandler(offset=None), chunk_bytes=1000)
    _connected(coordinator, "a")
    model = ParamSet({"w": np.random.default_rng(1).standard_normal((300, 301)).astype(np.float32)})

    coordinator.fleet.send("a", _task(model))
    [reply] = receive_all(coordinator.fleet, 1)

    assert reply.params.bitwise_equal(model)
    assert coordinator.fleet.stats.bytes_downloaded == stream_encode(model).size > 80 * 4096


def test_oversized_reply_becomes_an_error_reply_and_the_node_carries_on(
    start_coordinator: StartCoordinator, start_agent: StartAgent, params: ParamSet
) -> None:
    coordinator = start_coordinator(max_message_bytes=64 * 1024)
    start_agent(coordinator, "a", OversizedReplyHandler())
    _connected(coordinator, "a")

    coordinator.fleet.send("a", _task(params))
    [reply] = receive_all(coordinator.fleet, 1)

    assert reply.error is not None and "max_message_bytes" in reply.error and "accepts at most 65536" in reply.error
    assert coordinator.fleet.available() == ["a"]


def test_task_larger_than_the_node_accepts_becomes_an_error_reply(
    start_coordinator: StartCoordinator, start_agent: StartAgent, params: ParamSet
) -> None:
    coordinator = start_coordinator()
    start_agent(coordinator, "a", max_message_bytes=1024)
    _connected(coordinator, "a")

    coordinator.fleet.send("a", _task(params))
    [reply] = receive_all(coordinator.fleet, 1)

    assert reply.error is not None and "limit is 1024" in reply.error and "max_message_bytes" in reply.error
    assert coordinator.fleet.stats.downloads == 0


def test_upload_announcing_an_oversized_payload_is_refused_by_the_server(
    start_coordinator: StartCoordinator, params: ParamSet
) -> None:
    coordinator = start_coordinator(max_message_bytes=1000)
    with raw_session(coordinator) as raw:
        coordinator.fleet.send("raw", _task(params))
        header = raw.get()
        upload = pb.ReplyHeader(task_id=header.task_id, payload=pb.BlobRef(digest="0" * 64, size=10**9))

        with pytest.raises(grpc.RpcError) as refused:
            coordinator.stub().Upload(iter([pb.UploadMessage(header=upload)]), metadata=metadata(), timeout=5)
        [reply] = receive_all(coordinator.fleet, 1)

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reply.error is not None and "accepts at most 1000" in reply.error


def test_upload_with_garbage_payload_becomes_an_error_reply_and_the_server_serves_on(
    start_coordinator: StartCoordinator, start_agent: StartAgent, params: ParamSet
) -> None:
    coordinator = start_coordinator()
    start_agent(coordinator, "a")
    garbage = np.random.default_rng(2).bytes(5000)
    with raw_session(coordinator) as raw:
        coordinator.fleet.send("raw", _task(params))
        header = raw.get()
        upload = pb.ReplyHeader(
            task_id=header.task_id, payload=pb.BlobRef(digest=hashlib.sha256(garbage).hexdigest(), size=5000)
        )
        messages = [pb.UploadMessage(header=upload), pb.UploadMessage(chunk=garbage)]

        with pytest.raises(grpc.RpcError) as refused:
            coordinator.stub().Upload(iter(messages), metadata=metadata(), timeout=5)
        [bad] = receive_all(coordinator.fleet, 1)
    _connected(coordinator, "a")
    coordinator.fleet.send("a", _task(params))
    [good] = receive_all(coordinator.fleet, 1)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad.node_id == "raw" and bad.error is not None and "unreadable reply" in bad.error
    assert good.ok


@pytest.mark.parametrize("method", ["Session", "Download", "Upload"])
def test_undecodable_frames_are_refused_without_harm(start_coordinator: StartCoordinator, method: str) -> None:
    coordinator = start_coordinator()
    channel = grpc.insecure_channel(coordinator.address)
    path = f"/fedlearn.fleet.v1.Fleet/{method}"
    garbage = b"\xff\x00garbage" * 100

    with pytest.raises(grpc.RpcError) as refused:
        if method == "Download":
            list(channel.unary_stream(path)(garbage, metadata=metadata(), timeout=5))
        elif method == "Upload":
            channel.stream_unary(path)(iter([garbage]), metadata=metadata(), timeout=5)
        else:
            list(channel.stream_stream(path)(iter([garbage]), metadata=metadata(), timeout=5))

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unreadable" in (refused.value.details() or "")
    assert coordinator.fleet.available() == []


def test_raw_garbage_on_the_socket_does_not_stop_the_server(
    start_coordinator: StartCoordinator, start_agent: StartAgent, params: ParamSet
) -> None:
    import socket

    coordinator = start_coordinator()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", coordinator.port), timeout=5) as sock:
            sock.sendall(np.random.default_rng(3).bytes(4096))
    start_agent(coordinator, "a")
    _connected(coordinator, "a")

    coordinator.fleet.send("a", _task(params))

    assert receive_all(coordinator.fleet, 1)[0].ok


def test_late_reply_for_an_unknown_task_is_dropped(start_coordinator: StartCoordinator) -> None:
    coordinator = start_coordinator()
    header = pb.ReplyHeader(task_id="no-such-task", num_examples=1)

    ack = coordinator.stub().Upload(iter([pb.UploadMessage(header=header)]), metadata=metadata(), timeout=5)

    assert not ack.accepted and "not open" in ack.detail
    assert coordinator.fleet.receive(timeout=0.1) == []


def test_a_blob_is_served_only_to_nodes_with_an_open_task_for_it(
    start_coordinator: StartCoordinator, params: ParamSet
) -> None:
    coordinator = start_coordinator()
    with raw_session(coordinator) as raw:
        coordinator.fleet.send("raw", _task(params))
        digest = raw.get().params.digest
        stranger = metadata("a")

        with pytest.raises(grpc.RpcError) as refused:
            list(coordinator.stub().Download(pb.BlobRequest(digest=digest), metadata=stranger, timeout=5))

    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


def test_send_to_a_node_that_is_not_connected_fails_at_once(
    start_coordinator: StartCoordinator, params: ParamSet
) -> None:
    coordinator = start_coordinator()

    coordinator.fleet.send("a", _task(params))

    [reply] = coordinator.fleet.receive(timeout=1)
    assert reply.error == "node a is not connected"


def test_a_node_with_too_many_open_tasks_has_its_oldest_superseded(
    start_coordinator: StartCoordinator, params: ParamSet
) -> None:
    coordinator = start_coordinator()
    with raw_session(coordinator):
        for round in range(1, 10):
            coordinator.fleet.send("raw", _task(params, round))
        [reply] = receive_all(coordinator.fleet, 1)

    assert reply.round == 1 and reply.error is not None and reply.error.startswith("superseded")


def test_impossible_heartbeat_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="`heartbeat_timeout` must exceed `heartbeat_interval`"):
        GrpcFleet(authenticate=lambda node, token: True, heartbeat_interval=2.0, heartbeat_timeout=1.0)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"max_calls_per_node": 0}, "`max_calls_per_node` must be an integer >= 1; got 0"),
        ({"upload_buffer_bytes": -1}, "`upload_buffer_bytes` must be an integer >= 1; got -1"),
        ({"node_upload_bytes": 1.5}, "`node_upload_bytes` must be an integer >= 1; got 1.5 (float)"),
        ({"first_message_timeout": 0}, "`first_message_timeout` must be a positive number of seconds; got 0"),
        ({"stream_idle_timeout": -2.0}, "`stream_idle_timeout` must be a positive number of seconds; got -2.0"),
        ({"upload_wait_timeout": 0}, "`upload_wait_timeout` must be a positive number of seconds; got 0"),
        ({"revocation_check_interval": 0}, "`revocation_check_interval` must be a positive number of seconds; got 0"),
        ({"upload_buffer_bytes": 10}, "`upload_buffer_bytes` must be at least `node_upload_bytes` (268435456); got 10"),
    ],
)
def test_impossible_limits_are_refused_naming_them(setting: dict[str, float], expected: str) -> None:
    with pytest.raises(ConfigError) as refused:
        GrpcFleet(authenticate=lambda node, token: True, **setting)  # type: ignore[arg-type]

    assert str(refused.value) == expected


def test_heartbeat_timeout_marks_a_silent_idle_node_offline(start_coordinator: StartCoordinator) -> None:
    coordinator = start_coordinator()
    with raw_session(coordinator, heartbeat=False):
        started = time.monotonic()
        wait_until(lambda: coordinator.fleet.available() == [], timeout=5)
        silent_for = time.monotonic() - started

    assert 0.5 < silent_for < 2.0
    assert coordinator.statuses == [("raw", True), ("raw", False)]


def test_silent_node_with_an_open_task_is_kept_while_its_transport_answers(
    start_coordinator: StartCoordinator, params: ParamSet
) -> None:
    coordinator = start_coordinator()
    with raw_session(coordinator, heartbeat=False) as raw:
        coordinator.fleet.send("raw", _task(params))
        task_id = raw.get().task_id
        time.sleep(1.5)  # well past the 0.6 s heartbeat timeout: busy, e.g. decoding with the GIL held
        still_there = coordinator.fleet.available()
        header = pb.ReplyHeader(task_id=task_id, error="done thinking")
        ack = coordinator.stub().Upload(iter([pb.UploadMessage(header=header)]), metadata=metadata(), timeout=5)
        [reply] = receive_all(coordinator.fleet, 1)

    assert still_there == ["raw"]
    assert ack.accepted and reply.error == "done thinking"


def test_stopped_agent_leaves_its_open_task_as_an_error_reply(
    start_coordinator: StartCoordinator, start_agent: StartAgent, params: ParamSet
) -> None:
    coordinator = start_coordinator()
    agent = start_agent(coordinator, "a", ShiftHandler(delay=1.0))
    _connected(coordinator, "a")
    coordinator.fleet.send("a", _task(params))
    wait_until(lambda: coordinator.fleet.stats.downloads == 1)

    agent.halt()
    [reply] = receive_all(coordinator.fleet, 1, timeout=2)

    assert reply.error is not None and reply.error.startswith("node a disconnected before replying")
    assert coordinator.fleet.available() == []


def test_second_session_with_the_same_name_replaces_the_first_which_stops(
    start_coordinator: StartCoordinator, start_agent: StartAgent
) -> None:
    coordinator = start_coordinator()
    first = start_agent(coordinator, "a")
    _connected(coordinator, "a")

    start_agent(coordinator, "a")
    assert first.thread is not None
    first.thread.join(timeout=5)

    assert isinstance(first.error, ConfigError) and "same name" in str(first.error)
    assert coordinator.fleet.available() == ["a"]
    assert coordinator.statuses == [("a", True)]


def test_agent_reconnects_after_the_coordinator_restarts_on_the_same_port(
    start_coordinator: StartCoordinator, start_agent: StartAgent, params: ParamSet
) -> None:
    first = start_coordinator()
    agent = start_agent(first, "a")
    _connected(first, "a")

    first.stop()
    second = start_coordinator(port=first.port)
    _connected(second, "a")
    second.fleet.send("a", _task(params))

    assert receive_all(second.fleet, 1)[0].ok
    assert agent.error is None


def test_disconnect_ends_a_session_and_a_revoked_node_stops(
    start_coordinator: StartCoordinator, start_agent: StartAgent
) -> None:
    from tests.runtime.transport import conftest

    coordinator = start_coordinator()
    agent = start_agent(coordinator, "c")
    _connected(coordinator, "c")

    conftest.TOKENS["c"] = "revoked"
    try:
        coordinator.fleet.disconnect("c", "token revoked")
        assert agent.thread is not None
        agent.thread.join(timeout=5)
    finally:
        conftest.TOKENS["c"] = "token-c"

    assert isinstance(agent.error, ConfigError) and "revoked token" in str(agent.error)
    assert coordinator.statuses == [("c", True), ("c", False)]
