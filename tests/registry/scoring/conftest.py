"""The scoring tests' database fixtures: ``database`` runs a test on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from fedlearn.registry.databases import parse_url
from tests.registry.scoring.databases import MARIADB_URL, POSTGRES_URL, ScratchDatabase


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScratchDatabase]:
    url = {"sqlite": f"sqlite:///{tmp_path / 'data.db'}", "postgresql": POSTGRES_URL, "mariadb": MARIADB_URL}[
        request.param
    ]
    scratch = ScratchDatabase(url=url, engine=sa.create_engine(parse_url(url, what="test database")))
    yield scratch
    scratch.drop()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[ScratchDatabase]:
    url = f"sqlite:///{tmp_path / 'sink.db'}"
    scratch = ScratchDatabase(url=url, engine=sa.create_engine(parse_url(url, what="test database")))
    yield scratch
    scratch.drop()
