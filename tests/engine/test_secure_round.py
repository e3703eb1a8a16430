"""SecAgg+ as an engine round: exact sums under dropouts, hostile nodes and a cheating coordinator."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from fedlearn.core.errors import QuorumError, SecureAggregationError
from fedlearn.core.messages import (
    FIT,
    SECAGG_ADVERTISE,
    SECAGG_ARRAY_PREFIX,
    SECAGG_CONSISTENCY,
    SECAGG_KINDS,
    SECAGG_MASKED_INPUT,
    SECAGG_RECEIVE,
    SECAGG_SHARE,
    SECAGG_UNMASK,
    Reply,
    Task,
)
from fedlearn.core.params import ParamSet
from fedlearn.privacy.keys import RoundKeys, generate_identity, identity_key, sign_keys
from fedlearn.privacy.protocol import SecureAggregation, commitment
from fedlearn.privacy.shamir import PRIME, Share, combine_shares, interpolate_at_zero
from tests.engine.secure_helpers import federation, with_extra

CLIP = 1.0
SETTINGS = SecureAggregation(clip=CLIP, max_weight=100, dropout_fraction=0.3, corrupt_fraction=0.05)


def _assert_exact(fed, outcome, survivors, settings=SETTINGS):
    mean, total = fed.expected_mean(survivors, settings.clip)
    assert outcome.reply.num_examples == total
    bound = settings.encoding(len(fed.ids)).error_bound(len(survivors)) / total
    for name, expected in mean.items():
        got = outcome.reply.params[name] - fed.params[name]
        assert np.abs(got - expected).max() <= bound + 1e-12, name


def test_full_secagg_without_dropouts_gives_the_weighted_mean():
    fed = federation(4, scale=2.0)  # updates beyond the clip range are clipped on the nodes

    outcome = fed.run(SETTINGS)

    assert (outcome.survived, outcome.dropped, outcome.failures) == (4, 0, {})
    _assert_exact(fed, outcome, fed.ids)


def test_secagg_plus_uses_a_sparse_graph_and_stays_exact():
    fed = federation(30, size=5)
    light = SecureAggregation(clip=CLIP, max_weight=100, dropout_fraction=0.1)
    assert light.parameters(30).degree < 29

    outcome = fed.run(light)

    _assert_exact(fed, outcome, fed.ids, light)
    share_task = fed.fleet.tasks[(fed.ids[0], SECAGG_SHARE)]
    # its own and its neighbours' adverts, each with its identity key
    assert len(share_task.extras) == 4 * (light.parameters(30).degree + 1)


@pytest.mark.parametrize("kind", SECAGG_KINDS)
def test_dropouts_at_any_stage_leave_the_sum_exact(kind):
    fed = federation(10, seed=1, drops={kind: {"n02", "n07"}})

    outcome = fed.run(SETTINGS)

    dead_before_input = kind in (SECAGG_ADVERTISE, SECAGG_SHARE, SECAGG_RECEIVE, SECAGG_MASKED_INPUT)
    survivors = [u for u in fed.ids if not (dead_before_input and u in ("n02", "n07"))]
    assert outcome.survived == len(survivors)
    _assert_exact(fed, outcome, survivors)
    assert {"n02", "n07"} <= set(outcome.failures)


def test_dropouts_between_masked_input_and_unmask_at_30_percent():
    fed = federation(10, seed=2, drops={SECAGG_CONSISTENCY: {"n01"}, SECAGG_UNMASK: {"n04", "n08"}})

    outcome = fed.run(SETTINGS)

    _assert_exact(fed, outcome, fed.ids)  # all ten inputs are in; three nodes helped no further


def test_more_dropouts_than_configured_fail_the_round_with_a_message():
    fed = federation(10, drops={SECAGG_MASKED_INPUT: {"n01", "n02", "n03", "n04"}})

    with pytest.raises(QuorumError, match=r"dropout_fraction` 0\.3.*quorum is 7"):
        fed.run(SETTINGS)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(4, 9),
    seed=st.integers(0, 2**16),
    deaths=st.lists(st.tuples(st.integers(0, 8), st.sampled_from(SECAGG_KINDS)), max_size=3),
    bits=st.sampled_from((32, 64)),
)
def test_unmasked_sum_equals_plain_sum_within_the_bound_for_random_inputs_and_dropouts(n, seed, deaths, bits):
    chosen = replace(SETTINGS, bits=bits)
    allowed = int(SETTINGS.dropout_fraction * n + 1e-9)
    drops: dict[str, set[str]] = {}
    dead: dict[str, str] = {}
    for index, kind in deaths[:allowed]:
        node = f"n{index % n:02d}"
        if node not in dead:
            dead[node] = kind
            drops.setdefault(kind, set()).add(node)
    fed = federation(n, seed=seed, size=3, drops=drops, scale=1.5)

    outcome = fed.run(chosen)

    early = (SECAGG_ADVERTISE, SECAGG_SHARE, SECAGG_RECEIVE, SECAGG_MASKED_INPUT)
    _assert_exact(fed, outcome, [u for u in fed.ids if dead.get(u) not in early], chosen)


# -- hostile nodes: treated as dropped, the reason recorded, the round goes on -------------------


def _short_key(task: Task, reply: Reply) -> Reply:
    return with_extra(reply, "secagg/cipher", reply.extras["secagg/cipher"][:31])


def _bad_signature(task: Task, reply: Reply) -> Reply:
    signature = reply.extras["secagg/signature"].copy()
    signature[0] ^= 1
    return with_extra(reply, "secagg/signature", signature)


def _garbled_shares(task: Task, reply: Reply) -> Reply:
    name = sorted(k for k in reply.extras if k.startswith("secagg/out/"))[0]
    sealed = reply.extras[name].copy()
    sealed[20] ^= 0xFF
    return with_extra(reply, name, sealed)


def _short_vector(task: Task, reply: Reply) -> Reply:
    return replace(reply, params=ParamSet({"secagg/masked": reply.params["secagg/masked"][:-1]}))


@pytest.mark.parametrize(
    ("kind", "tamper", "reason"),
    [
        (SECAGG_ADVERTISE, _short_key, "cipher key must be 32 bytes"),
        (SECAGG_ADVERTISE, _bad_signature, "not signed by its registered identity key"),
        (SECAGG_MASKED_INPUT, _short_vector, "masked vector is uint32"),
    ],
)
def test_a_node_sending_malformed_messages_is_dropped_with_its_reason(kind, tamper, reason):
    fed = federation(8, seed=3, hostile={"n05": (kind, tamper)})

    outcome = fed.run(SETTINGS)

    assert reason in outcome.failures["n05"]
    _assert_exact(fed, outcome, [u for u in fed.ids if u != "n05"])


def test_a_node_sending_undecryptable_shares_is_dropped_before_anyone_masks_with_it():
    fed = federation(8, seed=4, hostile={"n03": (SECAGG_SHARE, _garbled_shares)})

    outcome = fed.run(SETTINGS)

    assert "do not open; treated as dropped" in outcome.failures["n03"]
    assert ("n03", SECAGG_MASKED_INPUT) not in fed.fleet.tasks
    _assert_exact(fed, outcome, [u for u in fed.ids if u != "n03"])


# -- a cheating coordinator is refused or detected ------------------------------------------------


def test_substituted_keys_are_refused_by_the_nodes():
    def substitute(node: str, task: Task) -> Task:
        if task.kind != SECAGG_SHARE or node != "n00":
            return task
        extras = task.extras.to_dict(writable=True)
        peer = next(k for k in sorted(extras) if k.endswith("/mask") and "/n00/" not in k)
        extras[peer] = np.frombuffer(bytes(range(32)), dtype=np.uint8)
        return replace(task, extras=ParamSet(extras))

    fed = federation(6, tamper_task=substitute)

    outcome = fed.run(SETTINGS)

    assert "not signed by its registered identity key" in outcome.failures["n00"]
    _assert_exact(fed, outcome, fed.ids[1:])


def _forge_identity(node: str, task: Task) -> Task:
    """The coordinator swaps a neighbour's keys for its own, signed with an identity key it made and vouches for."""
    if task.kind != SECAGG_SHARE or node != "n00":
        return task
    extras = task.extras.to_dict(writable=True)
    peer = next(k.split("/")[2] for k in sorted(extras) if k.endswith("/identity") and "/n00/" not in k)
    forger, round_keys = generate_identity(), RoundKeys.generate()
    advert = round_keys.advertise(run_id=task.run_id, round=task.round, node_id=peer)
    for part, value in (("cipher", advert.cipher_key), ("mask", advert.mask_key),
                        ("signature", sign_keys(forger, advert)), ("identity", identity_key(forger))):  # fmt: skip
        extras[f"{SECAGG_ARRAY_PREFIX}keys/{peer}/{part}"] = np.frombuffer(value, dtype=np.uint8)
    return replace(task, extras=ParamSet(extras))


