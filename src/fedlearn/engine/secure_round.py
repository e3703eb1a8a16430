"""The coordinator side of SecAgg+: one securely aggregated round as six ``Gather`` stages.

The engine calls :meth:`SecureRound.run` in place of its fit stage when the strategy holds a
:class:`~fedlearn.privacy.protocol.SecureAggregation` piece. It talks to nodes only through the
``Fleet`` and the ``secagg.*`` task kinds, so simulation and deployment run the same code. Each
stage has the round's deadline and a quorum of ``n - floor(dropout_fraction * n)`` nodes (and at
least the engine's own quorum), so more dropouts than configured fail the round with a message,
and no stage waits past its deadline. Every reply is checked before it is used; a node whose
reply is malformed (a bad advert or signature, a wrong-length masked vector, shares for the
wrong holder) is treated as dropped and the reason is recorded.

Memory stays O(model): masked vectors are added into one modular sum as they arrive, and the
masks are removed block by block. The sum is exact (masks cancel modulo ``2^bits``); what the
strategy receives is one already-summed pseudo-reply whose parameters are the global model plus
the weighted mean update and whose weight is the total weight, so every server transform works
unchanged. See docs/secure-aggregation.md, "The protocol".
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from fedlearn.core.errors import QuorumError, SecureAggregationError, ValidationError
from fedlearn.core.messages import (
    CONTROL_DELTA_PREFIX,
    FIT,
    SECAGG_ADVERTISE,
    SECAGG_ARRAY_PREFIX,
    SECAGG_CONSISTENCY,
    SECAGG_MASKED_INPUT,
    SECAGG_RECEIVE,
    SECAGG_SHARE,
    SECAGG_UNMASK,
    SECURE_CONTRIBUTION_KEY,
    Reply,
    Scalar,
    Task,
)
from fedlearn.core.params import ParamSet
from fedlearn.engine.fleet import Fleet
from fedlearn.engine.stage import Clock, Gather, StageReport
from fedlearn.privacy.aead import CIPHERTEXT_BYTES
from fedlearn.privacy.encoding import FixedPoint, decode_sum, decode_weight
from fedlearn.privacy.exact import decode_exact, exact_encoding
from fedlearn.privacy.graph import MIN_NODES, NeighbourGraph, neighbour_graph
from fedlearn.privacy.keys import (
    KEY_BYTES,
    SIGNATURE_BYTES,
    AdvertisedKeys,
    pairwise_mask_seed,
    verify_keys,
    verify_signature,
)
from fedlearn.privacy.masks import DEFAULT_BLOCK_ELEMENTS, Masker, pairwise_sign
from fedlearn.privacy.protocol import (
    SecureAggregation,
    VectorLayout,
    commitment,
    encoding_config,
    from_array,
    survivors_bytes,
    to_array,
)
from fedlearn.privacy.shamir import SHARE_BYTES, Share, combine_shares

P = SECAGG_ARRAY_PREFIX
AGGREGATE_NODE = "secure-aggregate"
"""The ``node_id`` of the one pseudo-reply a secure round hands to the strategy."""


@dataclass(slots=True, kw_only=True)
class SecureTally:
    """What happened on the way through a secure round: who was summed, who dropped and why, the traffic."""

    survived: int
    dropped: int
    survivors: tuple[str, ...] = ()
    failures: dict[str, str] = field(default_factory=dict)
    bytes_sent: int = 0
    bytes_received: int = 0


@dataclass(slots=True, kw_only=True)
class SecureOutcome(SecureTally):
    """The summed update of a secure round, as one pseudo-reply for the strategy."""

    reply: Reply


@dataclass(slots=True, kw_only=True)
class SecureSum(SecureTally):
    """The exact sums of a :meth:`SecureRound.sum_exact` round."""

    values: np.ndarray


@dataclass(slots=True)
class _Stages:
    """Failures and traffic over the stages of one round; a node's first failure is its reason."""

    failures: dict[str, str] = field(default_factory=dict)
    bytes_sent: int = 0
    bytes_received: int = 0

    def note(self, kind: str, report: StageReport) -> None:
        self.bytes_sent += report.bytes_sent
        self.bytes_received += report.bytes_received
        for node, reason in report.failures.items():
            self.failures.setdefault(node, f"{kind}: {reason}")


