"""The model registry's tables: immutable numbered versions, package blobs, aliases that move."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from fedlearn.core.errors import ConfigError, NotFoundError
from fedlearn.runtime.store import ModelRecord, Store, open_store

SCHEMA = [{"name": "a", "type": "float"}]


def _add(store: Store, name: str = "churn", run_id: str | None = None) -> ModelRecord:
    return store.add_model(
        name, kind="learner", model="numpy.softmax", task="classification", run_id=run_id,
        lineage={"round": 3}, input_schema=SCHEMA, created_at=datetime(2026, 1, 2, tzinfo=UTC),
        package=lambda version: f"{name} v{version}".encode(),
    )  # fmt: skip


def test_versions_are_numbered_from_one_per_name(store):
    first, second, other = _add(store), _add(store), _add(store, "fraud")

    assert [(r.name, r.version) for r in (first, second, other)] == [("churn", 1), ("churn", 2), ("fraud", 1)]
    assert store.get_blob(second.digest) == b"churn v2"
    assert (second.lineage, second.input_schema, second.size) == ({"round": 3}, SCHEMA, len(b"churn v2"))


def test_list_shows_every_version_with_its_aliases(store):
    _add(store), _add(store), _add(store, "fraud")
    store.set_model_alias("churn", "champion", 1)
    store.set_model_alias("churn", "candidate", 1)

    listed = [(r.name, r.version, r.aliases) for r in store.list_models()]

    assert listed == [("churn", 1, ("candidate", "champion")), ("churn", 2, ()), ("fraud", 1, ())]
    assert [r.version for r in store.list_models("churn")] == [1, 2]


def test_alias_moves_and_is_deleted(store):
    _add(store), _add(store)
    store.set_model_alias("churn", "champion", 1)

    moved = store.set_model_alias("churn", "champion", 2)
    resolved = store.resolve_model("churn", "champion")
    store.delete_model_alias("churn", "champion")

    assert (moved.version, moved.aliases, resolved.version) == (2, ("champion",), 2)
    with pytest.raises(NotFoundError, match="has no alias 'champion'"):
        store.resolve_model("churn", "champion")


def test_resolve_takes_a_number_an_alias_or_latest(store):
    _add(store), _add(store), _add(store)
    store.set_model_alias("churn", "stable", 2)

    versions = [store.resolve_model("churn", s).version for s in (None, "latest", "1", 3, "stable")]

    assert versions == [3, 3, 1, 3, 2]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: s.get_model("nope", 1), NotFoundError, "no model named 'nope'"),
        (lambda s: s.get_model("churn", 9), NotFoundError, "has no version 9"),
        (lambda s: s.resolve_model("nope"), NotFoundError, "no model named 'nope'"),
        (lambda s: s.resolve_model("nope", "champion"), NotFoundError, "no model named 'nope'"),
        (lambda s: s.set_model_alias("churn", "champion", 9), NotFoundError, "has no version 9"),
        (lambda s: s.delete_model_alias("churn", "ghost"), NotFoundError, "has no alias 'ghost'"),
        (lambda s: s.list_models("nope"), NotFoundError, "no model named 'nope'"),
        (lambda s: s.set_model_alias("churn", "latest", 1), ConfigError, "always means the newest"),
        (lambda s: s.set_model_alias("churn", "3rd", 1), ConfigError, "starting with a letter; got '3rd'"),
        (lambda s: s.set_model_alias("churn", "a/b", 1), ConfigError, "`alias` must be 1-64"),
        (lambda s: s.get_model("../etc", 1), ConfigError, "`model name` must be 1-64"),
        (lambda s: s.get_model("churn", 0), ConfigError, "`version` must be an integer >= 1"),
        (lambda s: _add(s, "x" * 65), ConfigError, "`model name` must be 1-64"),
    ],
)
def test_bad_names_and_unknown_versions_are_refused_with_one_line(store, call, error, message):
    _add(store)

    with pytest.raises(error, match=message):
        call(store)


def test_a_registered_package_blob_is_never_collected(store):
    record = _add(store)

    store.delete_unreferenced_blobs()

    assert store.get_blob(record.digest) == b"churn v1"


def test_a_failed_registration_leaves_nothing_behind(store):
    def broken(version: int) -> bytes:
        raise ConfigError("the package cannot be built")

    with pytest.raises(ConfigError, match="cannot be built"):
        store.add_model("churn", kind="learner", model="m", task="regression", run_id=None, lineage={},
                        input_schema=SCHEMA, created_at=datetime.now(UTC), package=broken)  # fmt: skip

    assert store.list_models() == []


def test_concurrent_registrations_of_one_name_get_distinct_versions(store_url):
    stores = [open_store(store_url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            records = list(pool.map(_add, stores))
    finally:
        for opened in stores:
            opened.close()

    assert sorted(r.version for r in records) == [1, 2, 3, 4]
