import hashlib
from datetime import UTC, datetime

import pytest

from fedlearn.core.errors import ConfigError, NotFoundError, StoreError


def test_add_node_returns_a_token_that_authenticates(store):
    token = store.add_node("site-a")

    assert store.authenticate("site-a", token)


def test_add_node_stores_only_the_token_hash(store, sql):
    token = store.add_node("site-a")

    rows = sql("SELECT * FROM nodes")

    assert len(rows) == 1
    assert rows[0].token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert all(token not in str(value) for value in rows[0])


def test_add_node_issues_a_different_token_per_node(store):
    assert store.add_node("a") != store.add_node("b")


def test_add_node_twice_is_refused_suggesting_rotate_or_revoke(store):
    store.add_node("site-a")

    with pytest.raises(StoreError, match=r"already registered.*rotate.*revoke"):
        store.add_node("site-a")


def test_authenticate_refuses_unknown_node(store):
    token = store.add_node("site-a")

    assert not store.authenticate("site-b", token)


def test_authenticate_refuses_wrong_token(store):
    store.add_node("site-a")

    assert not store.authenticate("site-a", "not-the-token")


@pytest.mark.parametrize("name", ["", "a b", "x" * 65])
def test_authenticate_refuses_malformed_name_without_raising(store, name):
    assert not store.authenticate(name, "token")


def test_revoked_node_is_refused_and_listed_as_revoked(store):
    token = store.add_node("site-a")
    store.mark_node("site-a", online=True)

    store.revoke_node("site-a")

    assert not store.authenticate("site-a", token)
    [node] = store.list_nodes()
    assert node.revoked
    assert node.status == "offline"


def test_revoke_node_twice_is_harmless(store):
    store.add_node("site-a")
    store.revoke_node("site-a")

    store.revoke_node("site-a")

    assert store.list_nodes()[0].revoked


def test_revoke_unknown_node_is_refused(store):
    with pytest.raises(NotFoundError, match="'ghost' is not registered"):
        store.revoke_node("ghost")


def test_add_node_after_revoke_issues_a_new_token_and_refuses_the_old(store):
    old = store.add_node("site-a")
    store.revoke_node("site-a")

    new = store.add_node("site-a")

    assert store.authenticate("site-a", new)
    assert not store.authenticate("site-a", old)
    assert not store.list_nodes()[0].revoked


def test_rotate_token_replaces_the_old_token(store):
    old = store.add_node("site-a")

    new = store.rotate_token("site-a")

    assert store.authenticate("site-a", new)
    assert not store.authenticate("site-a", old)


def test_rotate_token_of_revoked_node_is_refused(store):
    store.add_node("site-a")
    store.revoke_node("site-a")

    with pytest.raises(StoreError, match="'site-a' is revoked; register it with `fedlearn nodes add site-a`"):
        store.rotate_token("site-a")


def test_mark_node_sets_status_and_last_seen(store):
    store.add_node("site-a")
    before = datetime.now(UTC)

    store.mark_node("site-a", online=True)

    [node] = store.list_nodes()
    assert node.status == "online"
    assert node.last_seen is not None
    assert node.last_seen >= before.replace(microsecond=0)
    assert node.last_seen.tzinfo is not None


def test_mark_node_offline_keeps_last_seen(store):
    store.add_node("site-a")
    store.mark_node("site-a", online=True)

    store.mark_node("site-a", online=False)

    [node] = store.list_nodes()
    assert node.status == "offline"
    assert node.last_seen is not None


def test_marking_a_revoked_node_offline_is_recorded_without_error(store):
    store.add_node("site-a")
    store.mark_node("site-a", online=True)
    store.revoke_node("site-a")

    store.mark_node("site-a", online=False)  # its session ends after the revocation commits

    [node] = store.list_nodes()
    assert node.revoked and node.status == "offline"


def test_a_revoked_node_cannot_be_marked_online(store):
    store.add_node("site-a")
    store.revoke_node("site-a")

    with pytest.raises(StoreError, match="'site-a' is revoked"):
        store.mark_node("site-a", online=True)


def test_mark_node_of_unknown_node_is_refused(store):
    with pytest.raises(StoreError, match="not registered"):
        store.mark_node("ghost", online=True)


def test_mark_all_nodes_offline_clears_presence_left_by_a_dead_coordinator(store):
    for name in ("a", "b", "c"):
        store.add_node(name)
    store.mark_node("a", online=True)
    store.mark_node("b", online=True)

    count = store.mark_all_nodes_offline()

    assert count == 2
    assert {node.status for node in store.list_nodes()} == {"offline"}


def test_list_nodes_is_sorted_by_name(store):
    for name in ("b", "c", "a"):
        store.add_node(name)

    assert [node.name for node in store.list_nodes()] == ["a", "b", "c"]


@pytest.mark.parametrize("name", ["", "has space", "slash/name", "x" * 65, "naïve"])
def test_add_node_refuses_bad_names_with_the_rule(store, name):
    with pytest.raises(ConfigError, match="node name must be 1-64 characters"):
        store.add_node(name)


@pytest.mark.parametrize("operation", ["rotate_token", "revoke_node", "mark_node"])
def test_other_node_operations_refuse_bad_names(store, operation):
    args = (True,) if operation == "mark_node" else ()

    with pytest.raises(ConfigError, match="node name must be 1-64 characters"):
        getattr(store, operation)("bad name", *args)


# -- identity keys ---------------------------------------------------------------------------------

KEY_A, KEY_B = bytes(range(32)), bytes(range(1, 33))


def test_first_identity_key_a_node_presents_is_bound_and_kept(store):
    store.add_node("alpha")

    assert store.bind_identity_key("alpha", KEY_A) is None
    assert store.bind_identity_key("alpha", KEY_A) is None
    assert store.identity_keys() == {"alpha": KEY_A}
    assert store.list_nodes()[0].identity_key == KEY_A.hex()


def test_a_different_identity_key_is_refused_naming_both_and_the_way_out(store):
    store.add_node("alpha", identity_key=KEY_A)

    refusal = store.bind_identity_key("alpha", KEY_B)

    assert refusal is not None
    assert KEY_B.hex()[:16] in refusal and KEY_A.hex()[:16] in refusal
    assert "fedlearn nodes identity alpha --forget" in refusal
    assert store.identity_keys() == {"alpha": KEY_A}


def test_a_forgotten_identity_key_is_bound_again_at_the_next_session(store):
    store.add_node("alpha")
    store.bind_identity_key("alpha", KEY_A)

    store.set_identity_key("alpha", None)

    assert store.identity_keys() == {}
    assert store.bind_identity_key("alpha", KEY_B) is None
    assert store.identity_keys() == {"alpha": KEY_B}


def test_a_revoked_node_binds_nothing_and_its_key_is_not_listed(store):
    store.add_node("alpha", identity_key=KEY_A)
    store.revoke_node("alpha")

    assert "revoked" in (store.bind_identity_key("alpha", KEY_B) or "")
    assert store.identity_keys() == {}


def test_registering_a_revoked_node_again_clears_its_old_identity_key(store):
    store.add_node("alpha", identity_key=KEY_A)
    store.revoke_node("alpha")

    store.add_node("alpha")

    assert store.bind_identity_key("alpha", KEY_B) is None


@pytest.mark.parametrize("key", [b"", bytes(31), bytes(33)])
def test_an_identity_key_of_the_wrong_length_is_refused(store, key):
    store.add_node("alpha")

    with pytest.raises(StoreError, match="32-byte Ed25519 public key"):
        store.set_identity_key("alpha", key)