def test_a_forged_identity_the_coordinator_vouches_for_is_caught_by_a_pinned_registry():
    fed = federation(6, tamper_task=_forge_identity)

    outcome = fed.run(SETTINGS)

    assert "differs from the pinned one" in outcome.failures["n00"]
    _assert_exact(fed, outcome, fed.ids[1:])


def test_a_node_refuses_a_share_request_that_holds_another_identity_key_for_it():
    def misregister(node: str, task: Task) -> Task:
        if task.kind != SECAGG_SHARE or node != "n01":
            return task
        extras = task.extras.to_dict(writable=True)
        extras[f"{SECAGG_ARRAY_PREFIX}keys/n01/identity"] = np.frombuffer(identity_key(generate_identity()), np.uint8)
        return replace(task, extras=ParamSet(extras))

    fed = federation(6, tamper_task=misregister, vouched=frozenset({"n01"}))

    outcome = fed.run(SETTINGS)

    assert "is not this node's own" in outcome.failures["n01"]
    _assert_exact(fed, outcome, [u for u in fed.ids if u != "n01"])


def test_nodes_that_take_identity_keys_from_the_coordinator_aggregate_exactly():
    fed = federation(6, vouched=frozenset(f"n{i:02d}" for i in range(6)))

    outcome = fed.run(SETTINGS)

    assert outcome.failures == {}
    _assert_exact(fed, outcome, fed.ids)


