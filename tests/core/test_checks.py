"""The one checks module: constraints describe themselves, and every failure reads the same."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedlearn.core.checks import (
    BOOL,
    NON_NEGATIVE,
    POSITIVE,
    Interval,
    Options,
    check,
    check_call_options,
    check_int,
    check_ints,
    check_options,
    check_real,
    check_seed,
    name_mismatch,
)
from fedlearn.core.errors import ConfigError


@pytest.mark.parametrize(
    ("interval", "text"),
    [
        (Interval(0, 1, closed="right"), "in (0, 1]"),
        (Interval(0, 0.5, closed="left"), "in [0, 0.5)"),
        (NON_NEGATIVE, "in [0, inf)"),
        (POSITIVE, "in (0, inf)"),
        (Interval(), "in (-inf, inf)"),
        (Interval(1, math.inf, integer=True), "an integer >= 1"),
        (Interval(1, 8, integer=True), "an integer in [1, 8]"),
    ],
)
def test_interval_describes_itself(interval: Interval, text: str) -> None:
    assert str(interval) == text


@pytest.mark.parametrize("number", [math.inf, -math.inf, math.nan])
def test_interval_never_holds_a_non_finite_number(number: float) -> None:
    assert number not in Interval()


def test_check_real_returns_a_float_inside_the_interval() -> None:
    assert check_real("fraction", 1, Interval(0, 1, closed="right")) == 1.0
    assert isinstance(check_real("fraction", np.float32(0.5), Interval(0, 1)), float)


def test_check_real_outside_the_interval_names_parameter_interval_and_value() -> None:
    with pytest.raises(ConfigError, match=r"^`fraction` must be in \(0, 1\]; got 1.5$"):
        check_real("fraction", 1.5, Interval(0, 1, closed="right"))


def test_check_real_of_a_string_says_a_number_was_expected_and_what_came() -> None:
    with pytest.raises(ConfigError, match=r"^`fraction` must be a number in \(0, 1\]; got '0.5' \(str\)$"):
        check_real("fraction", "0.5", Interval(0, 1, closed="right"))


def test_check_real_refuses_a_bool() -> None:
    with pytest.raises(ConfigError, match=r"got True \(bool\)"):
        check_real("rate", True)


def test_check_int_refuses_floats_bools_and_small_values() -> None:
    assert check_int("count", np.int64(3), low=1) == 3
    with pytest.raises(ConfigError, match=r"^`count` must be an integer >= 1; got 2.0 \(float\)$"):
        check_int("count", 2.0, low=1)
    with pytest.raises(ConfigError, match=r"^`count` must be an integer >= 1; got True \(bool\)$"):
        check_int("count", True, low=1)
    with pytest.raises(ConfigError, match=r"^`count` must be an integer >= 1; got 0$"):
        check_int("count", 0, low=1)


def test_check_bool_accepts_only_true_and_false() -> None:
    assert check("nesterov", False, BOOL) is False
    with pytest.raises(ConfigError, match=r"^`nesterov` must be true or false; got 1 \(int\)$"):
        check("nesterov", 1, BOOL)


def test_check_options_constraint_lists_the_choices() -> None:
    assert check("kind", "server", Options(("server", "client"))) == "server"
    with pytest.raises(ConfigError, match=r"^`kind` must be one of server, client; got 'peer'$"):
        check("kind", "peer", Options(("server", "client")))


def test_check_seed_gives_the_seeded_generator_and_refuses_none() -> None:
    assert check_seed(3).integers(1000) == np.random.default_rng(3).integers(1000)
    with pytest.raises(ConfigError, match=r"`seed` must be an integer >= 0; got None"):
        check_seed(None)


def test_name_mismatch_lists_missing_and_unexpected_sorted() -> None:
    mismatch = name_mismatch(["c", "a", "x"], ["a", "b", "c"])

    assert mismatch
    assert (mismatch.missing, mismatch.unexpected) == (("b",), ("x",))
    assert str(mismatch) == "missing ['b'], unexpected ['x']"


def test_name_mismatch_of_equal_sets_is_false_and_says_only_what_differs() -> None:
    assert not name_mismatch(["a", "b"], ["b", "a"])
    assert str(name_mismatch(["a"], ["a", "b"])) == "missing ['b']"


def test_name_mismatch_shows_five_names_then_how_many_more() -> None:
    text = str(name_mismatch([], [f"p{i}" for i in range(8)]))

    assert text == "missing ['p0', 'p1', 'p2', 'p3', 'p4'] and 3 more"


def test_check_options_names_the_unknown_option_and_the_valid_ones() -> None:
    expected = r"^unknown option\(s\) fractoin for strategy 'x'; valid options: a, fraction$"
    with pytest.raises(ConfigError, match=expected):
        check_options("strategy 'x'", {"fractoin": 1}, accepted=["fraction", "a"])


def test_check_options_names_a_missing_required_option() -> None:
    with pytest.raises(ConfigError, match=r"^strategy 'x' needs option\(s\) mu; valid options: mu$"):
        check_options("strategy 'x'", {}, accepted=["mu"], required=["mu"])


def test_check_call_options_reads_the_signature_less_what_the_caller_supplies() -> None:
    def build(data: object, *, alpha: float, beta: float = 1.0) -> None:
        del data, alpha, beta

    check_call_options("thing", build, {"alpha": 1.0}, supplied=("data",))
    with pytest.raises(ConfigError, match=r"thing needs option\(s\) alpha; valid options: alpha, beta$"):
        check_call_options("thing", build, {}, supplied=("data",))
    with pytest.raises(ConfigError, match=r"unknown option\(s\) data for thing"):
        check_call_options("thing", build, {"alpha": 1.0, "data": 2}, supplied=("data",))


def test_check_ints_takes_a_sequence_and_refuses_a_bare_number_naming_it() -> None:
    assert check_ints("hidden", [64, 32], low=1) == (64, 32)
    with pytest.raises(ConfigError, match=r"^`hidden` must be a non-empty list of integers >= 1; got 64$"):
        check_ints("hidden", 64, low=1)
    with pytest.raises(ConfigError, match=r"got \[64, 0\]$"):
        check_ints("hidden", [64, 0], low=1)
