"""Keys of secure aggregation: fresh X25519 pairs each round, pairwise agreement, signed adverts.

Each round a node makes two fresh X25519 key pairs (:class:`RoundKeys`), as in Bonawitz et al.
2017: ``cipher`` (their c_u) agrees the keys that encrypt the shares two nodes send each other
through the coordinator, and ``mask`` (their s_u) agrees the seeds of the pairwise masks. Only
the ``mask`` private key is ever Shamir-shared, so that the coordinator can remove the masks of
a node that drops out; reconstructing it must not also open the shares that node received,
which is why the two pairs are separate and an advert with the same key twice is refused.

A shared secret is X25519 followed by HKDF-SHA256 whose ``info`` binds the purpose (mask seed
or share key, two different keys from two different pairs), the run id, the round and the two
node ids in sorted order, so both ends derive the same key and no key is valid in another run,
round, pair or purpose.

Against a coordinator that substitutes keys, each node signs its advert (run id, round, node
id and both public keys; :class:`AdvertisedKeys`) with its long-term Ed25519 identity key,
whose public half was registered when the node enrolled. :func:`verify_keys` checks the
signature and that the advert is for the run, round and node expected, so an advert replayed
from another round or relabelled as another node's is refused too.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedlearn.core.checks import check_int
from fedlearn.core.errors import ConfigError, SecureAggregationError
from fedlearn.privacy.framing import canonical

KEY_BYTES = 32
"""Length of a raw X25519 or Ed25519 key, public or private, and of every derived key."""

SIGNATURE_BYTES = 64
"""Length of an Ed25519 signature."""

KeyPurpose = Literal["mask-seed", "share-key"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AdvertisedKeys:
    """The public keys a node advertises for one round, and the canonical bytes it signs."""

    run_id: str
    round: int
    node_id: str
    cipher_key: bytes
    """Raw X25519 public key that agrees share-encryption keys (c_u)."""
    mask_key: bytes
    """Raw X25519 public key that agrees pairwise mask seeds (s_u)."""

    def __post_init__(self) -> None:
        check_int("round", self.round)
        for name in ("cipher_key", "mask_key"):
            key = getattr(self, name)
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise SecureAggregationError(
                    f"`{name}` of node {self.node_id!r} must be {KEY_BYTES} bytes; got {_describe(key)}"
                )
        if self.cipher_key == self.mask_key:
            raise SecureAggregationError(
                f"node {self.node_id!r} advertised the same key as `cipher_key` and `mask_key`; they must differ, "
                "or reconstructing its mask key would open the shares it received"
            )

    def to_bytes(self) -> bytes:
        """The canonical bytes that are signed: run id, round, node id, then both keys."""
        return canonical("advertised-keys", self.run_id, self.round, self.node_id, self.cipher_key, self.mask_key)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundKeys:
    """A node's two X25519 key pairs for one round; make fresh ones with :meth:`generate`."""

    cipher: X25519PrivateKey
    mask: X25519PrivateKey

    @classmethod
    def generate(cls) -> RoundKeys:
        """Two fresh key pairs from the operating system's secure random source (through OpenSSL)."""
        return cls(cipher=X25519PrivateKey.generate(), mask=X25519PrivateKey.generate())

    def advertise(self, *, run_id: str, round: int, node_id: str) -> AdvertisedKeys:
        """The public halves, labelled with the run, round and node they belong to."""
        return AdvertisedKeys(
            run_id=run_id,
            round=round,
            node_id=node_id,
            cipher_key=self.cipher.public_key().public_bytes_raw(),
            mask_key=self.mask.public_key().public_bytes_raw(),
        )

    def mask_secret(self) -> bytes:
        """The raw 32-byte ``mask`` private key: the secret a node Shamir-shares with its neighbours."""
        return self.mask.private_bytes_raw()


def generate_identity() -> Ed25519PrivateKey:
    """A node's long-term Ed25519 identity key, made once at enrollment; its public half is registered."""
    return Ed25519PrivateKey.generate()


