"""Round keys, pairwise agreement and signed adverts: known answers, properties and attacks."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import fedlearn.privacy.keys as keys_module
from fedlearn.core.errors import ConfigError, SecureAggregationError
from fedlearn.privacy.framing import canonical
from fedlearn.privacy.keys import (
    AdvertisedKeys,
    RoundKeys,
    derive_key,
    generate_identity,
    identity_key,
    key_info,
    pairwise_mask_seed,
    share_key,
    sign_keys,
    verify_keys,
    verify_signature,
)

# RFC 7748, section 6.1.
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PRIVATE = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUBLIC = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

CONTEXT = {"run_id": "run-1", "round": 3}


def _advert(keys: RoundKeys, node_id: str = "alice", **overrides: object) -> AdvertisedKeys:
    return dataclasses.replace(keys.advertise(node_id=node_id, **CONTEXT), **overrides)  # type: ignore[arg-type]


def test_x25519_known_answer_rfc7748() -> None:
    alice = X25519PrivateKey.from_private_bytes(ALICE_PRIVATE)
    bob = X25519PrivateKey.from_private_bytes(BOB_PRIVATE)

    assert alice.public_key().public_bytes_raw() == ALICE_PUBLIC
    assert bob.public_key().public_bytes_raw() == BOB_PUBLIC
    assert alice.exchange(bob.public_key()) == SHARED


def test_hkdf_sha256_known_answer_rfc5869_case_1() -> None:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=42,
        salt=bytes.fromhex("000102030405060708090a0b0c"),
        info=bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
    )

    okm = hkdf.derive(b"\x0b" * 22)

    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")


def test_ed25519_known_answer_rfc8032_test_1() -> None:
    secret = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    key = Ed25519PrivateKey.from_private_bytes(secret)

    assert identity_key(key).hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert key.sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


def test_derived_key_is_x25519_then_hkdf_with_the_bound_info() -> None:
    info = canonical("key-agreement/mask-seed", "run-1", 3, "alice", "bob")
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(SHARED)

    seed = pairwise_mask_seed(ALICE_PRIVATE, BOB_PUBLIC, node_id="alice", peer_id="bob", **CONTEXT)

    assert seed == expected


def test_both_ends_derive_the_same_key() -> None:
    a, b = RoundKeys.generate(), RoundKeys.generate()
    pa, pb = _advert(a, "alice"), _advert(b, "bob")

    assert pairwise_mask_seed(a.mask, pb.mask_key, node_id="alice", peer_id="bob", **CONTEXT) == pairwise_mask_seed(
        b.mask, pa.mask_key, node_id="bob", peer_id="alice", **CONTEXT
    )
    assert share_key(a.cipher, pb.cipher_key, node_id="alice", peer_id="bob", **CONTEXT) == share_key(
        b.cipher, pa.cipher_key, node_id="bob", peer_id="alice", **CONTEXT
    )


def test_reconstructed_mask_key_bytes_give_the_same_seed() -> None:
    a, b = RoundKeys.generate(), RoundKeys.generate()
    peer_key = _advert(b, "bob").mask_key

    from_key = pairwise_mask_seed(a.mask, peer_key, node_id="alice", peer_id="bob", **CONTEXT)
    from_bytes = pairwise_mask_seed(a.mask_secret(), peer_key, node_id="alice", peer_id="bob", **CONTEXT)

    assert from_key == from_bytes


def test_purposes_give_different_keys_from_the_same_pair() -> None:
    common = {"node_id": "alice", "peer_id": "bob", **CONTEXT}

    seed = derive_key(ALICE_PRIVATE, BOB_PUBLIC, purpose="mask-seed", **common)  # type: ignore[arg-type]
    key = derive_key(ALICE_PRIVATE, BOB_PUBLIC, purpose="share-key", **common)  # type: ignore[arg-type]

    assert seed != key


@pytest.mark.parametrize(
    "change", [{"run_id": "run-2"}, {"round": 4}, {"peer_id": "carol"}, {"node_id": "dave"}], ids=str
)
def test_key_changes_with_run_round_and_pair(change: dict[str, object]) -> None:
    base = {"node_id": "alice", "peer_id": "bob", **CONTEXT}

    assert pairwise_mask_seed(ALICE_PRIVATE, BOB_PUBLIC, **base) != pairwise_mask_seed(  # type: ignore[arg-type]
        ALICE_PRIVATE,
        BOB_PUBLIC,
        **{**base, **change},  # type: ignore[arg-type]
    )


def test_key_info_is_order_independent() -> None:
    assert key_info(purpose="share-key", node_id="a", peer_id="b", **CONTEXT) == key_info(  # type: ignore[arg-type]
        purpose="share-key",
        node_id="b",
        peer_id="a",
        **CONTEXT,  # type: ignore[arg-type]
    )


def test_key_agreement_with_oneself_is_refused() -> None:
    with pytest.raises(SecureAggregationError, match="itself"):
        pairwise_mask_seed(ALICE_PRIVATE, BOB_PUBLIC, node_id="a", peer_id="a", **CONTEXT)


def test_low_order_public_key_is_refused() -> None:
    with pytest.raises(SecureAggregationError, match="low-order"):
        share_key(X25519PrivateKey.generate(), bytes(32), node_id="a", peer_id="b", **CONTEXT)


def test_round_keys_are_fresh_each_time() -> None:
    first, second = _advert(RoundKeys.generate()), _advert(RoundKeys.generate())

    assert len({first.cipher_key, first.mask_key, second.cipher_key, second.mask_key}) == 4


def test_signed_advert_verifies() -> None:
    identity, keys = generate_identity(), _advert(RoundKeys.generate())

    verified = verify_keys(
        keys, sign_keys(identity, keys), identity_key=identity_key(identity), node_id="alice", **CONTEXT
    )

    assert verified == keys


def test_bad_signature_is_refused() -> None:
    identity, keys = generate_identity(), _advert(RoundKeys.generate())
    signature = bytearray(sign_keys(identity, keys))
    signature[0] ^= 1

    with pytest.raises(SecureAggregationError, match="not signed by its registered identity"):
        verify_keys(keys, bytes(signature), identity_key=identity_key(identity), node_id="alice", **CONTEXT)


def test_substituted_key_is_refused() -> None:
    identity, keys = generate_identity(), _advert(RoundKeys.generate())
    signature = sign_keys(identity, keys)
    coordinators = _advert(RoundKeys.generate())  # the coordinator swaps in a mask key of its own
    forged = dataclasses.replace(keys, mask_key=coordinators.mask_key)

    with pytest.raises(SecureAggregationError, match="altered or substituted"):
        verify_keys(forged, signature, identity_key=identity_key(identity), node_id="alice", **CONTEXT)


def test_advert_signed_by_another_identity_is_refused() -> None:
    alice, mallory = generate_identity(), generate_identity()
    keys = _advert(RoundKeys.generate())

    with pytest.raises(SecureAggregationError, match="not signed"):
        verify_keys(keys, sign_keys(mallory, keys), identity_key=identity_key(alice), node_id="alice", **CONTEXT)


@pytest.mark.parametrize("field", ["round", "run_id", "node_id"])
def test_advert_replayed_or_relabelled_is_refused(field: str) -> None:
    identity, keys = generate_identity(), _advert(RoundKeys.generate())
    signature = sign_keys(identity, keys)
    expected = {"node_id": "alice", **CONTEXT, field: {"round": 4, "run_id": "run-2", "node_id": "bob"}[field]}

    with pytest.raises(SecureAggregationError, match=f"`{field}`"):
        verify_keys(keys, signature, identity_key=identity_key(identity), **expected)  # type: ignore[arg-type]


def test_a_remembered_signature_still_verifies() -> None:
    identity = generate_identity()
    message = b"survivors"
    signature = identity.sign(message)

    verify_signature(identity_key(identity), signature, message)
    verify_signature(identity_key(identity), signature, message)  # answered from memory


@pytest.mark.parametrize("change", ["key", "signature", "message"])
def test_a_remembered_signature_vouches_for_nothing_else(change: str) -> None:
    alice, mallory = generate_identity(), generate_identity()
    message = b"survivors: a, b, c"
    signature = alice.sign(message)
    verify_signature(identity_key(alice), signature, message)
    key, other_signature, other_message = identity_key(alice), bytearray(signature), message
    if change == "key":
        key = identity_key(mallory)
    elif change == "signature":
        other_signature[5] ^= 1
    else:
        other_message = b"survivors: a, b"

    with pytest.raises(InvalidSignature):
        verify_signature(key, bytes(other_signature), other_message)


def test_a_failed_verification_is_not_remembered() -> None:
    identity = generate_identity()
    forged = bytes(64)

    for _ in range(2):
        with pytest.raises(InvalidSignature):
            verify_signature(identity_key(identity), forged, b"message")


def test_remembered_signatures_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys_module, "VERIFIED_LIMIT", 3)
    monkeypatch.setattr(keys_module, "_verified", {})
    identity = generate_identity()

    for i in range(10):
        message = bytes([i])
        verify_signature(identity_key(identity), identity.sign(message), message)

    assert len(keys_module._verified) == 3


def test_advert_with_one_key_twice_is_refused() -> None:
    keys = _advert(RoundKeys.generate())

    with pytest.raises(SecureAggregationError, match="must differ"):
        dataclasses.replace(keys, cipher_key=keys.mask_key)


def test_advert_with_short_key_is_refused() -> None:
    with pytest.raises(SecureAggregationError, match="`mask_key` of node 'alice' must be 32 bytes; got 31 bytes"):
        AdvertisedKeys(run_id="r", round=0, node_id="alice", cipher_key=bytes(32), mask_key=bytes(31))


def test_signature_of_wrong_length_is_refused() -> None:
    identity, keys = generate_identity(), _advert(RoundKeys.generate())

    with pytest.raises(SecureAggregationError, match="64 bytes; got 3 bytes"):
        verify_keys(keys, b"abc", identity_key=identity_key(identity), node_id="alice", **CONTEXT)


def test_unknown_purpose_is_refused() -> None:
    with pytest.raises(ConfigError, match="`purpose`"):
        key_info(purpose="other", node_id="a", peer_id="b", **CONTEXT)  # type: ignore[arg-type]
