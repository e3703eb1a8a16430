"""Options that several command groups share, so each reads, defaults and documents them the same way.

Settings that are secrets or differ per host can come from the environment
(``FEDLEARN_ADMIN_TOKEN``, ``FEDLEARN_STORE``, ``FEDLEARN_COORDINATOR``), which keeps them out of
shell history.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_STORE = "sqlite:///fedlearn.db"
DEFAULT_API = "http://127.0.0.1:8080"

StoreOption = Annotated[str, typer.Option("--store", envvar="FEDLEARN_STORE", help="Store URL or SQLite path.")]
ApiOption = Annotated[
    str, typer.Option("--coordinator", envvar="FEDLEARN_COORDINATOR", help="The coordinator's HTTP API URL.")
]


def announce_default_store(store: str) -> str:
    """``store``, after saying on stderr when it is the default file in the current directory.

    A command run from another directory than the coordinator's would otherwise create or read a
    different, empty store without a word, and a node registered there is unknown to the coordinator.
    """
    if store == DEFAULT_STORE and not os.environ.get("FEDLEARN_STORE"):
        typer.echo(f"using the store {Path.cwd() / 'fedlearn.db'} (set --store or FEDLEARN_STORE to choose)", err=True)
    return store


ReconnectOption = Annotated[
    float, typer.Option(help="Seconds to keep asking an unreachable coordinator before giving up.", min=0)
]
AdminToken = Annotated[
    str, typer.Option("--admin-token", envvar="FEDLEARN_ADMIN_TOKEN", help="The admin token.", show_default=False)
]