def test_a_node_refuses_to_unmask_a_survivor_set_other_than_the_one_it_signed():
    fed = federation(6)
    fed.run(SETTINGS)
    task = fed.fleet.tasks[("n00", SECAGG_UNMASK)]
    node = fed.node("n00")
    node_secrets = node.handlers[SECAGG_UNMASK].__self__._round  # type: ignore[attr-defined]
    node_secrets.unmasked = False  # as if this were its first answer
    fewer = replace(task, config={**task.config, "secagg.survivors": '["n00", "n02", "n03", "n04", "n05"]'})

    reply = node.handle(fewer)

    assert "another survivor set" in reply.error


def test_a_node_answers_one_unmasking_request_per_round():
    fed = federation(6)
    fed.run(SETTINGS)

    reply = fed.node("n00").handle(fed.fleet.tasks[("n00", SECAGG_UNMASK)])

    assert "already answered an unmasking request" in reply.error


def test_a_node_signs_one_survivor_set_per_round():
    fed = federation(6)
    fed.run(SETTINGS)
    task = fed.fleet.tasks[("n00", SECAGG_CONSISTENCY)]

    reply = fed.node("n00").handle(replace(task, config={"secagg.survivors": '["n00", "n01", "n02"]'}))

    assert "second, different survivor set" in reply.error


def test_a_node_reveals_nothing_without_threshold_signatures_on_the_survivor_set():
    fed = federation(6)
    fed.run(SETTINGS)
    task = fed.fleet.tasks[("n01", SECAGG_UNMASK)]
    node = fed.node("n01")
    node.handlers[SECAGG_UNMASK].__self__._round.unmasked = False  # type: ignore[attr-defined]
    kept = {k: v for k, v in task.extras.items() if k in ("secagg/sig/n00", "secagg/sig/n01")}

    reply = node.handle(replace(task, extras=ParamSet(kept)))

    assert "fewer than the threshold" in reply.error


