"""Sealed share messages: known answer for AES-256-GCM, round trip, layout, and every tampering refused."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedlearn.core.errors import ConfigError, SecureAggregationError
from fedlearn.privacy.aead import (
    CIPHERTEXT_BYTES,
    NONCE_BYTES,
    VERSION,
    ShareMessage,
    decrypt_shares,
    encrypt_shares,
)
from fedlearn.privacy.framing import canonical
from fedlearn.privacy.shamir import Share, split_secret

KEY = bytes(range(32))
ROUTE = {"run_id": "run-1", "round": 7, "sender": "alice", "receiver": "bob"}


def _message(x: int = 4) -> ShareMessage:
    return ShareMessage(
        mask_key_share=split_secret(os.urandom(32), threshold=2, x_values=[x, x + 1])[0],
        self_mask_share=split_secret(os.urandom(32), threshold=2, x_values=[x, x + 1])[0],
    )


def test_aes256_gcm_known_answer_nist_test_case_16() -> None:
    # McGrew and Viega, "The Galois/Counter Mode of Operation", test case 16 (AES-256, 60-byte plaintext, AAD).
    key = bytes.fromhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
    nonce = bytes.fromhex("cafebabefacedbaddecaf888")
    plaintext = bytes.fromhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
    )
    aad = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")

    sealed = AESGCM(key).encrypt(nonce, plaintext, aad)

    assert sealed.hex() == (
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
        "76fc6ece0f4e1768cddf8853bb2d551b"
    )


def test_round_trip_gives_the_message_back() -> None:
    message = _message()

    assert decrypt_shares(KEY, encrypt_shares(KEY, message, **ROUTE), **ROUTE) == message


def test_sealed_layout_is_version_nonce_then_gcm_with_bound_associated_data() -> None:
    message = _message()

    sealed = encrypt_shares(KEY, message, **ROUTE)

    nonce = sealed[1 : 1 + NONCE_BYTES]
    associated = canonical("share-message", "run-1", 7, "alice", "bob") + bytes([VERSION])
    assert len(sealed) == CIPHERTEXT_BYTES and sealed[0] == VERSION
    assert AESGCM(KEY).decrypt(nonce, sealed[1 + NONCE_BYTES :], associated) == message.to_bytes()


def test_each_message_gets_a_fresh_nonce() -> None:
    message = _message()

    first, second = encrypt_shares(KEY, message, **ROUTE), encrypt_shares(KEY, message, **ROUTE)

    assert first[1 : 1 + NONCE_BYTES] != second[1 : 1 + NONCE_BYTES]


@pytest.mark.parametrize("position", [0, 1, 20, CIPHERTEXT_BYTES - 1])
def test_tampered_ciphertext_is_refused(position: int) -> None:
    sealed = bytearray(encrypt_shares(KEY, _message(), **ROUTE))
    sealed[position] ^= 0x40

    with pytest.raises(SecureAggregationError, match="'alice' to 'bob'"):
        decrypt_shares(KEY, bytes(sealed), **ROUTE)


@pytest.mark.parametrize(
    "change",
    [{"run_id": "run-2"}, {"round": 8}, {"sender": "bob", "receiver": "alice"}, {"sender": "carol"}],
    ids=str,
)
def test_message_replayed_to_another_context_is_refused(change: dict[str, object]) -> None:
    sealed = encrypt_shares(KEY, _message(), **ROUTE)

    with pytest.raises(SecureAggregationError, match="does not authenticate"):
        decrypt_shares(KEY, sealed, **{**ROUTE, **change})  # type: ignore[arg-type]


def test_message_under_another_key_is_refused() -> None:
    sealed = encrypt_shares(KEY, _message(), **ROUTE)

    with pytest.raises(SecureAggregationError, match="treat 'alice' as dropped"):
        decrypt_shares(bytes(32), sealed, **ROUTE)


@pytest.mark.parametrize("sealed", [b"", b"\x01" * 10, b"\x02" + bytes(CIPHERTEXT_BYTES - 1)])
def test_garbage_is_refused(sealed: bytes) -> None:
    with pytest.raises(SecureAggregationError, match=f"must be {CIPHERTEXT_BYTES} bytes of version 1"):
        decrypt_shares(KEY, sealed, **ROUTE)


def test_message_with_shares_for_two_holders_is_refused() -> None:
    with pytest.raises(SecureAggregationError, match="one holder"):
        ShareMessage(mask_key_share=Share(1, 1), self_mask_share=Share(2, 1))


def test_plaintext_with_wrong_version_is_refused() -> None:
    with pytest.raises(SecureAggregationError, match="version-1 share message"):
        ShareMessage.from_bytes(b"\x02" + _message().to_bytes()[1:])


def test_short_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="32-byte share key"):
        encrypt_shares(b"short", _message(), **ROUTE)
