"""Argument checks shared by the partitioners, loaders and generators.

Every public function in ``fedlearn.data`` is reachable from a config file, so a bad value must
fail at once with a :class:`ConfigError` that names the parameter, what was expected and what
arrived, rather than deep inside NumPy.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fedlearn.core.errors import ConfigError


def check_int(name: str, value: object, *, minimum: int) -> int:
    """``value`` as an int, if it is one (bools excluded) and at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"`{name}` must be an int >= {minimum}; got {value!r}")
    if value < minimum:
        raise ConfigError(f"`{name}` must be >= {minimum}; got {value}")
    return int(value)


def check_seed(seed: object) -> np.random.Generator:
    """A generator for an explicit non-negative int seed; there is no default RNG to fall back to."""
    return np.random.default_rng(check_int("seed", seed, minimum=0))


def check_float(name: str, value: object, *, minimum: float, inclusive: bool) -> float:
    """``value`` as a finite float above ``minimum`` (or equal to it when ``inclusive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"`{name}` must be a number; got {value!r}")
    number = float(value)
    relation = ">=" if inclusive else ">"
    if not math.isfinite(number) or number < minimum or (number == minimum and not inclusive):
        raise ConfigError(f"`{name}` must be finite and {relation} {minimum:g}; got {value}")
    return number


def check_num_nodes(num_nodes: object, n_rows: int) -> int:
    """Every node needs at least one row, so there can be no more nodes than rows."""
    count = check_int("num_nodes", num_nodes, minimum=1)
    if count > n_rows:
        raise ConfigError(f"`num_nodes` must be <= the number of rows ({n_rows}); got {count}")
    return count


def check_labels(name: str, labels: object) -> np.ndarray:
    """A non-empty 1-D array of labels (or group values)."""
    array = np.asarray(labels)
    if array.ndim != 1 or len(array) == 0:
        raise ConfigError(f"`{name}` must be a non-empty 1-D array; got shape {array.shape}")
    return array


def check_options(what: str, fn: Callable[..., Any], options: Mapping[str, object]) -> None:
    """Reject options ``fn`` does not take as keyword-only parameters, and missing required ones.

    ``what`` names the thing being configured (e.g. ``"partitioner 'dirichlet'"``) so the message
    tells a config-file author exactly which section is wrong and what it accepts.
    """
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    valid = sorted(p.name for p in params)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"{what} has no option(s) {unknown}; valid options are {valid}")
    missing = sorted(p.name for p in params if p.default is inspect.Parameter.empty and p.name not in options)
    if missing:
        raise ConfigError(f"{what} needs option(s) {missing}; valid options are {valid}")
