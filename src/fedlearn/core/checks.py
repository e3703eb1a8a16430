"""Argument checks, declared once and used by every part.

Hyper-parameters and options mostly arrive from TOML files and HTTP requests, so a wrong type
("0.5" as a string, ``true`` as a count) is as likely as a wrong value. Following scikit-learn's
parameter validation, a constraint is a value (:class:`Interval`, :class:`Options`, ``BOOL``)
that both checks and describes itself, and :func:`check` applies one. Every failure is a
:class:`~fedlearn.core.errors.ConfigError` in one house style, whichever part raised it::

    `fraction` must be in (0, 1]; got 1.5
    `min_nodes` must be an integer >= 1; got True (bool)

:func:`name_mismatch` is the one comparison of two sets of names (a reply against the model, a
config section against what a builder takes), and :func:`check_options` the one check of a
config section's options against a function's signature.
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np

from fedlearn.core.errors import ConfigError

_SHOWN = 5  # names listed in a message before it says how many more there are


@dataclass(frozen=True, slots=True)
class Interval:
    """Real numbers (or integers, with ``integer=True``) between ``low`` and ``high``.

    ``closed`` says which ends belong to it, as in scikit-learn: ``Interval(0, 1, closed="right")``
    is (0, 1]. An infinite end is never included, so every accepted number is finite.
    """

    low: float = -math.inf
    high: float = math.inf
    closed: Literal["both", "left", "right", "neither"] = "both"
    integer: bool = False

    def __contains__(self, number: float) -> bool:
        if not math.isfinite(number):
            return False
        above = number >= self.low if self.closed in ("both", "left") else number > self.low
        below = number <= self.high if self.closed in ("both", "right") else number < self.high
        return above and below

    def __str__(self) -> str:
        if self.integer and math.isinf(self.high):
            relation = ">=" if self.closed in ("both", "left") else ">"
            return f"an integer {relation} {self.low:g}"
        opening = "[" if self.closed in ("both", "left") and math.isfinite(self.low) else "("
        closing = "]" if self.closed in ("both", "right") and math.isfinite(self.high) else ")"
        interval = f"{opening}{_bound(self.low)}, {_bound(self.high)}{closing}"
        return f"an integer in {interval}" if self.integer else f"in {interval}"

    def kind(self) -> str:
        """What a value of the wrong type should have been, in words."""
        return str(self) if self.integer else f"a number {self}"


@dataclass(frozen=True, slots=True)
class Options:
    """One of a fixed set of values, such as strings naming a mode."""

    values: tuple[object, ...]

    def __str__(self) -> str:
        return "one of " + ", ".join(str(v) for v in self.values)


class _Boolean:
    """``True`` or ``False`` and nothing else: not 0 or 1, not the string "false"."""

    def __str__(self) -> str:
        return "true or false"


BOOL = _Boolean()
NON_NEGATIVE = Interval(0, math.inf)
POSITIVE = Interval(0, math.inf, closed="neither")
UNIT = Interval(0, 1)
COUNT = Interval(0, math.inf, integer=True)
"""Common intervals: [0, inf), (0, inf), [0, 1] and the integers >= 0."""

Constraint = Interval | Options | _Boolean


@overload
def check(name: str, value: object, constraint: Interval) -> Any: ...
@overload
def check(name: str, value: object, constraint: _Boolean) -> bool: ...
@overload
def check(name: str, value: object, constraint: Options) -> Any: ...
def check(name: str, value: object, constraint: Constraint) -> Any:
    """``value`` if it meets ``constraint`` (an int or float for an :class:`Interval`), else ConfigError."""
    if isinstance(constraint, _Boolean):
        if not isinstance(value, bool):
            raise ConfigError(f"`{name}` must be true or false; got {value!r} ({type(value).__name__})")
        return value
    if isinstance(constraint, Options):
        if value not in constraint.values or isinstance(value, bool) != any(
            isinstance(v, bool) for v in constraint.values
        ):
            raise ConfigError(f"`{name}` must be {constraint}; got {value!r}")
        return value
    wanted = numbers.Integral if constraint.integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, wanted):
        raise ConfigError(f"`{name}` must be {constraint.kind()}; got {value!r} ({type(value).__name__})")
    number = int(value) if constraint.integer else float(value)  # type: ignore[call-overload, arg-type]
    if number not in constraint:
        raise ConfigError(f"`{name}` must be {constraint}; got {value!r}")
    return number


def check_fields(instance: object, constraints: Mapping[str, Constraint]) -> None:
    """Check each named attribute of ``instance`` against its constraint: a config class's one table."""
    for name, constraint in constraints.items():
        check(name, getattr(instance, name), constraint)