class SecureRound:
    """Runs the six stages of one SecAgg+ round over a fleet (see the module docstring).

    With ``weighted=False`` (the unweighted mean, SCAFFOLD's) every node's update counts once: nodes
    encode it with weight 1, and the pseudo-reply's weight is the number of nodes summed.

    ``identity_keys`` maps node ids to their registered Ed25519 public keys; ``graph_seed`` is
    the run's secret graph seed, drawn from the OS when the run starts and shown to nodes only
    after they committed to their round keys; ``min_replies`` is the engine's own quorum.
    """

    def __init__(
        self,
        fleet: Fleet,
        settings: SecureAggregation,
        *,
        identity_keys: Mapping[str, bytes],
        graph_seed: int,
        run_id: str,
        timeout: float,
        min_replies: int,
        clock: Clock,
        buffer_bytes: int,
        block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    ) -> None:
        self._fleet = fleet
        self._settings = settings
        self._identities = dict(identity_keys)
        self._graph_seed = graph_seed
        self._run_id = run_id
        self._timeout = timeout
        self._min_replies = min_replies
        self._clock = clock
        self._buffer_bytes = buffer_bytes
        self._block = block_elements

    def run(
        self,
        number: int,
        params: ParamSet,
        sampled: Sequence[str],
        *,
        fit_config: Callable[[str], Mapping[str, Scalar]],
        fit_extras: ParamSet,
        control_variates: bool,
        weighted: bool = True,
        noise_stddev: float = 0.0,
    ) -> SecureOutcome:
        """Aggregate round ``number`` securely over ``sampled``; QuorumError or SecureAggregationError if it cannot.

        ``noise_stddev`` is the distributed-DP noise each node adds to its encoded update; the
        encoding leaves room for it (see :meth:`SecureAggregation.encoding`).
        """
        n = len(sampled)
        encoding = self._settings.encoding(_checked_size(number, n), noise_stddev=noise_stddev)
        controls = [f"{CONTROL_DELTA_PREFIX}{name}" for name in sorted(params)] if control_variates else []
        layout = VectorLayout.of(params.spec(), control_names=controls)
        masked_config = {**encoding_config(encoding), "secagg.weighted": weighted}
        total, survivors, stages = self._aggregate(
            number, sampled, lambda u: {**fit_config(u), **masked_config}, params=params, extras=fit_extras,
            length=layout.length, dtype=encoding.dtype,
            check=lambda r: _check_masked(r, layout.length, encoding.dtype),
        )  # fmt: skip
        reply = _decoded(number, total, layout, encoding, params)
        return SecureOutcome(reply=reply, **_tally(n, survivors, stages))

    def sum_exact(
        self,
        number: int,
        sampled: Sequence[str],
        *,
        kind: str,
        configs: Mapping[str, Mapping[str, Scalar]],
        params: ParamSet,
        length: int,
    ) -> SecureSum:
        """The exact sum of one float64 vector of ``length`` per node, which each node's ``kind`` handler computes.

        In the masked-input stage each node runs the task ``kind`` with its ``configs`` entry and
        ``params``, encodes the ``vector`` it replies exactly (:mod:`fedlearn.privacy.exact`) and
        masks it; the coordinator sees only the sum. Exact analytics uses it.
        """
        n = _checked_size(number, len(sampled))
        encoding = exact_encoding(n)
        contribution: dict[str, Scalar] = {SECURE_CONTRIBUTION_KEY: kind, "secagg.max_nodes": n}
        encoded = encoding.encoded_length(length)
        total, survivors, stages = self._aggregate(
            number, sampled, lambda u: {**configs[u], **contribution}, params=params, extras=ParamSet(),
            length=encoded, dtype=np.dtype(np.uint64), check=lambda r: _check_masked(r, encoded, np.dtype(np.uint64)),
        )  # fmt: skip
        return SecureSum(values=decode_exact(total, encoding), **_tally(n, survivors, stages))

    def _aggregate(
        self,
        number: int,
        sampled: Sequence[str],
        masked_config: Callable[[str], Mapping[str, Scalar]],
        *,
        params: ParamSet,
        extras: ParamSet,
        length: int,
        dtype: np.dtype[Any],
        check: Callable[[Reply], None],
    ) -> tuple[np.ndarray, list[str], _Stages]:
        """The six stages; the unmasked modular sum of the survivors' masked vectors, the survivors, the record.

        Each node's masked-input task carries ``params``, ``extras`` and its ``masked_config``;
        ``check`` refuses a masked vector that is not ``length`` elements of ``dtype``.
        """
        n = len(sampled)
        settings = self._settings
        need = minimum_survivors(settings, n, min_replies=self._min_replies)
        stages = _Stages()

        # 1. advertise keys
        adverts: dict[str, AdvertisedKeys] = {}
        signed_adverts: dict[str, bytes] = {}
        gather = self._gather(number, SECAGG_ADVERTISE, {u: self._task(number, SECAGG_ADVERTISE) for u in sampled},
                              need, lambda r: self._check_advert(r, number))  # fmt: skip
        for reply in self._drain(gather, stages, SECAGG_ADVERTISE):
            adverts[reply.node_id] = self._check_advert(reply, number)
            signed_adverts[reply.node_id] = from_array(reply.extras[f"{P}signature"], what="signature")
        u1 = [u for u in sampled if u in adverts]
        chosen = settings.parameters(len(u1))
        graph = neighbour_graph(u1, degree=chosen.degree, seed=self._graph_seed, round=number)
        threshold = chosen.threshold

        # 2. share keys
        base: dict[str, Scalar] = {
            "secagg.nodes": json.dumps(u1),
            "secagg.graph_seed": self._graph_seed,
            "secagg.degree": chosen.degree,
            "secagg.threshold": threshold,
        }
        share_tasks = {
            u: self._task(
                number,
                SECAGG_SHARE,
                config=base,
                extras=_adverts_for(graph, u, adverts, signed_adverts, self._identities),
            )
            for u in u1
        }
        outbox: dict[str, dict[str, np.ndarray]] = {u: {} for u in u1}  # receiver -> sender -> sealed shares
        commitments: dict[str, bytes] = {}
        gather = self._gather(number, SECAGG_SHARE, share_tasks, need, lambda r: _check_shares(r, graph))
        for reply in self._drain(gather, stages, SECAGG_SHARE):
            for peer in graph.neighbours(reply.node_id):
                outbox[peer][reply.node_id] = reply.extras[f"{P}out/{peer}"]
            commitments[reply.node_id] = from_array(reply.extras[f"{P}commitment"], what="commitment", length=32)
        u2 = [u for u in u1 if u in commitments]

        # 3. receive shares: senders whose shares do not open are dropped before anyone masks
        by_index = {graph.index(u): u for u in u1}
        receive_tasks = {
            u: self._task(
                number,
                SECAGG_RECEIVE,
                extras=ParamSet({f"{P}in/{s}": a for s, a in outbox[u].items() if s in commitments}),
            )
            for u in u2
        }
        bad_senders: set[str] = set()
        gather = self._gather(number, SECAGG_RECEIVE, receive_tasks, need, lambda r: _check_received(r, graph))
        for reply in self._drain(gather, stages, SECAGG_RECEIVE):
            for index in reply.extras[f"{P}rejected"].tolist():
                sender = by_index[int(index)]
                bad_senders.add(sender)
                stages.failures.setdefault(
                    sender, f"{SECAGG_SHARE}: sent {reply.node_id} shares that do not open; treated as dropped"
                )
        partners = [u for u in u2 if u in gather.report.accepted and u not in bad_senders]
        del outbox

        # 4. masked input, streamed into one modular sum
        listed_partners = {"secagg.partners": json.dumps(partners)}
        tasks = {
            u: Task(kind=SECAGG_MASKED_INPUT, round=number, run_id=self._run_id, params=params,
                    config={**masked_config(u), **listed_partners}, extras=extras)
            for u in partners
        }  # fmt: skip
        total = np.zeros(length, dtype=dtype)
        gather = self._gather(number, SECAGG_MASKED_INPUT, tasks, need, check)
        for reply in self._drain(gather, stages, SECAGG_MASKED_INPUT):
            np.add(total, reply.params[f"{P}masked"], out=total)
            del reply
        survivors = [u for u in partners if u in gather.report.accepted]

        # 5. consistency: every survivor signs the one survivor set
        listed = {"secagg.survivors": json.dumps(sorted(survivors))}
        signed_bytes = survivors_bytes(run_id=self._run_id, round=number, survivors=survivors)
        signatures: dict[str, np.ndarray] = {}
        gather = self._gather(
            number,
            SECAGG_CONSISTENCY,
            {u: self._task(number, SECAGG_CONSISTENCY, config=listed) for u in survivors},
            need,
            lambda r: self._check_signature(r, signed_bytes),
        )
        for reply in self._drain(gather, stages, SECAGG_CONSISTENCY):
            signatures[f"{P}sig/{reply.node_id}"] = reply.extras[f"{P}signature"]
        if len(signatures) < threshold:
            raise QuorumError(
                f"round {number}: only {len(signatures)} nodes signed the survivor set, fewer than the threshold "
                f"{threshold}; the round fails rather than unmask"
            )

        # 6. unmask
        signers = [u for u in survivors if f"{P}sig/{u}" in signatures]
        self_shares: dict[str, list[Share]] = {u: [] for u in survivors}
        key_shares: dict[str, list[Share]] = {u: [] for u in partners if u not in survivors}
        survivor_set = set(survivors)
        gather = self._gather(
            number,
            SECAGG_UNMASK,
            {
                u: self._task(
                    number, SECAGG_UNMASK, config=listed, extras=_signatures_for(graph, u, signatures, self._identities)
                )
                for u in signers
            },
            need,
            lambda r: _check_unmask(r, graph, survivor_set, set(partners)),
        )
        for reply in self._drain(gather, stages, SECAGG_UNMASK):
            for name, array in reply.extras.items():
                kind, peer = name.removeprefix(P).split("/", 1)
                share = Share.from_bytes(from_array(array, what="share", length=SHARE_BYTES))
                (self_shares if kind == "self" else key_shares)[peer].append(share)

        seeds = self._unmasking_seeds(
            number, graph, survivors, self_shares, key_shares, adverts, commitments, threshold, stages.failures
        )
        chunk = max(1, min(self._block, length))
        Masker(seeds, dtype=total.dtype, chunk_elements=chunk).apply(total, 0)  # one running cipher per seed
        return total, survivors, stages

    # -- stages -------------------------------------------------------------------------------

    def _task(self, number: int, kind: str, *, config: Mapping[str, Scalar] | None = None,
              extras: ParamSet | None = None) -> Task:  # fmt: skip
        return Task(kind=kind, round=number, run_id=self._run_id, config=config or {}, extras=extras or ParamSet())

    def _gather(
        self, number: int, kind: str, tasks: Mapping[str, Task], need: int, check: Callable[[Reply], object]
    ) -> Gather:
        def validate(reply: Reply) -> None:
            try:
                check(reply)
            except Exception as exc:  # whatever a hostile reply trips, the node is dropped, never the round
                raise ValidationError(f"treated as dropped: {type(exc).__name__}: {exc}") from None

        return Gather(
            self._fleet,
            tasks,
            quorum=need,
            timeout=self._timeout,
            validate=validate,
            clock=self._clock,
            label=f"round {number} {kind} (secure aggregation tolerates "
            f"`dropout_fraction` {self._settings.dropout_fraction:g})",
            buffer_bytes=self._buffer_bytes,
        )

    @staticmethod
    def _drain(gather: Gather, stages: _Stages, kind: str) -> Iterator[Reply]:
        """The replies of ``gather``; its report is noted when iteration ends, even by a QuorumError."""
        try:
            yield from gather
        finally:
            stages.note(kind, gather.report)

    def _check_advert(self, reply: Reply, number: int) -> AdvertisedKeys:
        node = reply.node_id
        identity = self._identities.get(node)
        if identity is None:
            raise SecureAggregationError(f"node {node!r} has no registered identity key")
        _only(reply, {f"{P}cipher", f"{P}mask", f"{P}signature"})
        cipher = from_array(reply.extras[f"{P}cipher"], what="cipher key", length=KEY_BYTES)
        mask = from_array(reply.extras[f"{P}mask"], what="mask key", length=KEY_BYTES)
        signature = from_array(reply.extras[f"{P}signature"], what="signature", length=SIGNATURE_BYTES)
        advert = AdvertisedKeys(run_id=self._run_id, round=number, node_id=node, cipher_key=cipher, mask_key=mask)
        verify_keys(advert, signature, identity_key=identity, run_id=self._run_id, round=number, node_id=node)
        probe = X25519PrivateKey.generate()
        for name, key in (("cipher", cipher), ("mask", mask)):
            try:  # a low-order point would make every neighbour refuse the share stage: refuse it here
                probe.exchange(X25519PublicKey.from_public_bytes(key))
            except ValueError:
                raise SecureAggregationError(f"its {name} key is a low-order point") from None
        return advert

    def _check_signature(self, reply: Reply, message: bytes) -> None:
        _only(reply, {f"{P}signature"})
        signature = from_array(reply.extras[f"{P}signature"], what="signature", length=SIGNATURE_BYTES)
        try:
            verify_signature(self._identities[reply.node_id], signature, message)
        except InvalidSignature:
            raise SecureAggregationError("its signature on the survivor set does not verify") from None

    def _unmasking_seeds(
        self,
        number: int,
        graph: NeighbourGraph,
        survivors: Sequence[str],
        self_shares: Mapping[str, list[Share]],
        key_shares: Mapping[str, list[Share]],
        adverts: Mapping[str, AdvertisedKeys],
        commitments: Mapping[str, bytes],
        threshold: int,
        failures: dict[str, str],
    ) -> list[tuple[bytes, int]]:
        """The masks to take off the sum: survivors' self masks, and dropped nodes' pairwise masks on survivors.

        Every rebuilt secret is checked: a self-mask seed against its owner's commitment, a mask
        key against its owner's advert. A holder who revealed a wrong share is found and recorded
        when one more share than the threshold arrived; otherwise the round fails.
        """
        seeds: list[tuple[bytes, int]] = []
        survivor_set = set(survivors)
        holders = {graph.index(u): u for u in graph.ring}
        for node in survivors:
            committed = commitments[node]
            seed = _rebuild(
                number, node, "self-mask seed", self_shares[node], threshold, holders, failures,
                partial(_matches_commitment, committed),
            )  # fmt: skip
            seeds.append((seed, -1))
        for node, shares in key_shares.items():
            partners = [v for v in graph.neighbours(node) if v in survivor_set]
            if not partners:
                continue
            mask_key = adverts[node].mask_key
            secret = _rebuild(
                number, node, "mask key", shares, threshold, holders, failures,
                partial(_matches_key, mask_key),
            )  # fmt: skip
            for peer in partners:
                pair_seed = pairwise_mask_seed(
                    secret, adverts[peer].mask_key, run_id=self._run_id, round=number, node_id=node, peer_id=peer
                )
                seeds.append((pair_seed, -pairwise_sign(peer, node)))
        return seeds


