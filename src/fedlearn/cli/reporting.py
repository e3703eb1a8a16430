"""The one error reporter of the ``fedlearn`` command, and the command groups that use it.

Every group is made by :func:`command_group`, whose click group reports errors around whatever
it invokes. An error therefore looks the same whether the command runs through the console entry
point, through typer's test runner, or with its group mounted in another app:

- a :class:`~fedlearn.core.errors.FedlearnError` is one line on stderr, ``error: <message>``,
  and the exit code is the error's own (``ConfigError`` 2, ``QuorumError`` 4, ...: see
  :mod:`fedlearn.core.errors`);
- Ctrl-C prints ``aborted`` and exits with 130, the shell's code for SIGINT;
- ``FEDLEARN_DEBUG=1`` lets our errors through with their traceback instead.

Any other exception is a bug and keeps its traceback. Usage errors are typer's, with exit code 2.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from typer.core import TyperGroup

from fedlearn.core.errors import FedlearnError

ABORTED = 130
"""The exit code after Ctrl-C: 128 + SIGINT, as a shell reports a process that SIGINT ended."""


@contextmanager
def reported() -> Iterator[None]:
    """Turn our errors into one line on stderr and their exit code, and Ctrl-C into ``aborted`` and 130."""
    try:
        yield
    except FedlearnError as exc:
        if os.environ.get("FEDLEARN_DEBUG"):
            raise
        typer.secho("error: ", fg="red", err=True, nl=False)
        typer.echo(str(exc), err=True)  # one unwrapped line, whatever the terminal width
        raise typer.Exit(exc.exit_code) from None
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("aborted", err=True)
        raise typer.Exit(ABORTED) from None


class ReportingGroup(TyperGroup):
    """A typer group that invokes its commands inside :func:`reported`."""

    def invoke(self, ctx: Any) -> Any:  # typer's Context base class is private to typer
        with reported():
            return super().invoke(ctx)


def command_group(*, help: str | None = None) -> typer.Typer:
    """A typer app for one group of commands, reporting errors as the whole ``fedlearn`` command does.

    Typer turns an app of a single command into that command, without the group, so such an app
    reports errors only where it is mounted (as ``simulate`` is, on the root app).
    """
    return typer.Typer(
        cls=ReportingGroup,
        help=help,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
