"""Schema versions: creation, migration from versions 0, 1, 2, 4, 5 and 6, refusal of newer or foreign databases."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from threading import Barrier

import numpy as np
import pytest
import sqlalchemy as sa

from fedlearn.core.errors import StoreError
from fedlearn.core.params import ParamSet
from fedlearn.engine.engine import RunState
from fedlearn.engine.history import RoundRecord
from fedlearn.privacy.ledger import Charge, PrivacyLedger
from fedlearn.runtime.store import SCHEMA_VERSION, open_store
from fedlearn.runtime.store import migrations as migrations_module
from fedlearn.runtime.store.connection import parse_store_url
from fedlearn.runtime.store.migrations import MIGRATIONS
from fedlearn.runtime.store.schema import metadata

_T = "2024-05-01 12:00:00"


def _drop_federations(sql):
    """Remove what version 7 added: the federation tables, children before parents."""
    for table in ("federation_models", "federation_members", "federation_batches", "federations"):
        sql(f"DROP TABLE {table}")


def _make_version_6(url, sql):
    """A store as fedlearn left it before federations, holding one node."""
    with open_store(url) as store:
        store.add_node("v6-node")
    _drop_federations(sql)
    sql("UPDATE meta SET value = '6' WHERE key = 'schema_version'")


def _drop_registry(sql):
    """Remove what version 6 added: the model registry's tables."""
    sql("DROP TABLE model_aliases")
    sql("DROP TABLE models")


