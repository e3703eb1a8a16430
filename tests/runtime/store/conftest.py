"""Every store test runs twice: on a SQLite file, and on the real PostgreSQL in a schema of its own.

Each PostgreSQL test gets a freshly created schema, named uniquely and selected through
``?schema=`` in the URL, and dropped afterwards, so tests never see each other's tables.
Set ``FEDLEARN_TEST_POSTGRES_URL`` to point at another server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from fedlearn.runtime.store import Store, open_store
from fedlearn.runtime.store.connection import parse_store_url

POSTGRES_URL = os.environ.get("FEDLEARN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SMALL_CHUNK = 64  # bytes: small enough that modest test blobs span many chunks


def _admin(statement: str) -> None:
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement)
    except psycopg.OperationalError as exc:
        pytest.fail(f"the store tests need PostgreSQL at {POSTGRES_URL} (set FEDLEARN_TEST_POSTGRES_URL): {exc}")


@pytest.fixture(params=["sqlite", "postgresql"])
def new_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Make URLs of fresh, empty stores on the parametrised backend; they are removed afterwards."""
    schemas: list[str] = []

    def make() -> str:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / f'store-{uuid.uuid4().hex[:8]}.db'}"
        schema = f"fedlearn_test_{uuid.uuid4().hex[:16]}"
        _admin(f'CREATE SCHEMA "{schema}"')
        schemas.append(schema)
        return f"{POSTGRES_URL}?schema={schema}"

    yield make
    for schema in schemas:
        _admin(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def store_url(new_store_url: Callable[[], str]) -> str:
    return new_store_url()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url, chunk_size=SMALL_CHUNK) as opened:
        yield opened


@pytest.fixture
def sql(store_url: str) -> Iterator[Callable[..., list[sa.Row[Any]]]]:
    """Run raw SQL against the store's database, behind the store's back, in its own transaction."""
    engine = sa.create_engine(parse_store_url(store_url))

    def run(statement: str, **params: object) -> list[sa.Row[Any]]:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return list(result.all()) if result.returns_rows else []

    yield run
    engine.dispose()