def _matches_commitment(committed: bytes, seed: bytes) -> bool:
    return commitment(seed) == committed


def _matches_key(public_key: bytes, secret: bytes) -> bool:
    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw() == public_key


def _rebuild(
    number: int,
    node: str,
    what: str,
    shares: list[Share],
    threshold: int,
    holders: Mapping[int, str],
    failures: dict[str, str],
    valid: Callable[[bytes], bool],
) -> bytes:
    """The secret of ``node`` from ``shares``, checked by ``valid``; tolerates one wrong share when there is a spare."""
    if len(shares) < threshold:
        raise QuorumError(
            f"round {number}: only {len(shares)} of the {threshold} shares needed to rebuild the {what} of {node!r} "
            "arrived; more nodes dropped out than `dropout_fraction` allows, so the round fails"
        )
    ordered = sorted(shares, key=lambda s: s.x)
    attempts: list[tuple[Share | None, list[Share]]] = [(None, ordered[:threshold])]
    if len(ordered) > threshold:
        attempts += [(left_out, [s for s in ordered if s is not left_out][:threshold]) for left_out in ordered]
    for left_out, chosen in attempts:
        try:
            secret = combine_shares(chosen, threshold=threshold)
        except SecureAggregationError:
            continue
        if valid(secret):
            if left_out is not None:
                holder = holders.get(left_out.x, f"x={left_out.x}")
                failures.setdefault(holder, f"{SECAGG_UNMASK}: revealed a wrong share of the {what} of {node!r}")
            return secret
    raise SecureAggregationError(
        f"round {number}: the shares revealed for the {what} of {node!r} do not rebuild the committed secret (some "
        "neighbours revealed wrong shares); the round fails rather than return a wrong sum"
    )


