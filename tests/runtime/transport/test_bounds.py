"""The reply buffer's and the watchdog's rules, one at a time, with threads instead of a server."""

from __future__ import annotations

import threading
import time

from fedlearn.runtime.transport.admission import CallLimit, ReplyBuffer
from fedlearn.runtime.transport.deadlines import Watchdog


def _acquire_later(buffer: ReplyBuffer, node: str, nbytes: int, timeout: float = 5.0) -> list[str | None]:
    """Start ``acquire`` in a thread; its answer lands in the returned list."""
    answer: list[str | None] = []
    threading.Thread(target=lambda: answer.append(buffer.acquire(node, nbytes, timeout=timeout)), daemon=True).start()
    time.sleep(0.1)
    return answer


def test_replies_larger_than_a_nodes_share_are_received_one_at_a_time() -> None:
    buffer = ReplyBuffer(total=100, per_node=50)

    assert buffer.acquire("a", 500, timeout=1) is None
    waiting = _acquire_later(buffer, "b", 80)
    assert waiting == []
    buffer.release("a", 500)
    time.sleep(0.1)

    assert waiting == [None]


def test_a_large_reply_in_flight_holds_up_no_reply_within_a_nodes_share() -> None:
    buffer = ReplyBuffer(total=100, per_node=50)
    assert buffer.acquire("trickler", 10**9, timeout=1) is None  # announced huge, then sent slowly

    answers = [buffer.acquire(node, 50, timeout=0.2) for node in ("a", "b")]

    assert answers == [None, None]


def test_uploads_are_served_in_arrival_order_so_a_large_one_is_not_overtaken() -> None:
    buffer = ReplyBuffer(total=100, per_node=100)
    assert buffer.acquire("a", 60, timeout=1) is None

    large = _acquire_later(buffer, "b", 80)
    small = _acquire_later(buffer, "c", 10)  # would fit now, but b came first
    assert (large, small) == ([], [])
    buffer.release("a", 60)
    time.sleep(0.1)

    assert (large, small) == ([None], [None])


def test_a_nodes_second_upload_past_its_share_is_refused_at_once() -> None:
    buffer = ReplyBuffer(total=1000, per_node=100)
    assert buffer.acquire("a", 80, timeout=1) is None

    refusal = buffer.acquire("a", 30, timeout=1)

    assert refusal == (
        "node a is already sending 80 bytes of replies; another 30 would pass the 100 bytes a node's uploads may "
        "hold at once (node_upload_bytes)"
    )
    assert buffer.acquire("b", 30, timeout=1) is None  # other nodes are not charged for a's refusal


def test_an_upload_that_finds_no_room_in_time_is_refused_naming_the_limit() -> None:
    buffer = ReplyBuffer(total=100, per_node=100)
    assert buffer.acquire("a", 90, timeout=1) is None

    refusal = buffer.acquire("b", 20, timeout=0.2)

    assert refusal == (
        "node b's reply of 20 bytes waited 0.2 s (upload_wait_timeout) for room: 90 bytes of other replies fill "
        "upload_buffer_bytes (100)"
    )
    buffer.release("a", 90)
    assert buffer.acquire("b", 100, timeout=1) is None  # b's refused bytes were given back


def test_a_large_upload_that_gets_no_turn_in_time_is_refused_naming_the_limit() -> None:
    buffer = ReplyBuffer(total=100, per_node=100)
    assert buffer.acquire("a", 500, timeout=1) is None

    refusal = buffer.acquire("b", 200, timeout=0.2)

    assert refusal == (
        "node b's reply of 200 bytes waited 0.2 s (upload_wait_timeout) behind another reply larger than "
        "node_upload_bytes (100); such replies are received one at a time"
    )


def test_calls_are_counted_per_node_and_released() -> None:
    limit = CallLimit(2)

    answers = [limit.admit("a"), limit.admit("a"), limit.admit("a"), limit.admit("b")]
    limit.release("a")

    assert answers[:2] == [None, None] and answers[3] is None
    assert answers[2] == "node a already has 2 calls open; a node may have 2 (max_calls_per_node)"
    assert limit.admit("a") is None


def test_a_missed_deadline_cancels_its_call_and_a_cleared_one_does_not() -> None:
    watchdog = Watchdog()
    cancelled: list[str] = []
    missed = watchdog.watch(lambda: cancelled.append("missed"))
    met = watchdog.watch(lambda: cancelled.append("met"))

    missed.expect(0.2, "node a sent nothing for 0.2 s")
    met.expect(0.2, "never")
    met.clear()
    time.sleep(0.6)

    assert cancelled == ["missed"]
    assert missed.missed == "node a sent nothing for 0.2 s" and met.missed is None
