from __future__ import annotations

import numpy as np
import pytest

from fedlearn.core.errors import ValidationError
from fedlearn.core.params import ParamSet


def test_paramset_arrays_are_read_only_and_caller_array_stays_writable() -> None:
    source = np.zeros(3, np.float32)

    params = ParamSet({"w": source})

    with pytest.raises(ValueError, match="read-only"):
        params["w"][0] = 1.0
    source[0] = 2.0  # the caller's array keeps its flags
    assert params["w"][0] == 2.0  # a view, not a copy


def test_arithmetic_keeps_each_dtype() -> None:
    a = ParamSet({"w": np.ones(2, np.float32), "n": np.array([4], np.int64)})

    result = (a + a) * 0.5 - a / 2

    assert result["w"].dtype == np.float32 and result["n"].dtype == np.int64
    np.testing.assert_array_equal(result["w"], [0.5, 0.5])


def test_arithmetic_with_different_names_names_the_difference() -> None:
    with pytest.raises(ValidationError, match=r"missing \['b'\], unexpected \['c'\]"):
        ParamSet({"a": np.zeros(1), "b": np.zeros(1)}) + ParamSet({"a": np.zeros(1), "c": np.zeros(1)})


def test_digest_changes_with_any_byte_and_ignores_insertion_order() -> None:
    a = ParamSet({"x": np.arange(3.0), "y": np.zeros(2)})
    b = ParamSet({"y": np.zeros(2), "x": np.arange(3.0)})
    c = ParamSet({"x": np.array([0.0, 1.0, 2.5]), "y": np.zeros(2)})

    assert a.digest() == b.digest()
    assert a.digest() != c.digest()


def test_bitwise_equal_treats_nan_as_equal_to_itself() -> None:
    a = ParamSet({"x": np.array([np.nan, 1.0])})

    assert a.bitwise_equal(ParamSet({"x": np.array([np.nan, 1.0])}))
    assert not a.bitwise_equal(ParamSet({"x": np.array([np.nan, 1.0], np.float32)}))


def test_merged_refuses_duplicate_names() -> None:
    a = ParamSet({"x": np.zeros(1)})

    with pytest.raises(ValidationError, match="'x' appears twice"):
        a.merged(a)


def test_prefix_select_round_trip() -> None:
    a = ParamSet({"x": np.zeros(1), "y": np.ones(2)})

    assert a.with_prefix("opt/m/").select("opt/m/").bitwise_equal(a)


@pytest.mark.parametrize("name", ["", 3])
def test_bad_names_are_rejected(name: object) -> None:
    with pytest.raises(ValidationError, match="non-empty strings"):
        ParamSet({name: np.zeros(1)})  # type: ignore[dict-item]


def test_l2_norm_spans_all_arrays() -> None:
    assert ParamSet({"a": np.array([3.0]), "b": np.array([4.0], np.float32)}).l2_norm() == pytest.approx(5.0)
