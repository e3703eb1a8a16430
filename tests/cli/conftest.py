"""CLI tests run commands in this process; a command that configures logging must not leave it configured.

``store`` is a fresh SQLite coordinator store, for the commands that talk to a coordinator's API.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedlearn.runtime.store import Store, open_store


@pytest.fixture(autouse=True)
def _root_logger_put_back() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        yield opened
