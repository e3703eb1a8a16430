"""Reply slots: written by a worker, viewed in place by the parent, recycled once dropped.

Both sides run in this process here; the pool tests cover them across real processes.
"""

from __future__ import annotations

import os

import numpy as np

from fedlearn.core.params import ParamSet
from fedlearn.simulation.reply_slots import ParentSlots, WorkerSlots


def model(value: float, size: int = 100) -> ParamSet:
    return ParamSet({"w": np.full(size, value, np.float32), "b": np.arange(3)})


def test_parent_view_equals_what_the_worker_wrote_and_is_read_only() -> None:
    worker, parent = WorkerSlots(owner=os.getpid()), ParentSlots()

    view = parent.view(worker.write(model(2.5)))

    assert view.bitwise_equal(model(2.5))
    assert not view["w"].flags.writeable
    worker.close()


def test_slot_is_released_only_when_the_last_view_is_gone() -> None:
    worker, parent = WorkerSlots(owner=os.getpid()), ParentSlots()
    view = parent.view(worker.write(model(1.0)))
    first_array = view["w"][:10]  # a view of a view still holds the slot

    del view
    held = parent.take_released()
    del first_array
    released = parent.take_released()

    assert held == []
    assert len(released) == 1
    worker.close()


def test_released_slot_is_reused_for_the_next_reply() -> None:
    worker, parent = WorkerSlots(owner=os.getpid()), ParentSlots()
    first = worker.write(model(1.0))
    parent.view(first)  # dropped at once
    for name in parent.take_released():
        worker.release(name)

    second = worker.write(model(2.0))

    assert second["slot"] == first["slot"]
    assert parent.view(second).bitwise_equal(model(2.0))
    worker.close()


def test_slot_in_use_is_not_reused() -> None:
    worker, parent = WorkerSlots(owner=os.getpid()), ParentSlots()
    held = parent.view(worker.write(model(1.0)))

    second = parent.view(worker.write(model(2.0)))

    assert held.bitwise_equal(model(1.0))
    assert second.bitwise_equal(model(2.0))
    worker.close()


def test_larger_reply_retires_free_slots_that_are_too_small() -> None:
    worker, parent = WorkerSlots(owner=os.getpid()), ParentSlots()
    small = worker.write(model(1.0, size=10))
    parent.view(small)
    for name in parent.take_released():
        worker.release(name)

    large = worker.write(model(2.0, size=10_000))

    assert large["slot"] != small["slot"]
    assert large["retired"] == [small["slot"]]
    assert parent.view(large).bitwise_equal(model(2.0, size=10_000))
    worker.close()


def test_empty_reply_needs_no_slot() -> None:
    worker, parent = WorkerSlots(owner=os.getpid()), ParentSlots()

    header = worker.write(ParamSet())

    assert header["slot"] == ""
    assert len(parent.view(header)) == 0
