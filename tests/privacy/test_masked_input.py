"""A node's masked input built in one pass equals the straightforward way: encode each segment, then mask."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import CONTROL_DELTA_PREFIX
from fedlearn.privacy.encoding import FixedPoint, encode_into
from fedlearn.privacy.masked_input import masked_input
from fedlearn.privacy.masks import apply_masks
from fedlearn.privacy.protocol import VectorLayout

SEED = bytes(range(32))
SPEC = {"b": ((7,), "float32"), "w": ((30, 11), "float32")}
MASKS = [(bytes([1]) * 32, 1), (bytes([2]) * 32, -1), (bytes([3]) * 32, 1), (bytes([4]) * 32, -1)]


def _update(layout: VectorLayout) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    rng = np.random.default_rng(11)
    arrays: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for segment in layout.segments:
        shape = SPEC[segment.name.rsplit("/", 1)[-1]][0]
        values = rng.normal(scale=0.3, size=shape).astype(np.float32)
        arrays[segment.name] = (values, rng.normal(size=shape).astype(np.float32) if segment.weighted else None)
    return arrays


def _straightforward(
    layout: VectorLayout, arrays: dict[str, tuple[np.ndarray, np.ndarray | None]], weight: int, encoding: FixedPoint
) -> np.ndarray:
    """Each segment encoded whole at its offset, the weight, then every mask over the whole vector."""
    out = np.empty(layout.length, encoding.dtype)
    for segment in layout.segments:
        values, base = arrays[segment.name]
        update = values.reshape(-1).astype(np.float64)
        if base is not None:
            update -= base.reshape(-1)
        encode_into(
            update,
            weight=weight if segment.weighted else 1,
            encoding=encoding,
            seed=SEED,
            offset=segment.start,
            out=out[segment.start : segment.start + segment.size],
        )
    out[layout.weight_index] = weight
    return apply_masks(out, 0, MASKS)


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("block_elements", [1, 7, 64, 1 << 18])
@pytest.mark.parametrize("controls", [(), (f"{CONTROL_DELTA_PREFIX}b", f"{CONTROL_DELTA_PREFIX}w")])
def test_masked_input_equals_encoding_each_segment_then_masking(
    bits: int, block_elements: int, controls: tuple[str, ...]
) -> None:
    layout = VectorLayout.of(SPEC, control_names=controls)
    encoding = FixedPoint(clip=1.0, max_weight=50, fraction_bits=20, bits=bits)
    arrays = _update(layout)

    got = masked_input(
        layout, arrays, weight=37, encoding=encoding, rounding_seed=SEED, masks=MASKS, block_elements=block_elements
    )

    assert np.array_equal(got, _straightforward(layout, arrays, 37, encoding))


def test_masked_input_without_masks_is_the_encoding_and_the_weight() -> None:
    layout = VectorLayout.of(SPEC)
    encoding = FixedPoint(clip=1.0, max_weight=50, fraction_bits=20)
    arrays = _update(layout)

    got = masked_input(layout, arrays, weight=37, encoding=encoding, rounding_seed=SEED, masks=[])

    assert got[layout.weight_index] == 37
    assert np.array_equal(apply_masks(got, 0, MASKS), _straightforward(layout, arrays, 37, encoding))


def test_masked_input_refuses_an_update_missing_a_segment() -> None:
    layout = VectorLayout.of(SPEC)
    arrays = _update(layout)
    del arrays["w"]

    with pytest.raises(ConfigError, match="lacks the segment 'w'"):
        masked_input(layout, arrays, weight=1, encoding=FixedPoint(clip=1.0, max_weight=5, fraction_bits=3),
                     rounding_seed=SEED, masks=MASKS)  # fmt: skip


def test_masked_input_refuses_an_array_of_the_wrong_size() -> None:
    layout = VectorLayout.of(SPEC)
    arrays = _update(layout)
    arrays["b"] = (np.zeros(8, np.float32), np.zeros(8, np.float32))

    with pytest.raises(ConfigError, match="segment 'b' has 7 elements; its arrays have 8 and 8"):
        masked_input(layout, arrays, weight=1, encoding=FixedPoint(clip=1.0, max_weight=5, fraction_bits=3),
                     rounding_seed=SEED, masks=MASKS)  # fmt: skip
