"""On PostgreSQL the store keeps its tables in a schema of its own, `fedlearn` unless the URL names another."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.runtime.store import open_store
from fedlearn.runtime.store.connection import describe_url, parse_store_url, postgres_schema
from fedlearn.runtime.store.schema import metadata
from tests.runtime.store.conftest import POSTGRES_URL

OURS = set(metadata.tables)  # every table of the current schema, whatever versions add


def _tables(schema: str) -> set[str]:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))
        return {row[0] for row in rows}


def _drop(schema: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"fedlearn_schema_{uuid.uuid4().hex[:12]}"
    yield name
    _drop(name)


def test_the_default_schema_is_fedlearn_and_is_shown_only_when_it_is_not() -> None:
    url = parse_store_url("postgresql://u@db/app")

    assert postgres_schema(url) == "fedlearn"
    assert describe_url(url) == "postgresql://u@db/app"
    assert describe_url(parse_store_url("postgresql://u@db/app?schema=team_a")) == "postgresql://u@db/app?schema=team_a"


def test_a_new_store_creates_its_schema_and_keeps_every_table_there(schema: str) -> None:
    with open_store(f"{POSTGRES_URL}?schema={schema}") as store:
        store.add_node("n1")

    assert _tables(schema) == OURS


def test_a_store_left_in_public_by_an_older_fedlearn_moves_into_its_schema_with_its_rows(schema: str) -> None:
    if _tables("public") & OURS:
        pytest.skip("public already holds tables named like the store's; not touching them")
    try:
        with open_store(f"{POSTGRES_URL}?schema=public") as old:
            old.add_node("veteran")

        with open_store(f"{POSTGRES_URL}?schema={schema}") as store:
            names = [node.name for node in store.list_nodes()]
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(f'DROP TABLE IF EXISTS public."{table.name}" CASCADE')

    assert names == ["veteran"]
    assert _tables(schema) == OURS and not _tables("public") & OURS


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u@db/app?schema=Robert'); DROP", "the store URL's schema must be 1-63 lowercase letters"),
        ("postgresql://u@db/app?options=-csearch_path%3Dx", "with ?schema=NAME in its URL, not with search_path"),
    ],
)
def test_a_schema_that_is_not_a_plain_name_is_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        parse_store_url(url)
