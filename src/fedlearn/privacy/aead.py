"""Authenticated encryption of the share messages two nodes exchange through the coordinator.

A node sends each neighbour one :class:`ShareMessage`: its shares, for that neighbour, of its
``mask`` private key and of its self-mask seed. The coordinator relays the bytes but must not read
or alter them, so they are sealed with AES-256-GCM under the pair's ``share_key``
(:func:`fedlearn.privacy.keys.share_key`).

Byte layout, version 1::

    offset  length  field
    0       1       version (0x01)
    1       12      nonce, fresh from os.urandom for every message
    13      140+16  AES-256-GCM ciphertext of the plaintext below, then its 16-byte tag

    plaintext: version (0x01), then the mask-key share and the self-mask share, each as
    Share.to_bytes() (70 bytes: x as 4 bytes, y as 66 bytes, big-endian)

The associated data (authenticated, not sent) is ``canonical("share-message", run id, round,
sender, receiver)`` followed by the version byte: a message opens only for the run, round and
direction it was sealed for, so the coordinator cannot replay it elsewhere or swap two messages.
A random 96-bit nonce is safe here with a wide margin: each key is fresh for one pair in one round
and seals two messages. Anything that fails to open raises SecureAggregationError, and upstream
the sender is treated as having dropped out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedlearn.core.checks import check_int
from fedlearn.core.errors import ConfigError, SecureAggregationError
from fedlearn.privacy.framing import canonical
from fedlearn.privacy.keys import KEY_BYTES
from fedlearn.privacy.shamir import SHARE_BYTES, Share

VERSION = 1
"""Version byte of the layout above."""

NONCE_BYTES = 12
TAG_BYTES = 16
_PLAINTEXT_BYTES = 1 + 2 * SHARE_BYTES
CIPHERTEXT_BYTES = 1 + NONCE_BYTES + _PLAINTEXT_BYTES + TAG_BYTES
"""Length of every sealed share message (170 bytes in version 1)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ShareMessage:
    """What one node sends one neighbour: its shares of its ``mask`` key and of its self-mask seed."""

    mask_key_share: Share
    self_mask_share: Share

    def __post_init__(self) -> None:
        if self.mask_key_share.x != self.self_mask_share.x:
            raise SecureAggregationError(
                "both shares in a message go to one holder; "
                f"got x={self.mask_key_share.x} and x={self.self_mask_share.x}"
            )

    def to_bytes(self) -> bytes:
        """The version-1 plaintext: version byte, mask-key share, self-mask share."""
        return bytes([VERSION]) + self.mask_key_share.to_bytes() + self.self_mask_share.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> ShareMessage:
        """The message :meth:`to_bytes` wrote; SecureAggregationError for any other bytes."""
        if len(data) != _PLAINTEXT_BYTES or data[0] != VERSION:
            raise SecureAggregationError(f"a version-{VERSION} share message is {_PLAINTEXT_BYTES} bytes")
        middle = 1 + SHARE_BYTES
        return cls(mask_key_share=Share.from_bytes(data[1:middle]), self_mask_share=Share.from_bytes(data[middle:]))


def encrypt_shares(key: bytes, message: ShareMessage, *, run_id: str, round: int, sender: str, receiver: str) -> bytes:
    """``message`` sealed for ``receiver`` under the pair's 32-byte ``share_key``, with a fresh nonce."""
    aead = AESGCM(_check_key(key))
    nonce = os.urandom(NONCE_BYTES)
    associated = _associated_data(run_id=run_id, round=round, sender=sender, receiver=receiver)
    return bytes([VERSION]) + nonce + aead.encrypt(nonce, message.to_bytes(), associated)


def decrypt_shares(key: bytes, sealed: bytes, *, run_id: str, round: int, sender: str, receiver: str) -> ShareMessage:
    """The :class:`ShareMessage` in ``sealed``, if it was sealed under ``key`` for this run, round and direction.

    Raises SecureAggregationError naming the sender when the bytes are of the wrong length or
    version, were altered, or were sealed for another key, run, round, sender or receiver.
    """
    aead = AESGCM(_check_key(key))
    if not isinstance(sealed, bytes) or len(sealed) != CIPHERTEXT_BYTES or sealed[0] != VERSION:
        got = f"{len(sealed)} bytes" if isinstance(sealed, bytes) else type(sealed).__name__
        raise SecureAggregationError(
            f"share message from {sender!r} to {receiver!r} must be {CIPHERTEXT_BYTES} bytes of version {VERSION}; "
            f"got {got}; treat {sender!r} as dropped"
        )
    nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
    associated = _associated_data(run_id=run_id, round=round, sender=sender, receiver=receiver)
    try:
        plaintext = aead.decrypt(nonce, body, associated)
    except InvalidTag:
        raise SecureAggregationError(
            f"share message from {sender!r} to {receiver!r} does not authenticate (altered, or sealed for another "
            f"run, round, pair or key); treat {sender!r} as dropped"
        ) from None
    return ShareMessage.from_bytes(plaintext)


def _associated_data(*, run_id: str, round: int, sender: str, receiver: str) -> bytes:
    return canonical("share-message", run_id, check_int("round", round), sender, receiver) + bytes([VERSION])


def _check_key(key: object) -> bytes:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ConfigError(f"`key` must be a {KEY_BYTES}-byte share key; got {type(key).__name__}")
    return key
