"""Canonical bytes: injective, typed and versioned."""

from __future__ import annotations

import pytest

from fedlearn.privacy.framing import PROTOCOL, canonical


def test_canonical_known_answer() -> None:
    expected = (
        b"s\x00\x00\x00\x17" + f"{PROTOCOL}/demo".encode()
        + b"s\x00\x00\x00\x02ab" + b"b\x00\x00\x00\x01\xff" + b"i\x00\x00\x00\x02\x01\x00" + b"i\x00\x00\x00\x00"
    )  # fmt: skip

    assert canonical("demo", "ab", b"\xff", 256, 0) == expected


def test_canonical_field_boundaries_are_unambiguous() -> None:
    assert canonical("d", "ab", "c") != canonical("d", "a", "bc")


def test_canonical_types_are_distinguished() -> None:
    assert canonical("d", "1") != canonical("d", b"1") != canonical("d", 0x31)


def test_canonical_domains_differ() -> None:
    assert canonical("mask-seed", "x") != canonical("share-key", "x")


@pytest.mark.parametrize("bad", [True, -1, 1.5, None])
def test_canonical_refuses_other_values(bad: object) -> None:
    with pytest.raises(TypeError, match="canonical field"):
        canonical("d", bad)  # type: ignore[arg-type]
