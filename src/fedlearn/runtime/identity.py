"""A node's long-term identity key on disk, and the federation's pinned registry of identity keys.

Under secure aggregation a node signs its per-round keys with a long-term Ed25519 key, so that
nobody can advertise keys in its name (docs/secure-aggregation.md). The private key lives in a
file only the node's user may read, like an SSH key, and is made on the node's first start; its
public half reaches the coordinator in the node's Hello and is bound to the node's name on first
use, or an operator pins it beforehand with ``fedlearn nodes add --identity-key``.

A *registry* is a TOML file naming every node's public key::

    [identities]
    hospital-a = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
    hospital-b = "..."

``fedlearn nodes identities --out FILE`` writes one from the coordinator's store. A node given
one (``[secure_aggregation] peers``) trusts only the keys in it and refuses a coordinator that
vouches for any other: the protection against a coordinator that substitutes keys.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedlearn.core.config_files import read_toml
from fedlearn.core.errors import ConfigError
from fedlearn.privacy.keys import KEY_BYTES, generate_identity, identity_key


def load_or_create_identity(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The node's identity key from ``path``, made there first (mode 0600) if the file does not exist.

    Returns the key and whether it was just made. A key file that others may read is refused, as
    SSH refuses one, since whoever reads it can sign in the node's name.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_identity(path), False
    except OSError as exc:
        raise ConfigError(f"cannot create the identity key {path}: {exc.strerror}") from None
    key = generate_identity()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    return key, True


def _read_identity(path: Path) -> Ed25519PrivateKey:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"the identity key {path} may be read by other users (mode {stat.S_IMODE(mode):o}); run `chmod 600 {path}`"
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} holds a {type(key).__name__}; an identity key is an Ed25519 key")
    return key


def public_key_hex(key: Ed25519PrivateKey) -> str:
    """The public half as 64 hex digits: what an operator pins and a registry lists."""
    return identity_key(key).hex()


def parse_public_key(text: str, *, what: str) -> bytes:
    """A raw Ed25519 public key from its 64 hex digits, with a message naming ``what`` otherwise."""
    value = text.strip()
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != KEY_BYTES:
        raise ConfigError(f"{what} must be {2 * KEY_BYTES} hex digits (an Ed25519 public key); got {value[:80]!r}")
    return raw


def load_registry(path: Path) -> dict[str, bytes]:
    """The pinned identity keys of a registry file, by node name."""
    raw = read_toml(path, what="identity registry")
    unexpected = sorted(set(raw) - {"identities"})
    table = raw.get("identities")
    if unexpected or not isinstance(table, dict) or not table:
        raise ConfigError(f"{path}: an identity registry holds one non-empty [identities] table and nothing else")
    registry = {}
    for name, value in table.items():
        if not isinstance(value, str):
            raise ConfigError(f"{path}: [identities] {name} must be a string of hex digits; got {value!r:.40}")
        registry[name] = parse_public_key(value, what=f"{path}: [identities] {name}")
    return registry


def registry_toml(keys: Mapping[str, bytes]) -> str:
    """A registry file naming ``keys``, for ``load_registry``."""
    lines = ["# Identity keys of a fedlearn federation: give every node this file as [secure_aggregation] peers.",
             "[identities]"]  # fmt: skip
    lines += [f'"{name}" = "{key.hex()}"' for name, key in sorted(keys.items())]
    return "\n".join(lines) + "\n"
