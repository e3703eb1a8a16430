"""A node's identity key file and the federation's registry: made safely, read strictly."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fedlearn.core.errors import ConfigError
from fedlearn.privacy.keys import identity_key
from fedlearn.runtime.identity import (
    load_or_create_identity,
    load_registry,
    parse_public_key,
    public_key_hex,
    registry_toml,
)


def test_identity_key_is_made_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "node.identity.key"

    made, created = load_or_create_identity(path)
    again, created_again = load_or_create_identity(path)

    assert (created, created_again) == (True, False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert identity_key(made) == identity_key(again)


def test_identity_key_that_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.identity.key"
    load_or_create_identity(path)
    path.chmod(0o644)

    with pytest.raises(ConfigError, match=r"may be read by other users \(mode 644\); run `chmod 600"):
        load_or_create_identity(path)


def test_identity_key_file_of_another_kind_of_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.identity.key"
    other = X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(other)
    path.chmod(0o600)

    with pytest.raises(ConfigError, match="holds a X25519PrivateKey; an identity key is an Ed25519 key"):
        load_or_create_identity(path)


def test_identity_key_file_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "node.identity.key"
    path.write_bytes(b"not a key")
    path.chmod(0o600)

    with pytest.raises(ConfigError, match="is not an unencrypted PEM private key"):
        load_or_create_identity(path)


def test_identity_key_in_a_missing_directory_cannot_be_made(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot create the identity key"):
        load_or_create_identity(tmp_path / "absent" / "node.identity.key")


@pytest.mark.parametrize("text", ["", "zz" * 32, "ab" * 31, "ab" * 33])
def test_public_key_must_be_64_hex_digits(text: str) -> None:
    with pytest.raises(ConfigError, match="--identity-key must be 64 hex digits"):
        parse_public_key(text, what="--identity-key")


def test_registry_written_from_keys_reads_back_the_same_keys(tmp_path: Path) -> None:
    keys = {name: load_or_create_identity(tmp_path / f"{name}.key")[0] for name in ("hospital-a", "hospital.b")}
    raw = {name: bytes.fromhex(public_key_hex(key)) for name, key in keys.items()}
    path = tmp_path / "federation.toml"
    path.write_text(registry_toml(raw))

    assert load_registry(path) == raw


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "one non-empty \\[identities\\] table"),
        ("[identities]\n", "one non-empty \\[identities\\] table"),
        ('[identities]\na = "00"\n[extra]\n', "one non-empty \\[identities\\] table"),
        ("[identities]\na = 3\n", "a must be a string of hex digits"),
        ('[identities]\na = "xyz"\n', "a must be 64 hex digits"),
    ],
)
def test_malformed_registry_is_refused_naming_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "federation.toml"
    path.write_text(text)

    with pytest.raises(ConfigError, match=message):
        load_registry(path)