def _signatures_for(
    graph: NeighbourGraph, node: str, signatures: Mapping[str, np.ndarray], identities: Mapping[str, bytes]
) -> ParamSet:
    """The signatures a node checks before unmasking, those of its neighbours' neighbours (O(k^2), not O(n)),
    with the signers' identity keys."""
    around = {peer for neighbour in graph.neighbours(node) for peer in graph.neighbours(neighbour)}
    arrays: dict[str, np.ndarray] = {}
    for name, array in signatures.items():
        signer = name.removeprefix(f"{P}sig/")
        if signer in around:
            arrays[name] = array
            arrays[f"{P}keys/{signer}/identity"] = to_array(identities[signer])
    return ParamSet(arrays)


def _adverts_for(
    graph: NeighbourGraph,
    node: str,
    adverts: Mapping[str, AdvertisedKeys],
    signatures: Mapping[str, bytes],
    identities: Mapping[str, bytes],
) -> ParamSet:
    """The signed adverts a node needs in the share stage, its own and its neighbours', with the identity
    keys the coordinator holds for them (a node with its own pinned registry checks them against it)."""
    arrays: dict[str, np.ndarray] = {}
    for peer in (node, *graph.neighbours(node)):
        advert = adverts[peer]
        arrays[f"{P}keys/{peer}/cipher"] = to_array(advert.cipher_key)
        arrays[f"{P}keys/{peer}/mask"] = to_array(advert.mask_key)
        arrays[f"{P}keys/{peer}/signature"] = to_array(signatures[peer])
        arrays[f"{P}keys/{peer}/identity"] = to_array(identities[peer])
    return ParamSet(arrays)


