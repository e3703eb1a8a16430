"""Argument checks shared by the strategy pieces.

Hyper-parameters often arrive from a TOML file, so a wrong type ("0.5" as a string, ``true`` for
a count) is as likely as a wrong value. Both are caught at construction time, before a run
starts, and reported as :class:`ConfigError` in the house style: "`fraction` must be in (0, 1];
got 1.5".
"""

from __future__ import annotations

import math
import numbers

from fedlearn.core.errors import ConfigError


def check_real(
    name: str,
    value: object,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a float, or :class:`ConfigError` unless it is a finite real in the interval."""
    opening = "(" if low_open or math.isinf(low) else "["
    closing = ")" if high_open or math.isinf(high) else "]"
    interval = f"{opening}{_fmt(low)}, {_fmt(high)}{closing}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"`{name}` must be a number in {interval}; got {value!r} ({type(value).__name__})")
    number = float(value)
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if not math.isfinite(number) or too_low or too_high:
        raise ConfigError(f"`{name}` must be in {interval}; got {value!r}")
    return number


def check_int(name: str, value: object, *, low: int) -> int:
    """``value`` as an int, or :class:`ConfigError` unless it is an integer ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"`{name}` must be an integer >= {low}; got {value!r} ({type(value).__name__})")
    if value < low:
        raise ConfigError(f"`{name}` must be an integer >= {low}; got {value!r}")
    return int(value)


def _fmt(bound: float) -> str:
    if math.isinf(bound):
        return "inf" if bound > 0 else "-inf"
    return f"{bound:g}"


def check_bool(name: str, value: object) -> bool:
    """``value``, or :class:`ConfigError` unless it is a bool (not 0/1, not "false")."""
    if not isinstance(value, bool):
        raise ConfigError(f"`{name}` must be true or false; got {value!r} ({type(value).__name__})")
    return value
