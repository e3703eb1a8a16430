"""Federations in the store, on SQLite and PostgreSQL: one transaction per change, blobs kept while referenced."""

from __future__ import annotations

import pytest

from fedlearn.core.errors import ConfigError, NotFoundError
from fedlearn.runtime.store import Store
from fedlearn.runtime.store.federations import FederationUpdate, MemberState, ModelState, new_batch_id


def _create(store: Store, name: str = "fed", refresh_seconds: float | None = None) -> None:
    store.create_federation(name, '{"columns": ["a"]}', refresh_seconds=refresh_seconds,
                            batches=[("node-a", "d1"), ("node-b", "d2")])  # fmt: skip


def test_a_created_federation_has_its_batches_and_members_unsummarised(store: Store) -> None:
    _create(store)

    state = store.federation_state("fed")

    assert (state.federation.definition, state.federation.refreshed_at) == ('{"columns": ["a"]}', None)
    assert [(b.node, b.dataset, b.summary_digest) for b in state.batches] == [("node-a", "d1", None),
                                                                              ("node-b", "d2", None)]  # fmt: skip
    assert [(m.node, m.rows, m.summary_digest) for m in state.members] == [("node-a", 0, None), ("node-b", 0, None)]
    assert state.models == []


def test_a_change_is_written_whole(store: Store) -> None:
    _create(store)
    batch = new_batch_id()

    store.update_federation("fed", FederationUpdate(
        added=[(batch, "node-a", "d3")], summaries={batch: (b"summary", 7)},
        members={"node-a": MemberState(summary=b"merged", rows=7)},
        models={"linear": ModelState(params=b"arrays", rows=7)}, refreshed='{"stale": {}}',
    ))  # fmt: skip

    state = store.federation_state("fed")
    added = next(b for b in state.batches if b.id == batch)
    [model] = state.models
    assert added.rows == 7 and added.summary_digest is not None and store.get_blob(added.summary_digest) == b"summary"
    assert model.params_digest is not None and store.get_blob(model.params_digest) == b"arrays"
    assert state.federation.refreshed_at is not None and state.federation.report == '{"stale": {}}'


def test_a_change_that_fails_midway_writes_nothing(store: Store) -> None:
    _create(store)
    batch = new_batch_id()

    with pytest.raises(NotFoundError, match="no batch 'missing'"):
        store.update_federation("fed", FederationUpdate(added=[(batch, "node-a", "d3")], removed=["missing"]))

    assert batch not in {b.id for b in store.federation_state("fed").batches}


def test_blobs_stay_while_a_federation_refers_to_them_and_go_with_it(store: Store) -> None:
    _create(store)
    store.update_federation("fed", FederationUpdate(models={"pca": ModelState(params=b"kept", rows=1)}))

    assert store.delete_unreferenced_blobs() == 0
    store.delete_federation("fed")

    assert store.delete_unreferenced_blobs() == 1
    assert store.list_federations() == []


def test_only_scheduled_federations_that_are_due_are_due(store: Store) -> None:
    _create(store, "hourly", refresh_seconds=3600)
    _create(store, "on-demand")
    assert store.due_federations() == ["hourly"]  # never refreshed: due at once

    store.update_federation("hourly", FederationUpdate(refreshed="{}"))

    assert store.due_federations() == []


def test_bad_or_duplicate_names_and_unknown_federations_are_refused(store: Store) -> None:
    _create(store)

    with pytest.raises(ConfigError, match="already exists"):
        _create(store)
    with pytest.raises(ConfigError, match="federation name must be"):
        _create(store, "a/b")
    with pytest.raises(NotFoundError, match="no federation named 'other'"):
        store.federation_state("other")
