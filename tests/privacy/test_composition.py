"""The pieces compose into one round of SecAgg+ in memory: a node drops out and the sum still decodes.

This is not the protocol (stages, messages and deadlines live elsewhere); it checks that keys,
shares, sealed messages, masks, encoding, graph and disclosure fit together as the guide says.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from fedlearn.privacy import (
    FixedPoint,
    RoundKeys,
    ShareMessage,
    apply_masks,
    blocks,
    combine_shares,
    decode_sum,
    decode_weight,
    decrypt_shares,
    encode_into,
    encode_weight,
    encrypt_shares,
    generate_identity,
    identity_key,
    neighbour_graph,
    new_seed,
    pairwise_mask_seed,
    pairwise_sign,
    plan_disclosure,
    secagg_parameters,
    share_key,
    sign_keys,
    split_secret,
    verify_keys,
)

RUN, ROUND, DIM, BLOCK = "run-e2e", 2, 300, 64
NODES = [f"n{i}" for i in range(8)]
DROPPED = "n3"


def test_one_round_unmasks_to_the_weighted_sum_of_the_survivors() -> None:
    context = {"run_id": RUN, "round": ROUND}
    params = secagg_parameters(len(NODES), dropout_fraction=1 / 8, corrupt_fraction=0.0)
    graph = neighbour_graph(NODES, degree=params.degree, seed=11, round=ROUND)
    t = params.threshold

    # Advertise keys: signed with identity keys registered at enrollment, checked by every neighbour.
    identities = {n: generate_identity() for n in NODES}
    registered = {n: identity_key(identities[n]) for n in NODES}
    keys = {n: RoundKeys.generate() for n in NODES}
    adverts = {n: keys[n].advertise(node_id=n, **context) for n in NODES}
    signed = {n: (adverts[n], sign_keys(identities[n], adverts[n])) for n in NODES}
    seen = {
        n: {p: verify_keys(*signed[p], identity_key=registered[p], node_id=p, **context) for p in graph.neighbours(n)}
        for n in NODES
    }

    # Share keys: each node seals, for each neighbour, its shares of its mask key and self-mask seed.
    self_seeds = {n: new_seed() for n in NODES}
    inbox: dict[str, dict[str, bytes]] = defaultdict(dict)
    for u in NODES:
        peers = graph.neighbours(u)
        xs = [graph.index(p) for p in peers]
        key_shares = split_secret(keys[u].mask_secret(), threshold=t, x_values=xs)
        seed_shares = split_secret(self_seeds[u], threshold=t, x_values=xs)
        for p, key_share, seed_share in zip(peers, key_shares, seed_shares, strict=True):
            aead_key = share_key(keys[u].cipher, seen[u][p].cipher_key, node_id=u, peer_id=p, **context)
            message = ShareMessage(mask_key_share=key_share, self_mask_share=seed_share)
            inbox[p][u] = encrypt_shares(aead_key, message, sender=u, receiver=p, **context)

    # Masked input: DROPPED goes silent here; the others encode and mask block by block.
    rng = np.random.default_rng(0)
    updates = {n: rng.normal(scale=0.7, size=DIM) for n in NODES}
    weights = {n: int(rng.integers(1, 100)) for n in NODES}
    encoding = FixedPoint.fit(len(NODES), clip=1.0, max_weight=100)
    survivors = [n for n in NODES if n != DROPPED]
    total = np.zeros(DIM + 1, encoding.dtype)
    scratch = np.empty(BLOCK, encoding.dtype)
    for u in survivors:
        y = np.empty(DIM + 1, encoding.dtype)
        for start, stop in blocks(DIM, BLOCK):
            rounding = bytes(32)  # a simulation may fix it; a deployment draws it fresh
            encode_into(
                updates[u][start:stop],
                weight=weights[u],
                encoding=encoding,
                seed=rounding,
                offset=start,
                out=y[start:stop],
            )
        y[DIM] = encode_weight(weights[u], encoding)
        masks = [(self_seeds[u], 1)] + [
            (
                pairwise_mask_seed(keys[u].mask, seen[u][p].mask_key, node_id=u, peer_id=p, **context),
                pairwise_sign(u, p),
            )
            for p in graph.neighbours(u)
        ]
        for start, stop in blocks(DIM + 1, BLOCK):
            apply_masks(y[start:stop], start, masks, scratch=scratch)
        total += y

    # Unmasking: each survivor reveals self-mask shares of survivors and mask-key shares of the dropout.
    self_mask_shares, mask_key_shares = defaultdict(list), defaultdict(list)
    for w in survivors:
        held = sorted(inbox[w])
        plan = plan_disclosure(
            held=held,
            survivors=[p for p in held if p != DROPPED],
            dropped=[p for p in held if p == DROPPED],
            threshold=t,
        )
        for p in (*plan.self_mask_shares_of, *plan.mask_key_shares_of):
            aead_key = share_key(keys[w].cipher, seen[w][p].cipher_key, node_id=w, peer_id=p, **context)
            message = decrypt_shares(aead_key, inbox[w][p], sender=p, receiver=w, **context)
            if p in plan.self_mask_shares_of:
                self_mask_shares[p].append(message.self_mask_share)
            else:
                mask_key_shares[p].append(message.mask_key_share)

    # The coordinator removes every survivor's self-mask and the pairwise masks the dropout left behind.
    assert DROPPED not in self_mask_shares and set(mask_key_shares) == {DROPPED}
    for u in survivors:
        apply_masks(total, 0, [(combine_shares(self_mask_shares[u], threshold=t), -1)])
    dropped_key = combine_shares(mask_key_shares[DROPPED], threshold=t)
    for v in graph.neighbours(DROPPED):
        seed = pairwise_mask_seed(dropped_key, adverts[v].mask_key, node_id=DROPPED, peer_id=v, **context)
        apply_masks(total, 0, [(seed, -pairwise_sign(v, DROPPED))])

    decoded = decode_sum(total[:DIM], encoding=encoding)
    expected = sum(weights[n] * np.clip(updates[n], -1.0, 1.0) for n in survivors)
    assert np.max(np.abs(decoded - expected)) < encoding.error_bound(len(survivors))
    assert decode_weight(total[DIM], encoding=encoding) == sum(weights[n] for n in survivors)
