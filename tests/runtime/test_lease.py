"""The fleet lease: one user of the nodes at a time, borrowers first, with real threads."""

from __future__ import annotations

import threading
import time

import pytest

from fedlearn.core.errors import DeadlineExceeded, FleetBusy
from fedlearn.runtime.lease import FleetLease

RUN = "training run r1"


def _wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.005)


def test_borrow_of_a_free_lease_holds_it_for_the_block_only() -> None:
    lease = FleetLease()

    with lease.borrow("analytics", wait=0):
        during = lease.holder

    assert during == "analytics" and lease.holder is None


def test_borrow_while_a_run_holds_the_lease_fails_naming_the_run() -> None:
    lease = FleetLease()
    assert lease.hold(RUN, timeout=0)

    with pytest.raises(FleetBusy, match=f"{RUN} did not free them within 0.05 s") as caught, lease.borrow("a", 0.05):
        pass

    assert isinstance(caught.value, DeadlineExceeded) and lease.holder == RUN and not lease.contended


def test_a_waiting_borrower_goes_before_the_run_takes_the_lease_back() -> None:
    lease = FleetLease()
    lease.hold(RUN, timeout=0)
    order: list[str] = []

    def borrow() -> None:
        with lease.borrow("analytics", wait=5):
            order.append("analytics")
            time.sleep(0.05)

    borrower = threading.Thread(target=borrow)
    borrower.start()
    _wait_for(lambda: lease.contended)
    lease.release(RUN)  # what a run does between rounds when someone waits
    took_back = lease.hold(RUN, timeout=5)
    order.append("run")
    borrower.join()

    assert took_back and order == ["analytics", "run"]


def test_a_run_cannot_take_a_borrowed_lease_before_its_timeout() -> None:
    lease = FleetLease()

    with lease.borrow("analytics", wait=0):
        taken = lease.hold(RUN, timeout=0.05)

    assert not taken and lease.hold(RUN, timeout=0)


def test_release_by_someone_who_does_not_hold_the_lease_changes_nothing() -> None:
    lease = FleetLease()

    with lease.borrow("analytics", wait=0):
        lease.release(RUN)
        holder = lease.holder

    assert holder == "analytics"


def test_a_run_waiting_for_a_borrowed_lease_takes_it_when_the_borrower_is_done() -> None:
    lease = FleetLease()
    taken: list[bool] = []

    with lease.borrow("analytics", wait=0):
        run = threading.Thread(target=lambda: taken.append(lease.hold(RUN, timeout=5)))
        run.start()
        time.sleep(0.05)
        waited = not taken
    run.join()

    assert waited and taken == [True] and lease.holder == RUN
