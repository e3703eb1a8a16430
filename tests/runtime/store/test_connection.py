"""Store URLs, SQLite settings, and one-line errors when the database cannot be reached."""

import pytest
from sqlalchemy.engine import make_url

from fedlearn.core.errors import ConfigError, StoreError
from fedlearn.runtime.store import open_store
from fedlearn.runtime.store.connection import parse_store_url
from tests.runtime.store.conftest import POSTGRES_URL


def test_plain_path_opens_a_sqlite_file(tmp_path):
    path = tmp_path / "plain.db"

    with open_store(path) as store:
        store.add_node("a")

    assert path.exists()
    assert store.url == f"sqlite:///{path}"


def test_relative_plain_path_is_resolved_to_an_absolute_file():
    assert parse_store_url("state/fedlearn.db").database.startswith("/")


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgres://u@h/db", "postgresql+psycopg://u@h/db"])
def test_postgresql_urls_use_the_psycopg_driver(url):
    assert parse_store_url(url).drivername == "postgresql+psycopg"


def test_unsupported_url_scheme_is_refused_with_the_accepted_forms():
    with pytest.raises(ConfigError, match=r"store URL must be sqlite:///PATH, .*; got mysql://u@h/db"):
        parse_store_url("mysql://u@h/db")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(url):
    with pytest.raises(ConfigError, match="in-memory SQLite database, which loses everything on exit"):
        parse_store_url(url)


def test_dead_postgresql_gives_one_clear_line():
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://postgres@127.0.0.1:1/test")

    message = str(caught.value)
    assert message.startswith("cannot connect to the store at postgresql://postgres@127.0.0.1:1/test: ")
    assert message.endswith("; is the server running?")
    assert "\n" not in message
    assert caught.value.exit_code == 5


def test_connection_error_hides_the_password():
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://postgres:hunter2@127.0.0.1:1/test")

    assert "hunter2" not in str(caught.value)
    assert "postgres:***@127.0.0.1:1/test" in str(caught.value)


def test_missing_sqlite_directory_gives_one_clear_line(tmp_path):
    with pytest.raises(StoreError) as caught:
        open_store(tmp_path / "no" / "such" / "dir" / "store.db")

    message = str(caught.value)
    assert message.startswith(f"cannot connect to the store at sqlite:///{tmp_path}/no/such/dir/store.db: ")
    assert message.endswith("does its directory exist and may this user write to it?")
    assert "\n" not in message


def test_sqlite_store_uses_wal_full_sync_and_foreign_keys(tmp_path):
    with open_store(tmp_path / "s.db") as store, store._db.read() as conn:
        journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        foreign_keys = conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
        synchronous = conn.exec_driver_sql("PRAGMA synchronous").scalar()

    assert (journal, foreign_keys, synchronous) == ("wal", 1, 2)


def test_postgresql_that_refuses_the_database_points_at_the_url():
    url = make_url(POSTGRES_URL).set(database="no_such_db_fedlearn").render_as_string(hide_password=False)

    with pytest.raises(StoreError, match=r'FATAL: database "no_such_db_fedlearn" does not exist; check the user'):
        open_store(url)
