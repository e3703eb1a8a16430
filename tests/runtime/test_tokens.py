import base64
import hashlib

import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.runtime.tokens import hash_token, new_token, token_matches, validate_node_name


def test_new_token_carries_256_random_bits_in_urlsafe_text():
    token = new_token()

    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))

    assert len(raw) == 32
    assert token != new_token()


def test_hash_token_is_sha256_hex():
    assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()


def test_token_matches_only_its_own_hash():
    token = new_token()

    assert token_matches(token, hash_token(token))
    assert not token_matches(new_token(), hash_token(token))


@pytest.mark.parametrize("name", ["a", "node-1", "site_A.eu", "x" * 64])
def test_validate_node_name_accepts_letters_digits_dot_underscore_dash(name):
    assert validate_node_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 65, "a b", "a/b", "ümlaut", "a\n", None, 7])
def test_validate_node_name_rejects_anything_else_naming_the_rule(name):
    with pytest.raises(ConfigError, match="node name must be 1-64 characters"):
        validate_node_name(name)