def _only(reply: Reply, names: set[str]) -> None:
    got = set(reply.extras)
    if got != names or len(reply.params):
        raise SecureAggregationError(f"its reply carries {sorted(got)[:4]}; expected {sorted(names)[:4]}")


def _check_shares(reply: Reply, graph: NeighbourGraph) -> None:
    expected = {f"{P}out/{peer}" for peer in graph.neighbours(reply.node_id)} | {f"{P}commitment"}
    _only(reply, expected)
    for name in expected:
        from_array(reply.extras[name], what=name, length=32 if name.endswith("commitment") else CIPHERTEXT_BYTES)


def _check_received(reply: Reply, graph: NeighbourGraph) -> None:
    _only(reply, {f"{P}rejected"})
    rejected = reply.extras[f"{P}rejected"]
    if rejected.dtype != np.int64 or rejected.ndim != 1:
        raise SecureAggregationError("its reply must carry the int64 list of senders whose shares it rejected")
    indices = {graph.index(peer) for peer in graph.neighbours(reply.node_id)}
    if not set(rejected.tolist()) <= indices:
        raise SecureAggregationError("it reports rejected shares from nodes that are not its neighbours")


def minimum_survivors(settings: SecureAggregation, n: int, *, min_replies: int) -> int:
    """The fewest nodes whose input a secure round over ``n`` sampled nodes sums; fewer fails the round.

    Distributed DP sizes each node's noise share by it, so the sum holds the whole noise whoever drops out.
    """
    return max(MIN_NODES, min(n, min_replies), n - math.floor(settings.dropout_fraction * n + 1e-9))


