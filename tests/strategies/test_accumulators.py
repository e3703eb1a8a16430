"""The blockwise helpers reducers share: the update norm DP's clipping relies on."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedlearn.core.params import ParamSet
from fedlearn.strategies.accumulators import CHUNK, update_norm

_float32 = hnp.arrays(
    np.float32,
    st.integers(1, 64),
    elements=st.floats(-(2.0**64), 2.0**64, allow_nan=False, allow_infinity=False, width=32),
)


def _exact_norm(model: np.ndarray, base: np.ndarray) -> float:
    """The norm of the float32 difference, its squares summed exactly (float32 squares are exact in float64)."""
    difference = np.subtract(model, base).astype(np.float64)
    return math.sqrt(math.fsum(float(d) * float(d) for d in difference))


@settings(max_examples=200, deadline=None)
@given(model=_float32, base=_float32)
def test_update_norm_of_float32_updates_is_never_below_the_exact_norm(model: np.ndarray, base: np.ndarray) -> None:
    # Clipping scales by clip / norm: a norm below the exact one would let an update past the clip.
    size = min(model.size, base.size)
    model, base = model[:size], base[:size]
    if not np.isfinite(np.subtract(model, base)).all():
        return  # a difference that overflows float32 is not a finite update; validation rejects it earlier
    exact = _exact_norm(model, base)

    norm = update_norm(ParamSet({"w": model}), {"w": base})

    assert exact <= norm <= math.sqrt((exact**2 + size * 2.0**-148) * (1 + 2.0**-22))  # subnormals: absolute slack


def test_update_norm_of_a_float32_update_spanning_many_blocks_matches_float64() -> None:
    rng = np.random.default_rng(0)
    model = rng.normal(size=3 * CHUNK + 17).astype(np.float32)
    base = rng.normal(size=model.size).astype(np.float32)

    norm = update_norm(ParamSet({"w": model}), {"w": base})

    assert norm == np.float64(norm) and _exact_norm(model, base) <= norm <= _exact_norm(model, base) * (1 + 2.0**-22)