def identity_key(identity: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public half of ``identity``: what enrollment registers for the node."""
    return identity.public_key().public_bytes_raw()


def sign_keys(identity: Ed25519PrivateKey, keys: AdvertisedKeys) -> bytes:
    """The Ed25519 signature of ``keys``' canonical bytes by the node's identity key."""
    return identity.sign(keys.to_bytes())


def verify_keys(
    keys: AdvertisedKeys, signature: bytes, *, identity_key: bytes, run_id: str, round: int, node_id: str
) -> AdvertisedKeys:
    """``keys`` if they are ``node_id``'s adverts for this run and round, signed by its registered identity.

    Raises SecureAggregationError naming the node when the advert is for another run, round or
    node (a replayed or relabelled advert) or when the signature does not verify (a substituted key).
    """
    expected = {"run_id": run_id, "round": round, "node_id": node_id}
    for name, value in expected.items():
        got = getattr(keys, name)
        if got != value:
            raise SecureAggregationError(
                f"advertised keys for node {node_id!r} carry `{name}` {got!r}; expected {value!r} "
                "(an advert replayed from elsewhere or relabelled by the coordinator)"
            )
    if not isinstance(identity_key, bytes) or len(identity_key) != KEY_BYTES:
        raise ConfigError(f"`identity_key` must be {KEY_BYTES} bytes; got {_describe(identity_key)}")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
        raise SecureAggregationError(
            f"signature on the keys of node {node_id!r} must be {SIGNATURE_BYTES} bytes; got {_describe(signature)}"
        )
    try:
        verify_signature(identity_key, signature, keys.to_bytes())
    except InvalidSignature:
        raise SecureAggregationError(
            f"the keys advertised for node {node_id!r} are not signed by its registered identity key; "
            "they were altered or substituted, so treat the node as dropped"
        ) from None
    return keys


def verify_signature(identity_key: bytes, signature: bytes, message: bytes) -> None:
    """Check the Ed25519 ``signature`` of ``message`` by the raw public ``identity_key``; InvalidSignature if wrong.

    What it answers is exactly what Ed25519 verification answers. A signature that verified is
    remembered, by the SHA-256 digest of key, signature and message, and the same three again
    are answered from memory: in a simulation every node runs in one process, and each of a
    node's neighbours checks the same advert and the same signature on the survivor set that
    the coordinator checked (about 8,000 checks a round of 100 nodes, of 200 distinct ones).
    Only successes are remembered and only for the very same bytes, so nothing that would fail
    ever passes (a different key, signature or message would need a SHA-256 collision); the
    memory holds public data only, and at most :data:`VERIFIED_LIMIT` digests.
    """
    digest = None
    if (
        isinstance(identity_key, bytes)
        and isinstance(signature, bytes)
        and isinstance(message, bytes)
        and len(identity_key) == KEY_BYTES  # fixed lengths: the concatenation splits one way only
        and len(signature) == SIGNATURE_BYTES
    ):
        digest = hashlib.sha256(identity_key + signature + message).digest()
        if digest in _verified:
            return
    Ed25519PublicKey.from_public_bytes(identity_key).verify(signature, message)
    if digest is not None:
        with _verified_lock:
            if len(_verified) >= VERIFIED_LIMIT:
                del _verified[next(iter(_verified))]  # the oldest
            _verified[digest] = None


VERIFIED_LIMIT = 1 << 14
"""How many verified signatures :func:`verify_signature` remembers (32 bytes each)."""

_verified: dict[bytes, None] = {}
_verified_lock = threading.Lock()


def pairwise_mask_seed(
    private_key: X25519PrivateKey | bytes, peer_key: bytes, *, run_id: str, round: int, node_id: str, peer_id: str
) -> bytes:
    """The 32-byte seed of the pairwise mask between ``node_id`` and ``peer_id``.

    ``private_key`` is ``node_id``'s ``mask`` key, or its raw bytes once reconstructed from shares
    after the node dropped out; ``peer_key`` is the peer's advertised ``mask_key``. Both ends get
    the same seed.
    """
    return derive_key(
        private_key, peer_key, purpose="mask-seed", run_id=run_id, round=round, node_id=node_id, peer_id=peer_id
    )


def share_key(
    private_key: X25519PrivateKey, peer_key: bytes, *, run_id: str, round: int, node_id: str, peer_id: str
) -> bytes:
    """The 32-byte AEAD key for the shares ``node_id`` and ``peer_id`` send each other (both directions).

    ``private_key`` is ``node_id``'s ``cipher`` key and ``peer_key`` the peer's ``cipher_key``.
    """
    return derive_key(
        private_key, peer_key, purpose="share-key", run_id=run_id, round=round, node_id=node_id, peer_id=peer_id
    )


def derive_key(
    private_key: X25519PrivateKey | bytes,
    peer_key: bytes,
    *,
    purpose: KeyPurpose,
    run_id: str,
    round: int,
    node_id: str,
    peer_id: str,
) -> bytes:
    """X25519 between the two keys, then HKDF-SHA256 to 32 bytes with :func:`key_info` as ``info``."""
    info = key_info(purpose=purpose, run_id=run_id, round=round, node_id=node_id, peer_id=peer_id)
    if isinstance(private_key, bytes):
        if len(private_key) != KEY_BYTES:
            raise SecureAggregationError(
                f"private key of node {node_id!r} must be {KEY_BYTES} bytes; got {_describe(private_key)}"
            )
        private_key = X25519PrivateKey.from_private_bytes(private_key)
    if not isinstance(peer_key, bytes) or len(peer_key) != KEY_BYTES:
        raise SecureAggregationError(
            f"public key of node {peer_id!r} must be {KEY_BYTES} bytes; got {_describe(peer_key)}"
        )
    try:
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(peer_key))
    except ValueError:  # a low-order point gives the all-zero secret, which OpenSSL refuses
        raise SecureAggregationError(
            f"public key of node {peer_id!r} is a low-order point; refuse it and treat the node as dropped"
        ) from None
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(shared)


def key_info(*, purpose: KeyPurpose, run_id: str, round: int, node_id: str, peer_id: str) -> bytes:
    """HKDF ``info``: purpose, run id, round and the two node ids sorted, so either end derives it alike."""
    if purpose not in ("mask-seed", "share-key"):
        raise ConfigError(f"`purpose` must be one of mask-seed, share-key; got {purpose!r}")
    if node_id == peer_id:
        raise SecureAggregationError(f"node {node_id!r} cannot agree a key with itself; the peer must be another node")
    first, second = sorted((node_id, peer_id))
    return canonical(f"key-agreement/{purpose}", run_id, check_int("round", round), first, second)


def _describe(value: object) -> str:
    return f"{len(value)} bytes" if isinstance(value, bytes) else f"{type(value).__name__}"
