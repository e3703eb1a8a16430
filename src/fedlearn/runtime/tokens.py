"""Per-node bearer tokens: issued once, stored only as a hash, checked in constant time.

A node proves who it is by presenting its name and a token on every call. The coordinator's store
keeps only ``sha256(token)``, so reading the database does not let anyone impersonate a node.

Why plain sha256 and not bcrypt, scrypt or argon2: slow key-derivation functions exist to protect
*low-entropy* secrets (passwords people choose) against offline guessing once the hashes leak.
Our tokens are 256 bits from :mod:`secrets`; guessing one from its hash takes about 2**255 tries
whatever each try costs, so a slow KDF would add no security. It would add tens of milliseconds of
CPU to every authenticated call, and nodes call many times per round. No salt is needed either:
salts stop precomputed tables and shared-password collisions, and random 256-bit tokens have neither.

Node names live here, beside tokens, so the node agent and the transport can check them without
importing the store.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from fedlearn.core.errors import ConfigError

TOKEN_BYTES = 32
NODE_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")


def new_token() -> str:
    """A fresh URL-safe token carrying ``TOKEN_BYTES`` random bytes."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """The hex sha256 of ``token``: the only form in which a token is ever stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, token_hash: str) -> bool:
    """Whether ``token`` hashes to ``token_hash``, compared in constant time."""
    return hmac.compare_digest(hash_token(token), token_hash)


def is_valid_node_name(name: object) -> bool:
    """Whether ``name`` is 1-64 characters of letters, digits, ``.``, ``_`` and ``-``."""
    return isinstance(name, str) and NODE_NAME_PATTERN.fullmatch(name) is not None


def validate_node_name(name: object) -> str:
    """Return ``name`` if it is a valid node name, else raise a :class:`ConfigError` saying why.

    The rule keeps names safe in file paths, URLs, log lines and shell commands.
    """
    if not is_valid_node_name(name):
        raise ConfigError(f"node name must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' or '-'; got {name!r}")
    return str(name)
