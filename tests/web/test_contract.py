"""The HTTP contract both ends share: one status per refusal, and failed runs rebuilt as their error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fedlearn.core.errors import (
    ConfigError,
    DeadlineExceeded,
    FedlearnError,
    FleetBusy,
    QuorumError,
    StoreError,
)
from fedlearn.web.contract import REFUSALS, SERVER_FAILURE, RunSummary, refused_as, status_of

_T = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _run(status: str, *, error: str | None = None, message: str = "") -> RunSummary:
    return RunSummary(
        id="r1", name="demo", status=status, message=message, error=error, seed=7, rounds_total=3,
        rounds_done=0, stop_requested=False, created_at=_T, updated_at=_T,
    )  # fmt: skip


@pytest.mark.parametrize(("kind", "status"), list(REFUSALS.items()))
def test_each_refusal_comes_back_from_its_status_as_the_same_error(kind: type[FedlearnError], status: int) -> None:
    assert status_of(kind("no")) == status
    assert refused_as(status) is kind


def test_a_subclass_of_a_refusal_travels_with_its_parents_status() -> None:
    class Unreadable(ConfigError):
        pass

    assert status_of(Unreadable("bad")) == 422


@pytest.mark.parametrize("error", [StoreError("disk full"), DeadlineExceeded("late"), FedlearnError("bug")])
def test_an_error_that_is_no_refusal_is_a_server_failure(error: FedlearnError) -> None:
    assert status_of(error) == SERVER_FAILURE == 500


def test_a_status_that_is_no_refusal_of_ours_maps_to_no_error() -> None:
    assert refused_as(500) is None and refused_as(418) is None


def test_busy_nodes_are_a_409_though_fleet_busy_is_a_deadline() -> None:
    assert status_of(FleetBusy("busy")) == 409


def test_failed_run_is_rebuilt_as_the_error_that_failed_it_with_its_message() -> None:
    failure = _run("failed", error="QuorumError", message="needed 3 nodes but only 0 were available").failure()

    assert isinstance(failure, QuorumError) and failure.exit_code == 4
    assert str(failure) == "run r1 failed: needed 3 nodes but only 0 were available"


@pytest.mark.parametrize("error", [None, "KeyError", "NoSuchError", "__builtins__"])
def test_failed_run_with_an_unknown_or_no_error_is_the_root_error(error: str | None) -> None:
    failure = _run("failed", error=error, message="internal error").failure()

    assert type(failure) is FedlearnError and failure.exit_code == 1


@pytest.mark.parametrize("status", ["pending", "running", "completed", "stopped"])
def test_a_run_that_did_not_fail_has_no_failure(status: str) -> None:
    assert _run(status).failure() is None


def test_timestamps_travel_as_python_writes_them() -> None:
    wire = _run("running").model_dump(mode="json")

    assert wire["created_at"] == _T.isoformat() == "2024-05-01T12:00:00+00:00"
    assert RunSummary.model_validate(wire).created_at == _T
