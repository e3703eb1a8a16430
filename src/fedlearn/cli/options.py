"""Options that several command groups share, so each reads, defaults and documents them the same way.

Settings that are secrets or differ per host can come from the environment
(``FEDLEARN_ADMIN_TOKEN``, ``FEDLEARN_STORE``, ``FEDLEARN_COORDINATOR``), which keeps them out of
shell history.
"""

from __future__ import annotations

from typing import Annotated

import typer

DEFAULT_STORE = "sqlite:///fedlearn.db"
DEFAULT_API = "http://127.0.0.1:8080"

StoreOption = Annotated[str, typer.Option("--store", envvar="FEDLEARN_STORE", help="Store URL or SQLite path.")]
ApiOption = Annotated[
    str, typer.Option("--coordinator", envvar="FEDLEARN_COORDINATOR", help="The coordinator's HTTP API URL.")
]
AdminToken = Annotated[
    str, typer.Option("--admin-token", envvar="FEDLEARN_ADMIN_TOKEN", help="The admin token.", show_default=False)
]