def _check_masked(reply: Reply, length: int, dtype: np.dtype[Any]) -> None:
    masked = reply.params.get(f"{P}masked")
    if set(reply.params) != {f"{P}masked"} or masked is None or len(reply.extras):
        raise SecureAggregationError("its reply must carry exactly one masked vector")
    if masked.dtype != dtype or masked.shape != (length,):
        raise SecureAggregationError(f"its masked vector is {masked.dtype}{masked.shape}; expected {dtype}({length},)")


def _tally(n: int, survivors: Sequence[str], stages: _Stages) -> dict[str, Any]:
    """What both kinds of secure round report besides their result."""
    return {
        "survived": len(survivors),
        "dropped": n - len(survivors),
        "survivors": tuple(sorted(survivors)),
        "failures": stages.failures,
        "bytes_sent": stages.bytes_sent,
        "bytes_received": stages.bytes_received,
    }


def _checked_size(number: int, n: int) -> int:
    if n < MIN_NODES:
        raise QuorumError(f"round {number}: secure aggregation needs at least {MIN_NODES} sampled nodes; got {n}")
    return n


def _check_unmask(reply: Reply, graph: NeighbourGraph, survivors: set[str], shared: set[str]) -> None:
    if len(reply.params):
        raise SecureAggregationError("an unmasking reply carries no parameters")
    index = graph.index(reply.node_id)
    neighbours = set(graph.neighbours(reply.node_id))
    for name, array in reply.extras.items():
        kind, _, peer = name.removeprefix(P).partition("/")
        if not name.startswith(P) or kind not in ("self", "key") or peer not in neighbours or peer not in shared:
            raise SecureAggregationError(f"its reply carries an unexpected array {name!r}")
        if (kind == "self") != (peer in survivors):
            raise SecureAggregationError(f"it revealed the wrong kind of share of {peer!r}")
        share = Share.from_bytes(from_array(array, what=name, length=SHARE_BYTES))
        if share.x != index:
            raise SecureAggregationError(f"its share of {peer!r} has x={share.x}; its own index is {index}")


def _decoded(number: int, total: np.ndarray, layout: VectorLayout, encoding: FixedPoint, params: ParamSet) -> Reply:
    """The unmasked sum as one pseudo-reply: the global model plus the weighted mean update, weighted by the total."""
    weight = decode_weight(int(total[layout.weight_index]), encoding=encoding)
    if weight == 0:
        raise QuorumError(f"round {number}: the surviving nodes' weights sum to 0; there is nothing to average")
    model: dict[str, np.ndarray] = {}
    controls: dict[str, np.ndarray] = {}
    for segment in layout.segments:
        part = decode_sum(total[segment.start : segment.start + segment.size], encoding=encoding)
        if segment.weighted:
            base = params[segment.name]
            part /= weight  # the weighted mean update, in place: the model is one float64 pass away
            part += base.reshape(-1)
            model[segment.name] = part.astype(base.dtype).reshape(base.shape)
        else:
            name = segment.name.removeprefix(CONTROL_DELTA_PREFIX)
            controls[segment.name] = part.reshape(params[name].shape)
    return Reply(
        node_id=AGGREGATE_NODE,
        kind=FIT,
        round=number,
        params=ParamSet(model),
        num_examples=weight,
        extras=ParamSet(controls),
    )
