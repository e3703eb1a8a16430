"""What both ends of SecAgg+ agree on: the settings piece, the vector layout, the node lists."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError, SecureAggregationError
from fedlearn.privacy.protocol import SecureAggregation, VectorLayout, from_array, node_list, survivors_bytes


def test_layout_puts_parameters_in_sorted_order_then_controls_then_the_weight():
    spec = {"b": ((2,), "float32"), "a": ((2, 3), "float32")}

    layout = VectorLayout.of(spec, control_names=["scaffold/delta_c/a", "scaffold/delta_c/b"])

    assert [(s.name, s.start, s.size, s.weighted) for s in layout.segments] == [
        ("a", 0, 6, True), ("b", 6, 2, True), ("scaffold/delta_c/a", 8, 6, False), ("scaffold/delta_c/b", 14, 2, False)
    ]  # fmt: skip
    assert (layout.length, layout.weight_index) == (17, 16)


def test_settings_refuse_a_degree_without_a_threshold():
    with pytest.raises(ConfigError, match="given together"):
        SecureAggregation(degree=4)


def test_settings_refuse_too_few_nodes():
    with pytest.raises(SecureAggregationError, match="at least 3 nodes"):
        SecureAggregation().parameters(2)


def test_a_hand_picked_degree_too_large_for_the_round_falls_back_to_full_secagg():
    chosen = SecureAggregation(dropout_fraction=0.1, degree=20, threshold=8).parameters(12)

    assert (chosen.degree, chosen.threshold) == (11, 8)


def test_node_lists_must_be_json_lists_of_distinct_ids():
    assert node_list('["a", "b"]', what="x") == ("a", "b")
    for bad in ('["a", "a"]', "[1]", "{", 3):
        with pytest.raises(SecureAggregationError):
            node_list(bad, what="x")


def test_byte_arrays_of_the_wrong_length_are_refused():
    with pytest.raises(SecureAggregationError, match="must be 32 bytes"):
        from_array(np.zeros(31, np.uint8), what="key", length=32)


def test_the_signed_survivor_set_does_not_depend_on_order():
    assert survivors_bytes(run_id="r", round=1, survivors=["b", "a"]) == survivors_bytes(
        run_id="r", round=1, survivors=["a", "b"]
    )