def _make_version_5(url, sql) -> str:
    """A store as fedlearn left it before the model registry, holding one checkpointed run; returns its id."""
    with open_store(url) as store:
        run_id = store.create_run("v5-run", "", seed=3, rounds=2)
        store.save_checkpoint(run_id, _v4_state())
        store.set_run_status(run_id, "completed")
    _drop_federations(sql)
    _drop_registry(sql)
    sql("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    return run_id


def _make_version_1(url, sql):
    """A store as fedlearn left it before runs recorded their error, holding one failed run.

    Version 1 had no ``runs.error``. Built by creating today's schema and removing what versions 2 to 5 added.
    """
    open_store(url).close()
    _drop_federations(sql)
    _drop_registry(sql)
    sql("ALTER TABLE checkpoints DROP COLUMN ledger")
    sql("ALTER TABLE runs DROP COLUMN privacy_reserved")
    sql("ALTER TABLE nodes DROP COLUMN identity_key")
    sql("ALTER TABLE nodes DROP COLUMN max_examples")
    sql("ALTER TABLE runs DROP COLUMN error")
    sql("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    sql(
        "INSERT INTO runs (id, name, status, message, seed, rounds_total, rounds_done, config_toml, "
        "stop_requested, created_at, updated_at) VALUES ('r1', 'v1-run', 'failed', 'needed 3 nodes', 7, 10, 0, '', "
        ":f, :t, :t)",
        f=False,
        t=_T,
    )


def _make_version_2(url, sql):
    """A store as fedlearn left it before nodes could declare their rows, holding one node."""
    open_store(url).close()
    _drop_federations(sql)
    _drop_registry(sql)
    sql("ALTER TABLE checkpoints DROP COLUMN ledger")
    sql("ALTER TABLE runs DROP COLUMN privacy_reserved")
    sql("ALTER TABLE nodes DROP COLUMN identity_key")
    sql("ALTER TABLE nodes DROP COLUMN max_examples")
    sql("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    sql("INSERT INTO nodes (name, token_sha256, created_at, online) VALUES ('v2-node', :h, :t, :f)",
        h="0" * 64, t=_T, f=False)  # fmt: skip


def _make_version_0(url, sql):
    """A store as fedlearn's first prototype left it, holding one node and one run.

    Version 0 had no node presence (``nodes.last_seen``, ``nodes.online``) and no stop flag
    (``runs.stop_requested``). Built by creating today's schema and removing what versions 1 to 5 added.
    """
    open_store(url).close()
    _drop_federations(sql)
    _drop_registry(sql)
    sql("ALTER TABLE checkpoints DROP COLUMN ledger")
    sql("ALTER TABLE runs DROP COLUMN privacy_reserved")
    sql("ALTER TABLE nodes DROP COLUMN identity_key")
    sql("ALTER TABLE nodes DROP COLUMN max_examples")
    sql("ALTER TABLE runs DROP COLUMN error")
    sql("ALTER TABLE nodes DROP COLUMN last_seen")
    sql("ALTER TABLE nodes DROP COLUMN online")
    sql("ALTER TABLE runs DROP COLUMN stop_requested")
    sql("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    sql("INSERT INTO nodes (name, token_sha256, created_at) VALUES ('old-node', :h, :t)", h="0" * 64, t=_T)
    sql(
        "INSERT INTO runs (id, name, status, message, seed, rounds_total, rounds_done, config_toml, "
        "created_at, updated_at) VALUES ('r0', 'old-run', 'running', '', 7, 10, 4, '', :t, :t)",
        t=_T,
    )


def _v4_state() -> RunState:
    record = RoundRecord(round=2, sampled=3, replies=3, num_examples=30, duration_s=0.5, bytes_sent=1, bytes_received=1)
    return RunState(round=2, params=ParamSet({"w": np.arange(4.0)}), strategy_state=ParamSet({"t": np.array(2)}),
                    history=(record,))  # fmt: skip


def _make_version_4(url, sql) -> str:
    """A store as fedlearn left it before checkpoints kept a privacy ledger, holding one checkpointed run.

    Version 4 had no ``checkpoints.ledger`` nor ``runs.privacy_reserved``. Built by creating today's
    schema, checkpointing a run without differential privacy, and removing the columns; returns the
    run's id.
    """
    with open_store(url) as store:
        run_id = store.create_run("v4-run", "", seed=3, rounds=5)
        store.save_checkpoint(run_id, _v4_state())
        store.set_run_status(run_id, "failed", "coordinator lost", error="StoreError")
    _drop_federations(sql)
    _drop_registry(sql)
    sql("ALTER TABLE checkpoints DROP COLUMN ledger")
    sql("ALTER TABLE runs DROP COLUMN privacy_reserved")
    sql("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    return run_id


def _version(sql) -> str:
    return sql("SELECT value FROM meta WHERE key = 'schema_version'")[0].value


def _columns(url):
    engine = sa.create_engine(parse_store_url(url))
    try:
        inspector = sa.inspect(engine)
        return {
            table: sorted(
                (c["name"], str(c["type"]), c["nullable"], str(c["default"])) for c in inspector.get_columns(table)
            )
            for table in metadata.tables
            if inspector.has_table(table)  # an old store lacks the tables later versions added
        }
    finally:
        engine.dispose()


def test_migrations_cover_every_version():
    assert len(MIGRATIONS) == SCHEMA_VERSION == 7


def test_new_store_records_the_current_schema_version(store, sql):
    assert _version(sql) == str(SCHEMA_VERSION)


def test_store_from_version_0_is_migrated_keeping_its_rows(store_url, sql):
    _make_version_0(store_url, sql)

    with open_store(store_url) as store:
        [node] = store.list_nodes()
        [run] = store.list_runs()

    assert _version(sql) == str(SCHEMA_VERSION)
    assert (node.name, node.status, node.last_seen, node.revoked) == ("old-node", "offline", None, False)
    assert (run.name, run.rounds_done, run.stop_requested) == ("old-run", 4, False)


def test_store_from_version_1_is_migrated_keeping_its_runs_with_their_error_unknown(store_url, sql):
    _make_version_1(store_url, sql)

    with open_store(store_url) as store:
        [run] = store.list_runs()

    assert _version(sql) == str(SCHEMA_VERSION)
    assert (run.name, run.status, run.message, run.error) == ("v1-run", "failed", "needed 3 nodes", None)


def test_store_from_version_2_is_migrated_keeping_its_nodes_with_no_declared_rows(store_url, sql):
    _make_version_2(store_url, sql)

    with open_store(store_url) as store:
        [node] = store.list_nodes()
        store.declare_rows("v2-node", 500)
        declared = store.declared_rows()

    assert _version(sql) == str(SCHEMA_VERSION)
    assert (node.name, node.max_examples) == ("v2-node", None)
    assert declared == {"v2-node": 500}


def test_store_from_version_4_is_migrated_keeping_its_checkpoint_with_no_ledger(store_url, sql):
    run_id = _make_version_4(store_url, sql)

    with open_store(store_url) as store:
        run = store.get_run(run_id)
        state = store.load_checkpoint(run_id)

    assert _version(sql) == str(SCHEMA_VERSION)
    assert (run.name, run.status, run.rounds_done, run.error) == ("v4-run", "failed", 2, "StoreError")
    assert state is not None
    assert state.params.bitwise_equal(_v4_state().params)
    assert state.strategy_state.bitwise_equal(_v4_state().strategy_state)
    assert (state.history, state.ledger) == (_v4_state().history, None)


def test_run_from_version_4_checkpoints_a_ledger_after_migration(store_url, sql):
    run_id = _make_version_4(store_url, sql)
    ledger = PrivacyLedger(delta=1e-5, charges=(Charge(noise_multiplier=1.0, count=3),))

    with open_store(store_url) as store:
        store.save_checkpoint(run_id, RunState(round=3, params=_v4_state().params, strategy_state=ParamSet(),
                                               ledger=ledger))  # fmt: skip
        assert store.privacy_ledger(run_id) == ledger


def test_store_from_version_5_is_migrated_keeping_its_runs_and_registers_models(store_url, sql):
    run_id = _make_version_5(store_url, sql)

    with open_store(store_url) as store:
        state = store.load_checkpoint(run_id)
        empty = store.list_models()
        record = store.add_model(
            "after-migration", kind="learner", model="numpy.softmax", task="classification", run_id=run_id,
            lineage={"run_id": run_id}, input_schema=[{"name": "a", "type": "float"}], created_at=datetime.now(UTC),
            package=lambda version: f"package {version}".encode(),
        )  # fmt: skip
        package = store.get_blob(record.digest)

    assert _version(sql) == str(SCHEMA_VERSION)
    assert state is not None and state.params.bitwise_equal(_v4_state().params)
    assert (empty, record.version, package) == ([], 1, b"package 1")


def test_store_from_version_6_is_migrated_keeping_its_nodes_with_no_federations(store_url, sql):
    _make_version_6(store_url, sql)

    with open_store(store_url) as store:
        [node] = store.list_nodes()
        federations = store.list_federations()

    assert _version(sql) == str(SCHEMA_VERSION)
    assert (node.name, federations) == ("v6-node", [])


def test_store_migrated_from_version_6_has_the_same_columns_as_a_new_store(new_store_url, sql, store_url):
    _make_version_6(store_url, sql)
    open_store(store_url).close()
    fresh = new_store_url()
    open_store(fresh).close()

    assert _columns(store_url) == _columns(fresh)


def test_store_migrated_from_version_5_has_the_same_columns_as_a_new_store(new_store_url, sql, store_url):
    _make_version_5(store_url, sql)
    open_store(store_url).close()
    fresh = new_store_url()
    open_store(fresh).close()

    assert _columns(store_url) == _columns(fresh)


def test_store_migrated_from_version_4_has_the_same_columns_as_a_new_store(new_store_url, sql, store_url):
    _make_version_4(store_url, sql)
    open_store(store_url).close()
    fresh = new_store_url()
    open_store(fresh).close()

    assert _columns(store_url) == _columns(fresh)


def test_store_migrated_from_version_2_has_the_same_columns_as_a_new_store(new_store_url, sql, store_url):
    _make_version_2(store_url, sql)
    open_store(store_url).close()
    fresh = new_store_url()
    open_store(fresh).close()

    assert _columns(store_url) == _columns(fresh)


def test_store_migrated_from_version_1_has_the_same_columns_as_a_new_store(new_store_url, sql, store_url):
    _make_version_1(store_url, sql)
    open_store(store_url).close()
    fresh = new_store_url()
    open_store(fresh).close()

    assert _columns(store_url) == _columns(fresh)


def test_migrated_store_has_the_same_columns_as_a_new_store(new_store_url, sql, store_url):
    _make_version_0(store_url, sql)
    open_store(store_url).close()
    fresh = new_store_url()
    open_store(fresh).close()

    assert _columns(store_url) == _columns(fresh)


def test_failed_migration_leaves_the_old_version_intact(store_url, sql, monkeypatch):
    _make_version_0(store_url, sql)

    def half_then_crash(conn):
        MIGRATIONS[0](conn)
        raise RuntimeError("power cut")

    monkeypatch.setattr(migrations_module, "MIGRATIONS", (half_then_crash,))
    with pytest.raises(RuntimeError, match="power cut"):
        open_store(store_url)

    assert _version(sql) == "0"
    assert "online" not in {name for name, *_ in _columns(store_url)["nodes"]}


def test_store_with_a_newer_schema_is_refused(store_url, sql):
    open_store(store_url).close()
    sql("UPDATE meta SET value = :v WHERE key = 'schema_version'", v=str(SCHEMA_VERSION + 1))

    with pytest.raises(StoreError) as caught:
        open_store(store_url)

    assert str(caught.value).startswith(
        f"store schema is version {SCHEMA_VERSION + 1} but this fedlearn supports up to {SCHEMA_VERSION}; "
        "upgrade fedlearn (store: "
    )


def test_store_without_a_schema_version_is_refused_as_damaged(store_url, sql):
    open_store(store_url).close()
    sql("DELETE FROM meta")

    with pytest.raises(StoreError, match=r"has no valid schema_version.*damaged"):
        open_store(store_url)


def test_database_with_our_table_names_but_no_meta_is_refused(store_url, sql):
    sql("CREATE TABLE runs (id INTEGER PRIMARY KEY)")

    with pytest.raises(StoreError, match=r"has tables \['runs'\] but no 'meta' table"):
        open_store(store_url)


def test_concurrent_opens_of_a_new_store_create_the_schema_once(store_url, sql):
    barrier = Barrier(4)

    def open_one(index: int) -> str:
        barrier.wait()
        with open_store(store_url) as store:
            return store.add_node(f"node-{index}")

    with ThreadPoolExecutor(4) as pool:
        tokens = list(pool.map(open_one, range(4)))

    assert len(set(tokens)) == 4
    assert sql("SELECT count(*) AS n FROM meta")[0].n == 1


def test_reopening_an_up_to_date_store_changes_nothing(store_url, sql):
    with open_store(store_url) as store:
        token = store.add_node("a")

    with open_store(store_url) as store:
        assert store.authenticate("a", token)
    assert _version(sql) == str(SCHEMA_VERSION)