def check_int(name: str, value: object, *, low: int = 0) -> int:
    """``value`` as an int, if it is an integer (bools excluded) of at least ``low``."""
    return int(check(name, value, Interval(low, math.inf, integer=True)))


def check_ints(name: str, value: object, *, low: int) -> tuple[int, ...]:
    """A non-empty sequence of integers ``>= low`` (layer widths, say) as a tuple; not a bare number."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(f"`{name}` must be a non-empty list of integers >= {low}; got {value!r}")
    items = tuple(value)
    if not items or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low for v in items):
        raise ConfigError(f"`{name}` must be a non-empty list of integers >= {low}; got {value!r}")
    return tuple(int(v) for v in items)  # type: ignore[call-overload]


def check_real(name: str, value: object, interval: Interval = Interval()) -> float:
    """``value`` as a float, if it is a finite real number in ``interval``."""
    return float(check(name, value, interval))


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_name(what: str, value: object, *, letter_first: bool = False) -> str:
    """A name that travels in URLs and file names (a registered model, an alias): 1-64 of letters,
    digits, ``_ . -``, starting with a letter or digit, or with a letter when ``letter_first``."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or (letter_first and not value[0].isalpha()):
        first = "a letter" if letter_first else "a letter or digit"
        raise ConfigError(
            f"`{what}` must be 1-64 letters, digits, '_', '.' or '-', starting with {first}; got {value!r}"
        )
    return value


def check_seed(seed: object) -> np.random.Generator:
    """A generator for an explicit non-negative int seed; there is no default RNG to fall back to."""
    return np.random.default_rng(check_int("seed", seed, low=0))


@dataclass(frozen=True, slots=True)
class NameMismatch:
    """How one set of names differs from the set expected; false when they are the same."""

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected)

    def __str__(self) -> str:
        listed = (("missing", self.missing), ("unexpected", self.unexpected))
        return ", ".join(f"{label} {_listed(names)}" for label, names in listed if names)


def name_mismatch(given: Iterable[str], expected: Iterable[str]) -> NameMismatch:
    """The names ``expected`` lacks from ``given`` and the ones ``given`` has beyond it, sorted."""
    given_set, expected_set = set(given), set(expected)
    return NameMismatch(
        missing=tuple(sorted(expected_set - given_set)), unexpected=tuple(sorted(given_set - expected_set))
    )


def check_options(
    what: str, options: Mapping[str, object], *, accepted: Collection[str], required: Collection[str] = ()
) -> None:
    """Refuse options not in ``accepted`` and missing ``required`` ones, listing what is valid.

    ``what`` names the thing being configured (``"strategy 'fedavg'"``), so a config author can
    fix a typo from the message alone.
    """
    valid = ", ".join(sorted(accepted)) or "none"
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for {what}; valid options: {valid}")
    missing = sorted(set(required) - set(options))
    if missing:
        raise ConfigError(f"{what} needs option(s) {', '.join(missing)}; valid options: {valid}")


def check_call_options(
    what: str, fn: Callable[..., Any], options: Mapping[str, object], *, supplied: Collection[str] = ()
) -> None:
    """:func:`check_options` against the keyword parameters of ``fn``, less those the caller ``supplied``."""
    parameters = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in supplied
    ]
    check_options(
        what,
        options,
        accepted=[p.name for p in parameters],
        required=[p.name for p in parameters if p.default is p.empty],
    )


def _listed(names: tuple[str, ...]) -> str:
    shown = list(names[:_SHOWN])
    more = len(names) - _SHOWN
    return f"{shown}" + (f" and {more} more" if more > 0 else "")


def _bound(bound: float) -> str:
    if math.isinf(bound):
        return "inf" if bound > 0 else "-inf"
    return f"{bound:g}"