def test_split_survivor_views_are_detected_before_any_share_is_revealed():
    def lie(node: str, task: Task) -> Task:  # tell n00 that n05 dropped out, everyone else that it survived
        if task.kind == SECAGG_CONSISTENCY and node == "n00":
            return replace(task, config={"secagg.survivors": '["n00", "n01", "n02", "n03", "n04"]'})
        return task

    fed = federation(6, tamper_task=lie)

    outcome = fed.run(SETTINGS)

    assert "does not verify" in outcome.failures["n00"]
    _assert_exact(fed, outcome, fed.ids)


# -- what the coordinator sees ----------------------------------------------------------------------


def test_one_masked_input_looks_uniformly_random():
    fed = federation(5, size=4000, scale=0.0)  # the updates are all zero: their encoding is all zeros

    fed.run(SETTINGS)

    masked = fed.fleet.replies[("n00", SECAGG_MASKED_INPUT)].params["secagg/masked"]
    counts = np.bincount(masked.view(np.uint8), minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-4
    bits = np.unpackbits(masked.view(np.uint8))
    assert abs(bits.mean() - 0.5) < 4 * 0.5 / np.sqrt(bits.size)


def test_fewer_than_threshold_shares_do_not_rebuild_a_survivors_self_mask():
    fed = federation(6)
    fed.run(SETTINGS)
    threshold = SETTINGS.parameters(6).threshold
    revealed = [fed.fleet.replies[(u, SECAGG_UNMASK)].extras for u in fed.ids[1:]]
    shares = [Share.from_bytes(e["secagg/self/n00"].tobytes()) for e in revealed if "secagg/self/n00" in e]
    committed = commitment(combine_shares(shares, threshold=threshold))  # threshold-many do rebuild it

    with pytest.raises(SecureAggregationError, match="at least"):
        combine_shares(shares[: threshold - 1], threshold=threshold)
    guess = interpolate_at_zero([(s.x, s.y) for s in shares[: threshold - 1]], PRIME)
    assert guess >= 2**256 or commitment(guess.to_bytes(32, "big")) != committed


def test_hand_picked_degree_and_threshold_are_used():
    fed = federation(12, seed=5)
    chosen = SecureAggregation(clip=CLIP, max_weight=100, dropout_fraction=0.1, degree=10, threshold=7)

    outcome = fed.run(chosen)

    assert fed.fleet.tasks[("n00", SECAGG_SHARE)].config["secagg.degree"] == 10
    assert fed.fleet.tasks[("n00", SECAGG_SHARE)].config["secagg.threshold"] == 7
    _assert_exact(fed, outcome, fed.ids, chosen)


def test_a_node_takes_part_in_a_round_once():
    fed = federation(6)
    fed.run(SETTINGS)

    reply = fed.node("n00").handle(fed.fleet.tasks[("n00", SECAGG_ADVERTISE)])

    assert "already advertised keys for this round" in reply.error


def test_a_node_refuses_a_threshold_that_would_let_one_peer_be_split():
    def weaken(node: str, task: Task) -> Task:
        if task.kind == SECAGG_SHARE:
            return replace(task, config={**task.config, "secagg.threshold": 2})
        return task

    fed = federation(6, tamper_task=weaken)

    with pytest.raises(QuorumError, match="2 × threshold > degree"):
        fed.run(SETTINGS)


def _peak_bytes(n: int) -> int:
    import tracemalloc

    fed = federation(n, size=20_000, seed=6)
    fed.fleet.record = False  # recorded replies would hold every masked vector
    for node in fed.ids:  # nodes are built lazily; build them (and their fixed updates) before tracing
        fed.node(node)
    tracemalloc.start()
    try:
        fed.run(SecureAggregation(clip=CLIP, max_weight=100, dropout_fraction=0.1))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_of_the_order_of_the_model_whatever_the_number_of_nodes():
    model_bytes = 20_004 * 8

    small, large = _peak_bytes(4), _peak_bytes(16)

    assert large < 1.3 * small
    assert large < 12 * model_bytes


def _wrong_self_share(task: Task, reply: Reply) -> Reply:
    name = sorted(k for k in reply.extras if k.startswith("secagg/self/"))[0]
    share = Share.from_bytes(reply.extras[name].tobytes())
    wrong = Share(share.x, (share.y + 1) % PRIME)
    return with_extra(reply, name, np.frombuffer(wrong.to_bytes(), dtype=np.uint8))


def test_a_wrong_share_revealed_at_unmasking_is_caught_and_its_holder_named():
    fed = federation(10, seed=7, hostile={"n04": (SECAGG_UNMASK, _wrong_self_share)})

    outcome = fed.run(SETTINGS)

    assert "revealed a wrong share of the self-mask seed" in outcome.failures["n04"]
    _assert_exact(fed, outcome, fed.ids)


def test_a_node_reveals_nothing_of_a_peer_whose_own_neighbours_did_not_sign_the_set():
    fed = federation(30, size=3)
    light = SecureAggregation(clip=CLIP, max_weight=100, dropout_fraction=0.1)
    fed.run(light)
    node = fed.node("n00")
    secure_node = node.handlers[SECAGG_UNMASK].__self__  # type: ignore[attr-defined]
    graph, peer = secure_node._round.graph, secure_node._round.partners[0]
    secure_node._round.unmasked = False
    task = fed.fleet.tasks[("n00", SECAGG_UNMASK)]
    elsewhere = {k: v for k, v in task.extras.items() if k.removeprefix("secagg/sig/") not in graph.neighbours(peer)}
    assert len(elsewhere) >= light.parameters(30).threshold  # enough signatures overall, none from around the peer

    reply = node.handle(replace(task, extras=ParamSet(elsewhere)))

    assert reply.ok
    assert f"secagg/self/{peer}" not in reply.extras and f"secagg/key/{peer}" not in reply.extras


def test_a_node_refuses_to_mask_with_a_peer_whose_shares_it_does_not_hold():
    fed = federation(8, seed=4, hostile={"n03": (SECAGG_SHARE, _garbled_shares)})
    fed.run(SETTINGS)
    victim = next(
        u for u in fed.ids if u != "n03" and fed.fleet.replies[(u, SECAGG_RECEIVE)].extras["secagg/rejected"].size
    )
    node = fed.node(victim)
    node.handlers[SECAGG_UNMASK].__self__._round.masked = False  # type: ignore[attr-defined]
    task = fed.fleet.tasks[(victim, SECAGG_MASKED_INPUT)]

    reply = node.handle(replace(task, config={**task.config, "secagg.partners": json.dumps(fed.ids)}))

    assert "whose shares it does not hold" in reply.error


def test_a_node_advertising_a_low_order_key_is_dropped_before_its_neighbours_see_it():
    from fedlearn.privacy.keys import AdvertisedKeys, sign_keys

    def low_order(task: Task, reply: Reply) -> Reply:  # validly signed, so only the point itself is wrong
        identity = fed.node("n02").handlers[SECAGG_SHARE].__self__._identity  # type: ignore[attr-defined]
        advert = AdvertisedKeys(run_id=task.run_id, round=task.round, node_id="n02", cipher_key=bytes(32),
                                mask_key=reply.extras["secagg/mask"].tobytes())  # fmt: skip
        reply = with_extra(reply, "secagg/cipher", np.zeros(32, np.uint8))
        return with_extra(reply, "secagg/signature", np.frombuffer(sign_keys(identity, advert), np.uint8))

    fed = federation(8, seed=9, hostile={"n02": (SECAGG_ADVERTISE, low_order)})

    outcome = fed.run(SETTINGS)

    assert "low-order point" in outcome.failures["n02"]
    _assert_exact(fed, outcome, [u for u in fed.ids if u != "n02"])


@pytest.mark.parametrize("kind", [FIT, SECAGG_UNMASK, 7])
def test_a_masked_contribution_may_not_be_training_or_a_protocol_stage(kind: object) -> None:
    def contribute(node: str, task: Task) -> Task:
        if task.kind != SECAGG_MASKED_INPUT or node != "n02":
            return task
        return replace(task, config={**task.config, "secagg.contribution": kind, "secagg.max_nodes": 6})

    fed = federation(6, tamper_task=contribute)

    outcome = fed.run(SETTINGS)

    assert "must name an analytics task kind" in outcome.failures["n02"]
