"""One error reporter for every command: one line on stderr and the error's exit code, mounted or not."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fedlearn import __version__
from fedlearn.cli import app
from fedlearn.cli.operations import runs
from fedlearn.cli.reporting import ABORTED, command_group
from fedlearn.core.errors import (
    ConfigError,
    CoordinatorUnavailable,
    DeadlineExceeded,
    FedlearnError,
    NotFoundError,
    PrivacyError,
    QuorumError,
    StoreError,
)

runner = CliRunner()


def _group_raising(error: BaseException) -> typer.Typer:
    """A group whose first command raises ``error``; with a second command, typer keeps it a group."""
    group = command_group()

    @group.command()
    def fail() -> None:
        raise error

    @group.command()
    def succeed() -> None:
        typer.echo("fine")

    return group


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (FedlearnError("bug"), 1),
        (ConfigError("`fraction` must be in (0, 1]; got 1.5"), 2),
        (PrivacyError("refusing to share"), 3),
        (QuorumError("needed 3 nodes but only 1 were available"), 4),
        (DeadlineExceeded("too late"), 4),
        (StoreError("store is damaged"), 5),
        (NotFoundError("no run with id 'x'"), 6),
        (CoordinatorUnavailable("cannot reach the coordinator"), 7),
    ],
)
def test_each_error_is_one_line_on_stderr_and_its_own_exit_code(error: FedlearnError, code: int) -> None:
    result = runner.invoke(_group_raising(error), ["fail"])

    assert result.exit_code == code
    assert result.stderr == f"error: {error}\n"
    assert result.stdout == ""


def test_ctrl_c_prints_aborted_and_exits_with_130() -> None:
    result = runner.invoke(_group_raising(KeyboardInterrupt()), ["fail"])

    assert (result.exit_code, result.stderr) == (ABORTED, "aborted\n") == (130, "aborted\n")


def test_fedlearn_debug_lets_the_error_through_with_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDLEARN_DEBUG", "1")

    result = runner.invoke(_group_raising(QuorumError("needed 3 nodes")), ["fail"])

    assert isinstance(result.exception, QuorumError)
    assert result.exc_info is not None and result.exc_info[2] is not None


def test_an_error_that_is_not_ours_keeps_its_traceback() -> None:
    result = runner.invoke(_group_raising(KeyError("bug")), ["fail"])

    assert isinstance(result.exception, KeyError)


@pytest.mark.parametrize(("command", "args"), [(app, ["runs", "list"]), (runs, ["list"])])
def test_a_group_reports_alike_through_the_whole_command_and_on_its_own(
    command: typer.Typer, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEDLEARN_ADMIN_TOKEN", raising=False)

    result = runner.invoke(command, args)

    assert result.exit_code == ConfigError.exit_code
    assert result.stderr == "error: no admin token: pass --admin-token or set FEDLEARN_ADMIN_TOKEN\n"


@pytest.mark.parametrize("args", [["--version"], ["version"]])
def test_version_prints_the_version_and_exits_0(args: list[str]) -> None:
    result = runner.invoke(app, args)

    assert (result.exit_code, result.stdout) == (0, f"{__version__}\n")


def test_node_commands_say_when_they_fall_back_to_the_store_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEDLEARN_STORE", raising=False)

    result = CliRunner().invoke(app, ["nodes", "list"])

    assert result.exit_code == 0
    assert f"using the store {tmp_path / 'fedlearn.db'}" in result.stderr
    named = CliRunner().invoke(app, ["nodes", "list", "--store", f"sqlite:///{tmp_path / 'other.db'}"])
    assert "using the store" not in named.stderr
