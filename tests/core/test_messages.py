"""The names a task carries, and the one packing of parameters and extras into a single set."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.core.codec import decode, encode
from fedlearn.core.errors import ValidationError
from fedlearn.core.messages import CONTROL_DELTA_PREFIX, EXTRAS_PREFIX, PARAMS_PREFIX, pack, unpack
from fedlearn.core.params import ParamSet

PARAMS = ParamSet({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)})
EXTRAS = ParamSet({f"{CONTROL_DELTA_PREFIX}w": np.zeros((2, 3), np.float32)})


def test_pack_puts_params_and_extras_under_their_prefixes() -> None:
    packed = pack(PARAMS, EXTRAS)

    assert sorted(packed) == ["p/b", "p/w", "x/scaffold/delta_c/w"]
    assert (PARAMS_PREFIX, EXTRAS_PREFIX) == ("p/", "x/")  # on the wire: changing them breaks old peers


def test_unpack_of_pack_gives_back_both_sets_bit_for_bit_through_the_codec() -> None:
    params, extras = unpack(decode(encode(pack(PARAMS, EXTRAS))))

    assert params.bitwise_equal(PARAMS)
    assert extras.bitwise_equal(EXTRAS)


def test_unpack_of_empty_sets_is_empty() -> None:
    params, extras = unpack(pack(ParamSet(), ParamSet()))

    assert len(params) == 0 and len(extras) == 0


def test_unpack_refuses_a_name_outside_both_prefixes() -> None:
    sneaky = pack(PARAMS, EXTRAS).merged(ParamSet({"sneaky": np.ones(1, np.float32)}))

    with pytest.raises(ValidationError, match=r"names outside 'p/' and 'x/': \['sneaky'\]"):
        unpack(sneaky)
