"""The node side of SecAgg+: one handler per stage, and the per-round secrets they keep.

A node built for a secure run mounts :meth:`SecureAggregationNode.handlers` on its ``NodeApp``.
The stages, in order (docs/secure-aggregation.md, "The protocol"):

1. ``secagg.advertise``: fresh X25519 key pairs for the round; their public halves, signed with
   the node's long-term Ed25519 identity key.
2. ``secagg.share``: the node list, graph seed, degree and threshold, plus every listed node's
   signed advert. The node draws the round's graph, checks its neighbours' signatures against
   their registered identity keys (a substituted key is refused: the coordinator vouched for
   it), draws its self-mask seed, Shamir-shares its mask key and seed among its neighbours and
   seals each neighbour's two shares for it; it also commits to the seed.
3. ``secagg.receive``: the sealed shares addressed to it. The node opens them and reports the
   senders whose messages do not open; the coordinator drops those senders before anyone masks.
4. ``secagg.masked_input``: the global model and the nodes to mask with. The node trains, encodes
   its weighted update in fixed point and adds its self mask and one pairwise mask per listed
   neighbour (all of whose shares it holds), block by block. Under differential privacy the
   node's policy admits the task first (``fedlearn.client.node_privacy``), the update is clipped
   before encoding, and under distributed DP discrete Gaussian noise is added to the encoded
   integers before masking, once the encoding is checked to have room for it.
5. ``secagg.consistency``: the survivor set; the node signs it, and never signs another this round.
6. ``secagg.unmask``: the survivor set with at least ``threshold`` valid signatures on it. The
   node reveals, once per round, self-mask shares of surviving neighbours and mask-key shares of
   dropped ones, never both of one peer, and only for a peer ``threshold`` of whose own
   neighbours signed the set.

Any refusal raises SecureAggregationError; ``NodeApp`` turns it into an error reply, so a node
never crashes or hangs on a malformed or cheating request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedlearn.client.node_app import Handler, NodeApp
from fedlearn.client.node_privacy import MaskedSum, dp_request
from fedlearn.core.errors import ConfigError, SecureAggregationError, ValidationError
from fedlearn.core.messages import (
    CONTROL_DELTA_PREFIX,
    FIT,
    SCAFFOLD_KEY,
    SECAGG_ADVERTISE,
    SECAGG_ARRAY_PREFIX,
    SECAGG_CONFIG_PREFIX,
    SECAGG_CONSISTENCY,
    SECAGG_MASKED_INPUT,
    SECAGG_RECEIVE,
    SECAGG_SHARE,
    SECAGG_UNMASK,
    SECURE_CONTRIBUTION_KEY,
    SEED_KEY,
    Reply,
    Task,
)
from fedlearn.core.params import ParamSet
from fedlearn.privacy.aead import CIPHERTEXT_BYTES, ShareMessage, decrypt_shares, encrypt_shares
from fedlearn.privacy.disclosure import plan_disclosure
from fedlearn.privacy.encoding import FixedPoint, check_capacity
from fedlearn.privacy.exact import encode_exact, exact_encoding
from fedlearn.privacy.graph import NeighbourGraph, neighbour_graph
from fedlearn.privacy.keys import (
    KEY_BYTES,
    SIGNATURE_BYTES,
    AdvertisedKeys,
    RoundKeys,
    identity_key,
    pairwise_mask_seed,
    share_key,
    sign_keys,
    verify_keys,
    verify_signature,
)
from fedlearn.privacy.masked_input import masked_input
from fedlearn.privacy.masks import DEFAULT_BLOCK_ELEMENTS, Masker, new_seed, pairwise_sign
from fedlearn.privacy.noise import NoiseSource
from fedlearn.privacy.protocol import (
    VectorLayout,
    commitment,
    encoding_from_config,
    from_array,
    node_list,
    rounding_seed,
    survivors_bytes,
    to_array,
)
from fedlearn.privacy.shamir import split_secret

P = SECAGG_ARRAY_PREFIX


@dataclass(slots=True)
class _RoundSecrets:
    """What one node keeps between the stages of one round; forgotten when the next round starts."""

    run_id: str
    round: int
    keys: RoundKeys
    graph: NeighbourGraph | None = None
    threshold: int = 0
    adverts: dict[str, AdvertisedKeys] = field(default_factory=dict)
    self_seed: bytes | None = None
    held: dict[str, ShareMessage] = field(default_factory=dict)
    received: bool = False
    partners: tuple[str, ...] = ()
    masked: bool = False
    signed: tuple[str, ...] | None = None
    unmasked: bool = False
    share_keys: dict[tuple[str, bytes], bytes] = field(default_factory=dict)


class SecureAggregationNode:
    """One node's secure-aggregation handlers, its identity key and the peers' registered identities.

    ``identity`` is the node's long-term Ed25519 key. ``registry`` pins the raw public identity key
    of every node (in simulation, generated per simulated node; in a deployment, a file the
    federation hands every site): the coordinator's claims about identities are then checked
    against it, so not even a cheating coordinator can substitute a peer's keys. Without it
    (None), the node takes the identity keys the coordinator relays, which protects against
    anyone but the coordinator itself: docs/secure-aggregation.md, "Threat model".
    ``block_elements`` bounds the scratch memory of masking.
    """

    def __init__(
        self,
        identity: Ed25519PrivateKey,
        registry: Mapping[str, bytes] | None = None,
        *,
        block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    ) -> None:
        self._identity = identity
        self._public = identity_key(identity)
        self._registry = None if registry is None else dict(registry)
        self._block = block_elements
        self._round: _RoundSecrets | None = None

    def handlers(self) -> dict[str, Handler]:
        return {
            SECAGG_ADVERTISE: self.advertise,
            SECAGG_SHARE: self.share,
            SECAGG_RECEIVE: self.receive,
            SECAGG_MASKED_INPUT: self.masked_input,
            SECAGG_CONSISTENCY: self.consistency,
            SECAGG_UNMASK: self.unmask,
        }

    # -- stage 1 -----------------------------------------------------------------------------

    def advertise(self, task: Task, node: NodeApp) -> Reply:
        previous = self._round
        if previous is not None and (previous.run_id, previous.round) == (task.run_id, task.round):
            raise SecureAggregationError("this node already advertised keys for this round; it takes part once")
        keys = RoundKeys.generate()
        self._round = _RoundSecrets(run_id=task.run_id, round=task.round, keys=keys)
        advert = keys.advertise(run_id=task.run_id, round=task.round, node_id=node.node_id)
        signature = sign_keys(self._identity, advert)
        extras = {
            f"{P}cipher": to_array(advert.cipher_key),
            f"{P}mask": to_array(advert.mask_key),
            f"{P}signature": to_array(signature),
        }
        return _reply(task, node, extras=extras)

    # -- stage 2 -----------------------------------------------------------------------------

    def share(self, task: Task, node: NodeApp) -> Reply:
        secrets = self._current(task, "share")
        if secrets.graph is not None:
            raise SecureAggregationError("this node already shared its keys this round; it shares once")
        me = node.node_id
        nodes = node_list(task.config.get(f"{SECAGG_CONFIG_PREFIX}nodes"), what="`secagg.nodes`")
        if me not in nodes:
            raise SecureAggregationError("the share request's node list does not include this node")
        degree, threshold = _int(task, "degree"), _int(task, "threshold")
        if threshold < 2 or threshold > degree or 2 * threshold <= degree:
            raise SecureAggregationError(
                f"threshold {threshold} with degree {degree} is unsafe: an honest node needs 2 × threshold > degree "
                "so that no one peer's two secrets can both be rebuilt"
            )
        graph = neighbour_graph(nodes, degree=degree, seed=_int(task, "graph_seed"), round=task.round)
        if self._identity_of(task, me) != self._public:
            raise SecureAggregationError(
                "the identity key the coordinator holds for this node is not this node's own; its peers could not "
                "check its keys (re-register the node's key with `fedlearn nodes identity`)"
            )
        own = self._advert(task, me)
        mine = secrets.keys.advertise(run_id=task.run_id, round=task.round, node_id=me)
        if (own.cipher_key, own.mask_key) != (mine.cipher_key, mine.mask_key):
            raise SecureAggregationError("the coordinator relayed keys for this node that it did not advertise")
        neighbours = graph.neighbours(me)
        adverts = {peer: self._advert(task, peer) for peer in neighbours}
        seed = new_seed()
        xs = [graph.index(peer) for peer in neighbours]
        key_shares = split_secret(secrets.keys.mask_secret(), threshold=threshold, x_values=xs)
        seed_shares = split_secret(seed, threshold=threshold, x_values=xs)
        extras = {f"{P}commitment": to_array(commitment(seed))}
        for peer, key_share, seed_share in zip(neighbours, key_shares, seed_shares, strict=True):
            aead_key = self._share_key(secrets, adverts[peer], me)
            message = ShareMessage(mask_key_share=key_share, self_mask_share=seed_share)
            sealed = encrypt_shares(aead_key, message, run_id=task.run_id, round=task.round, sender=me, receiver=peer)
            extras[f"{P}out/{peer}"] = to_array(sealed)
        secrets.graph, secrets.threshold, secrets.adverts, secrets.self_seed = graph, threshold, adverts, seed
        return _reply(task, node, extras=extras)

    # -- stage 3 -----------------------------------------------------------------------------

    def receive(self, task: Task, node: NodeApp) -> Reply:
        """Open the shares addressed to this node; report the senders whose shares do not open."""
        secrets = self._current(task, "share delivery")
        if secrets.graph is None:
            raise SecureAggregationError("shares were delivered before this node shared its keys")
        if secrets.received:
            raise SecureAggregationError("this node already received its shares this round; it receives once")
        secrets.received = True
        me = node.node_id
        index = secrets.graph.index(me)
        rejected: list[int] = []
        for peer in secrets.graph.neighbours(me):
            sealed = task.extras.get(f"{P}in/{peer}")
            if sealed is None:
                continue  # the peer dropped out before sharing
            try:
                message = decrypt_shares(
                    self._share_key(secrets, secrets.adverts[peer], me),
                    from_array(sealed, what=f"shares from {peer!r}", length=CIPHERTEXT_BYTES),
                    run_id=task.run_id,
                    round=task.round,
                    sender=peer,
                    receiver=me,
                )
                if message.mask_key_share.x != index:
                    raise SecureAggregationError(f"shares from {peer!r} are for index {message.mask_key_share.x}")
                secrets.held[peer] = message
            except SecureAggregationError:
                rejected.append(secrets.graph.index(peer))
        return _reply(task, node, extras={f"{P}rejected": np.array(sorted(rejected), dtype=np.int64)})

    # -- stage 4 -----------------------------------------------------------------------------

    def masked_input(self, task: Task, node: NodeApp) -> Reply:
        secrets = self._current(task, "masked input")
        if secrets.graph is None or secrets.self_seed is None or not secrets.received:
            raise SecureAggregationError("a masked input was asked for before this node shared and received shares")
        if secrets.masked:
            raise SecureAggregationError("this node already sent its masked input this round; it sends one")
        me = node.node_id
        listed = set(node_list(task.config.get(f"{SECAGG_CONFIG_PREFIX}partners"), what="`secagg.partners`"))
        partners = [peer for peer in secrets.graph.neighbours(me) if peer in listed]
        unheld = [peer for peer in partners if peer not in secrets.held]
        if unheld:
            raise SecureAggregationError(
                f"the coordinator asks this node to mask with {unheld}, whose shares it does not hold"
            )
        if len(partners) < secrets.threshold:
            raise SecureAggregationError(
                f"only {len(partners)} neighbours take part, fewer than the threshold {secrets.threshold}; "
                "this node sends no input"
            )
        secrets.masked = True
        secrets.partners = tuple(partners)
        if SECURE_CONTRIBUTION_KEY in task.config:
            masked = self._contribution(task, node, task.config[SECURE_CONTRIBUTION_KEY], secrets, partners, me)
            return _reply(task, node, params={f"{P}masked": masked}, extras={})
        fit_task = Task(
            kind=FIT,
            round=task.round,
            run_id=task.run_id,
            params=task.params,
            config={k: v for k, v in task.config.items() if not k.startswith(SECAGG_CONFIG_PREFIX)},
            extras=ParamSet({k: v for k, v in task.extras.items() if not k.startswith(P)}),
        )
        encoding = encoding_from_config(task.config)
        weighted = task.config.get(f"{SECAGG_CONFIG_PREFIX}weighted", True) is not False
        noise = self._distributed_noise(fit_task, encoding, len(secrets.graph.ring))  # checked before training
        trained = node.train(fit_task, masked=MaskedSum(nodes=len(secrets.graph.ring), weighted=weighted))
        if not trained.ok:
            raise SecureAggregationError(f"training failed: {trained.error}")
        source = None if noise is None else (node.noise(fit_task), noise)
        masked = self._encode(task, trained, secrets, partners, me, encoding=encoding, weighted=weighted, noise=source)
        del trained
        return _reply(task, node, params={f"{P}masked": masked}, extras={})

    @staticmethod
    def _distributed_noise(fit_task: Task, encoding: FixedPoint, nodes: int) -> float | None:
        """The discrete Gaussian sigma (encoded units) distributed DP asks of this node, once it fits the encoding."""
        request = dp_request(fit_task.config)
        if request is None or request.mechanism != "distributed":
            return None
        assert request.noise_stddev is not None
        try:
            check_capacity(nodes, encoding, noise_stddev=request.noise_stddev)
        except ConfigError as exc:
            raise SecureAggregationError(f"this node refuses to add its distributed-DP noise: {exc}") from None
        return request.noise_stddev * 2.0**encoding.fraction_bits

    def _encode(
        self,
        task: Task,
        trained: Reply,
        secrets: _RoundSecrets,
        partners: list[str],
        me: str,
        *,
        encoding: FixedPoint,
        weighted: bool,
        noise: tuple[NoiseSource, float] | None,
    ) -> np.ndarray:
        """The trained update as one encoded, masked vector, encoded (and noised) and masked block by block."""
        scaffold = bool(task.config.get(SCAFFOLD_KEY, False))
        spec = task.params.spec()
        controls = [f"{CONTROL_DELTA_PREFIX}{name}" for name in sorted(spec)] if scaffold else []
        layout = VectorLayout.of(spec, control_names=controls)
        weight = min(trained.num_examples, encoding.max_weight) if weighted else 1
        seed = rounding_seed(
            node_seed=int(task.config.get(SEED_KEY, 0)), run_id=task.run_id, round=task.round, node_id=me
        )
        arrays: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
            segment.name: (trained.params[segment.name], task.params[segment.name])
            if segment.weighted
            else (trained.extras[segment.name], None)
            for segment in layout.segments
        }
        return masked_input(
            layout,
            arrays,
            weight=weight,
            encoding=encoding,
            rounding_seed=seed,
            masks=_mask_seeds(task, secrets, partners, me),
            block_elements=self._block,
            noise=noise,
        )

    def _contribution(
        self, task: Task, node: NodeApp, kind: object, secrets: _RoundSecrets, partners: list[str], me: str
    ) -> np.ndarray:
        """The vector the node's ``kind`` handler computes, encoded exactly and masked: never sent in the clear."""
        if not isinstance(kind, str) or kind == FIT or kind.startswith(SECAGG_CONFIG_PREFIX):
            raise SecureAggregationError(f"`{SECURE_CONTRIBUTION_KEY}` must name an analytics task kind; got {kind!r}")
        config = {k: v for k, v in task.config.items() if not k.startswith(SECAGG_CONFIG_PREFIX)}
        inner = Task(kind=kind, round=task.round, run_id=task.run_id, params=task.params,
                     config={**config, SECURE_CONTRIBUTION_KEY: True})  # fmt: skip
        answered = node.handle(inner)
        if not answered.ok:
            raise SecureAggregationError(f"{kind} failed: {answered.error}")
        vector = answered.params.get("vector")
        if set(answered.params) != {"vector"} or vector is None or vector.dtype != np.float64 or vector.ndim != 1:
            raise SecureAggregationError(f"{kind} must reply one float64 vector named `vector`")
        try:
            encoded = encode_exact(vector, exact_encoding(_int(task, "max_nodes")))
        except (ValidationError, ConfigError) as exc:
            raise SecureAggregationError(f"{kind}: {exc}") from None
        return self._masked(encoded, _mask_seeds(task, secrets, partners, me))

    def _masked(self, vector: np.ndarray, seeds: list[tuple[bytes, int]]) -> np.ndarray:
        """``vector`` with the masks of ``seeds`` added in place, in one pass of one running cipher per seed."""
        return Masker(seeds, dtype=vector.dtype, chunk_elements=self._block).apply(vector, 0)

    # -- stage 5 -----------------------------------------------------------------------------

    def consistency(self, task: Task, node: NodeApp) -> Reply:
        secrets = self._current(task, "consistency check")
        if not secrets.masked:
            raise SecureAggregationError("a survivor set was sent before this node sent its masked input")
        survivors = tuple(sorted(node_list(task.config.get(f"{SECAGG_CONFIG_PREFIX}survivors"), what="survivors")))
        assert secrets.graph is not None
        if not set(survivors) <= set(secrets.graph.ring) or len(survivors) < secrets.threshold:
            raise SecureAggregationError(
                f"the survivor set must name at least {secrets.threshold} of the round's nodes and no others"
            )
        if secrets.signed is not None and secrets.signed != survivors:
            raise SecureAggregationError(
                "the coordinator asked this node to sign a second, different survivor set this round; it signs one"
            )
        secrets.signed = survivors
        signature = self._identity.sign(survivors_bytes(run_id=task.run_id, round=task.round, survivors=survivors))
        return _reply(task, node, extras={f"{P}signature": to_array(signature)})

    # -- stage 6 -----------------------------------------------------------------------------

    def unmask(self, task: Task, node: NodeApp) -> Reply:
        secrets = self._current(task, "unmasking")
        if secrets.signed is None:
            raise SecureAggregationError("unmasking was asked for before this node signed a survivor set")
        if secrets.unmasked:
            raise SecureAggregationError("this node already answered an unmasking request this round; it answers once")
        survivors = tuple(sorted(node_list(task.config.get(f"{SECAGG_CONFIG_PREFIX}survivors"), what="survivors")))
        if survivors != secrets.signed:
            raise SecureAggregationError("the unmasking request names another survivor set than the one signed")
        message = survivors_bytes(run_id=task.run_id, round=task.round, survivors=survivors)
        signers: set[str] = set()
        for signer in survivors:
            array = task.extras.get(f"{P}sig/{signer}")
            if array is None:
                continue
            signature = from_array(array, what=f"signature of {signer!r}", length=SIGNATURE_BYTES)
            try:
                verify_signature(self._identity_of(task, signer), signature, message)
            except InvalidSignature:
                raise SecureAggregationError(
                    f"the signature of {signer!r} on the survivor set does not verify; refusing to unmask"
                ) from None
            signers.add(signer)
        if len(signers) < secrets.threshold:
            raise SecureAggregationError(
                f"only {len(signers)} valid signatures on the survivor set, fewer than the threshold "
                f"{secrets.threshold}; the nodes may have been told different sets, so this node reveals nothing"
            )
        survived = [peer for peer in secrets.partners if peer in survivors]
        dropped = [peer for peer in secrets.partners if peer not in survivors]
        plan = plan_disclosure(held=secrets.partners, survivors=survived, dropped=dropped, threshold=secrets.threshold)
        secrets.unmasked = True
        # A peer's secrets are revealed only when `threshold` of the peer's own neighbours signed this very
        # set: its honest neighbours sign one set each, and 2t > k + c, so no second set can gather as many.
        graph = secrets.graph
        assert graph is not None
        vouched = {
            peer for peer in secrets.partners if len(signers.intersection(graph.neighbours(peer))) >= secrets.threshold
        }
        extras = {
            f"{P}self/{peer}": to_array(secrets.held[peer].self_mask_share.to_bytes())
            for peer in plan.self_mask_shares_of
            if peer in vouched
        }
        for peer in plan.mask_key_shares_of:
            if peer in vouched:
                extras[f"{P}key/{peer}"] = to_array(secrets.held[peer].mask_key_share.to_bytes())
        return _reply(task, node, extras=extras)

    # -- helpers -----------------------------------------------------------------------------

    def _current(self, task: Task, stage: str) -> _RoundSecrets:
        secrets = self._round
        if secrets is None or (secrets.run_id, secrets.round) != (task.run_id, task.round):
            raise SecureAggregationError(f"{stage} for round {task.round} came before this node advertised keys for it")
        return secrets

    def _identity_of(self, task: Task, node_id: str) -> bytes:
        """``node_id``'s identity key: the pinned one, which the coordinator's claim must match, or the claim."""
        relayed = task.extras.get(f"{P}keys/{node_id}/identity")
        claimed = None if relayed is None else from_array(relayed, what=f"identity of {node_id!r}", length=KEY_BYTES)
        if self._registry is None:
            if claimed is None:
                raise SecureAggregationError(f"the share request lacks the identity key of {node_id!r}")
            return claimed
        pinned = self._registry.get(node_id)
        if pinned is None:
            raise SecureAggregationError(f"node {node_id!r} is not in this node's pinned identity registry")
        if claimed is not None and claimed != pinned:
            raise SecureAggregationError(
                f"the coordinator vouches for an identity key of {node_id!r} that differs from the pinned one: "
                "it substituted a key, or the registries disagree"
            )
        return pinned

    def _advert(self, task: Task, peer: str) -> AdvertisedKeys:
        arrays = [task.extras.get(f"{P}keys/{peer}/{part}") for part in ("cipher", "mask", "signature")]
        if any(a is None for a in arrays):
            raise SecureAggregationError(f"the share request lacks the advertised keys of {peer!r}")
        cipher, mask, signature = (
            from_array(a, what=f"advert of {peer!r}", length=n)  # type: ignore[arg-type]
            for a, n in zip(arrays, (KEY_BYTES, KEY_BYTES, SIGNATURE_BYTES), strict=True)
        )
        advert = AdvertisedKeys(run_id=task.run_id, round=task.round, node_id=peer, cipher_key=cipher, mask_key=mask)
        return verify_keys(
            advert,
            signature,
            identity_key=self._identity_of(task, peer),
            run_id=task.run_id,
            round=task.round,
            node_id=peer,
        )

    @staticmethod
    def _share_key(secrets: _RoundSecrets, peer: AdvertisedKeys, me: str) -> bytes:
        """The pair's share key, agreed once a round: sealing and opening the shares use the same one."""
        key = secrets.share_keys.get((peer.node_id, peer.cipher_key))
        if key is None:
            key = share_key(
                secrets.keys.cipher,
                peer.cipher_key,
                run_id=secrets.run_id,
                round=secrets.round,
                node_id=me,
                peer_id=peer.node_id,
            )
            secrets.share_keys[(peer.node_id, peer.cipher_key)] = key
        return key


def _mask_seeds(task: Task, secrets: _RoundSecrets, partners: list[str], me: str) -> list[tuple[bytes, int]]:
    """This node's self-mask seed (added) and one pairwise seed per partner, with the pair's sign."""
    pairwise = [
        (
            pairwise_mask_seed(secrets.keys.mask, secrets.adverts[peer].mask_key, run_id=task.run_id,
                               round=task.round, node_id=me, peer_id=peer),
            pairwise_sign(me, peer),
        )
        for peer in partners
    ]  # fmt: skip
    return [(secrets.self_seed or b"", 1), *pairwise]


def _int(task: Task, name: str) -> int:
    value = task.config.get(f"{SECAGG_CONFIG_PREFIX}{name}")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SecureAggregationError(f"`secagg.{name}` must be a non-negative integer; got {value!r}")
    return value


def _reply(
    task: Task, node: NodeApp, *, params: Mapping[str, np.ndarray] | None = None, extras: Mapping[str, np.ndarray]
) -> Reply:
    return Reply(
        node_id=node.node_id,
        kind=task.kind,
        round=task.round,
        params=ParamSet(params or {}),
        extras=ParamSet(extras),
    )
