"""Validation of everything a node sends back, before it can touch the model.

A reply is checked against the spec of what was sent: the same names, shapes and dtypes, finite
values, a size limit and a plausible example count. The first violation raises
:class:`ValidationError` with a message that says which parameter, what was expected and what
arrived; the engine records that reason and carries on without the reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fedlearn.core.checks import name_mismatch
from fedlearn.core.errors import ValidationError
from fedlearn.core.limits import DEFAULT_MAX_EXAMPLES, DEFAULT_MAX_MESSAGE_BYTES
from fedlearn.core.params import ParamSet, Spec


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds a reply must respect; the defaults suit models up to a few GB."""

    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_examples: int = DEFAULT_MAX_EXAMPLES
    allow_nonfinite: bool = False

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValidationError(f"max_bytes must be positive; got {self.max_bytes}")
        if self.max_examples <= 0:
            raise ValidationError(f"max_examples must be positive; got {self.max_examples}")


def validate_params(params: ParamSet, expected: Spec, *, limits: Limits = Limits(), what: str = "update") -> None:
    """Raise :class:`ValidationError` unless ``params`` matches ``expected`` exactly."""
    if params.nbytes > limits.max_bytes:
        raise ValidationError(f"{what} is {params.nbytes} bytes; the limit is {limits.max_bytes}")
    if params.keys() != expected.keys():
        mismatch = name_mismatch(params, expected)
        if mismatch.unexpected:  # named first: a name the model lacks is the likelier attack
            raise ValidationError(f"{what} has unknown parameter(s) {list(mismatch.unexpected[:5])}")
        raise ValidationError(f"{what} is missing parameter(s) {list(mismatch.missing[:5])}")
    for name, (shape, dtype) in expected.items():
        array = params[name]
        if tuple(array.shape) != tuple(shape):
            raise ValidationError(f"{what} parameter {name!r} has shape {tuple(array.shape)}; expected {tuple(shape)}")
        if array.dtype.str != dtype:
            raise ValidationError(f"{what} parameter {name!r} has dtype {array.dtype}; expected {np.dtype(dtype)}")
        if not limits.allow_nonfinite and array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise ValidationError(f"{what} parameter {name!r} contains NaN or Inf values")


def validate_num_examples(num_examples: object, *, limits: Limits = Limits()) -> int:
    """Example counts weight the average, so an absurd one could hijack it: bound it."""
    if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)):
        raise ValidationError(f"num_examples must be an integer; got {type(num_examples).__name__}")
    if not 0 <= int(num_examples) <= limits.max_examples:
        raise ValidationError(f"num_examples must be in [0, {limits.max_examples}]; got {num_examples}")
    return int(num_examples)


def validate_metrics(metrics: Mapping[str, object]) -> dict[str, float]:
    """Metrics must be a flat mapping of names to finite numbers."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise ValidationError(f"metric {key!r} must be a number; got {type(value).__name__}")
        if not np.isfinite(float(value)):
            raise ValidationError(f"metric {key!r} is not finite: {value}")
        out[key] = float(value)
    return out
