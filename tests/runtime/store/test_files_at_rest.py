"""A SQLite store holds models and token hashes, so only its owner may read it, and its WAL too."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from fedlearn.runtime.store import open_store


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_sqlite_store_and_its_wal_files_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.db"
    previous = os.umask(0o022)  # the usual umask, under which files are created 0644
    try:
        with open_store(path) as store:
            store.add_node("a")
            modes = {p.name: _mode(p) for p in tmp_path.iterdir()}
    finally:
        os.umask(previous)

    assert modes == {"coordinator.db": 0o600, "coordinator.db-wal": 0o600, "coordinator.db-shm": 0o600}


def test_opening_a_store_others_can_read_warns_with_the_fix(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "old.db"
    with open_store(path):
        pass
    path.chmod(0o644)

    with caplog.at_level(logging.WARNING), open_store(path):
        pass

    assert f"chmod 600 {path}" in caplog.text
    assert _mode(path) == 0o644  # the operator's file: told, not changed behind their back
