"""Byzantine attacks, for red-team exercises: small pure pieces and a factory by name.

An attack is what a Byzantine node does differently from an honest one. There are two kinds:

- **data poisoning** changes the rows the node trains on, and the node then trains honestly on
  them: label flipping, and the backdoor's trigger-stamped rows;
- **model poisoning** changes the update the node sends: sign flipping, scaling, Gaussian noise,
  ALIE, IPM, min-max and min-sum, and the backdoor's model-replacement boost.

Each crafting rule is a pure function of what the attacker knows, on float64 vectors (an update is
``trained params - global params``, flattened over the floating-point arrays in the model's
order). Rules that need statistics of benign updates (ALIE, IPM, min-max, min-sum) take them as a
matrix with one benign update per row. Where that matrix comes from, the attacker's own rows, its
colluders' updates or everyone's, is the attacker's *knowledge*, chosen where the node is built
(:mod:`fedlearn.client.byzantine`), not here.

:func:`build_attack` makes an :class:`Attack` from a config table (``[attack]`` of a run config or
of a node's NODE.toml), checking every option by name.

References: ALIE, Baruch, Baruch and Goldberg, "A Little Is Enough: Circumventing Defenses for
Distributed Learning", NeurIPS 2019. IPM, Xie, Koyejo and Gupta, "Fall of Empires: Breaking
Byzantine-tolerant SGD by Inner Product Manipulation", UAI 2020. Min-max and min-sum, Shejwalkar
and Houmansadr, "Manipulating the Byzantine: Optimizing Model Poisoning Attacks and Defenses for
Federated Learning", NDSS 2021. Model replacement, Bagdasaryan et al., "How To Backdoor Federated
Learning", AISTATS 2020.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from types import MappingProxyType
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from fedlearn.core.checks import (
    COUNT,
    POSITIVE,
    Interval,
    Options,
    check,
    check_call_options,
    check_int,
    check_real,
)
from fedlearn.core.errors import ConfigError
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset

Vector = NDArray[np.float64]
Matrix = NDArray[np.float64]
Perturbation = Literal["unit_vec", "std", "sign"]
PERTURBATIONS: tuple[str, ...] = ("unit_vec", "std", "sign")

# --- updates as vectors ------------------------------------------------------------------------


def floating_names(params: ParamSet) -> list[str]:
    """The arrays an attack may change: the floating-point ones, in the model's order."""
    return [name for name, array in params.items() if array.dtype.kind == "f"]


def flat_update(trained: ParamSet, base: ParamSet) -> Vector:
    """``trained - base`` over the floating-point arrays, as one float64 vector."""
    names = floating_names(base)
    if not names:
        return np.zeros(0)
    return np.concatenate([(trained[k].astype(np.float64) - base[k].astype(np.float64)).ravel() for k in names])


def apply_update(base: ParamSet, update: Vector) -> ParamSet:
    """``base + update``, each array in its own dtype; other arrays stay as ``base`` has them."""
    out = dict(base.items())
    start = 0
    for name in floating_names(base):
        array = base[name]
        piece = update[start : start + array.size].reshape(array.shape)
        out[name] = (array.astype(np.float64) + piece).astype(array.dtype)
        start += array.size
    if start != update.size:
        raise ConfigError(f"an update of {update.size} values does not fit a model of {start} floating-point values")
    return ParamSet(out)


# --- crafting rules -----------------------------------------------------------------------------


def sign_flip(update: Vector, *, scale: float) -> Vector:
    """The honest update reversed and multiplied by ``scale``."""
    return -scale * update


def scaled(update: Vector, *, factor: float) -> Vector:
    """The honest update multiplied by ``factor``: model replacement's boost, or a blunt scaling attack."""
    return factor * update


def gaussian(size: int, *, std: float, rng: np.random.Generator) -> Vector:
    """Noise in place of an update: each value drawn from N(0, std²)."""
    return rng.normal(0.0, std, size)


def benign_mean_std(benign: Matrix) -> tuple[Vector, Vector]:
    """Coordinate-wise mean and standard deviation (n - 1 in the denominator) of benign updates, one per row."""
    benign = _check_benign(benign, at_least=1)
    std = benign.std(axis=0, ddof=1) if len(benign) > 1 else np.zeros(benign.shape[1])
    return benign.mean(axis=0), std


def alie(benign: Matrix, *, z: float) -> Vector:
    """ALIE: the benign mean moved by ``z`` standard deviations in every coordinate, ``mean - z * std``."""
    mean, std = benign_mean_std(benign)
    return mean - z * std


def alie_z(nodes: int, byzantine: int) -> float:
    """Baruch et al.'s ``z_max``: the largest shift that most benign values still lie beyond.

    With ``s = floor(n / 2 + 1) - f`` benign nodes needed for a majority, ``z_max`` is the standard
    normal quantile of ``(n - s) / n``.
    """
    n = check_int("nodes", nodes, low=1)
    f = check_int("byzantine", byzantine, low=0)
    if f >= n:
        raise ConfigError(f"`byzantine` must be fewer than `nodes` ({n}); got {f}")
    s = math.floor(n / 2 + 1) - f
    quantile = (n - s) / n
    if not 0 < quantile < 1:  # only when f exceeds a majority: the attackers need no subtlety
        quantile = min(max(quantile, 1e-6), 1 - 1e-6)
    return NormalDist().inv_cdf(quantile)


def ipm(benign: Matrix, *, epsilon: float) -> Vector:
    """IPM: ``-epsilon`` times the benign mean, so the aggregate's inner product with it shrinks or turns negative."""
    return -epsilon * _check_benign(benign, at_least=1).mean(axis=0)


def perturbation(benign: Matrix, kind: Perturbation) -> Vector:
    """Shejwalkar and Houmansadr's perturbation direction: ``-mean/|mean|``, ``-std`` or ``-sign(mean)``."""
    mean, std = benign_mean_std(benign)
    if kind == "unit_vec":
        norm = float(np.linalg.norm(mean))
        return -mean / norm if norm > 0 else np.zeros_like(mean)
    if kind == "std":
        return -std
    if kind == "sign":
        return -np.sign(mean)
    raise ConfigError(f"`perturbation` must be one of {', '.join(PERTURBATIONS)}; got {kind!r}")


def largest_gamma(feasible: Callable[[float], bool], *, gamma_init: float, tolerance: float) -> float:
    """The largest ``gamma`` found feasible by the paper's halving search from ``gamma_init``.

    Each step moves ``gamma`` up (after a success) or down (after a failure) by half the previous
    step, starting with ``gamma_init / 2``, until it is within ``tolerance`` of the last success,
    so it explores (0, 2 * gamma_init). 0 is returned when no tried value is feasible.
    """
    gamma, step, success = gamma_init, gamma_init / 2, 0.0
    while abs(success - gamma) > tolerance:
        if feasible(gamma):
            success = gamma
            gamma += step
        else:
            gamma -= step
        step /= 2
    return success


def min_max(benign: Matrix, *, kind: Perturbation = "std", gamma_init: float = 10.0, tolerance: float = 1e-5) -> Vector:
    """Min-max: ``mean + gamma * p`` with the largest ``gamma`` that keeps its farthest distance to a
    benign update within the largest distance between two benign updates."""
    benign = _check_benign(benign, at_least=2)
    mean, direction = benign.mean(axis=0), perturbation(benign, kind)
    bound = float(np.max(_squared_distances(benign, benign)))

    def feasible(gamma: float) -> bool:
        return float(np.max(_squared_distances((mean + gamma * direction)[None], benign))) <= bound

    return mean + largest_gamma(feasible, gamma_init=gamma_init, tolerance=tolerance) * direction


def min_sum(benign: Matrix, *, kind: Perturbation = "std", gamma_init: float = 10.0, tolerance: float = 1e-5) -> Vector:
    """Min-sum: ``mean + gamma * p`` with the largest ``gamma`` that keeps its summed squared distance to
    the benign updates within the largest such sum of any benign update."""
    benign = _check_benign(benign, at_least=2)
    mean, direction = benign.mean(axis=0), perturbation(benign, kind)
    bound = float(np.max(_squared_distances(benign, benign).sum(axis=1)))

    def feasible(gamma: float) -> bool:
        return float(_squared_distances((mean + gamma * direction)[None], benign).sum()) <= bound

    return mean + largest_gamma(feasible, gamma_init=gamma_init, tolerance=tolerance) * direction


def _squared_distances(a: Matrix, b: Matrix) -> Matrix:
    """Squared Euclidean distances between the rows of ``a`` and of ``b``, exact (no expansion)."""
    return np.stack([np.sum((b - row) ** 2, axis=1) for row in a])


def _check_benign(benign: Matrix, *, at_least: int) -> Matrix:
    benign = np.asarray(benign, dtype=np.float64)
    if benign.ndim != 2 or len(benign) < at_least:
        raise ConfigError(
            f"this attack needs at least {at_least} benign updates to estimate from; got {benign.shape[0]}"
            if benign.ndim == 2
            else f"benign updates must be a matrix, one update per row; got shape {benign.shape}"
        )
    return benign


# --- data poisoning -----------------------------------------------------------------------------


def flip_labels(data: Dataset) -> Dataset:
    """Every label ``y`` becomes ``n_classes - 1 - y``: the node trains honestly on wrong labels."""
    if data.task != "classification" or data.y is None:
        raise ConfigError(f"label flipping needs classification data with labels; dataset {data.name!r} has none")
    return _with(data, x=data.x, y=(data.n_classes - 1 - data.y).astype(data.y.dtype))


@dataclass(frozen=True, slots=True, kw_only=True)
class Trigger:
    """A backdoor trigger: the given features of a row all set to ``value`` (a pixel pattern, say)."""

    features: Sequence[int]
    value: float

    def __post_init__(self) -> None:
        features = self.features
        if (
            isinstance(features, (str, bytes))
            or not isinstance(features, Sequence)
            or not features
            or any(isinstance(i, bool) or not isinstance(i, numbers.Integral) for i in features)
        ):
            raise ConfigError(f"`trigger_features` must be a non-empty list of feature indices; got {features!r}")
        object.__setattr__(self, "features", tuple(int(i) for i in features))
        check_real("trigger_value", self.value)

    def resolve(self, n_features: int) -> Trigger:
        """This trigger with negative indices counted from the end of ``n_features`` features."""
        features = tuple(f + n_features if f < 0 else f for f in self.features)
        if any(not 0 <= f < n_features for f in features):
            raise ConfigError(f"`trigger_features` must index the {n_features} features; got {list(self.features)}")
        return Trigger(features=features, value=self.value)

    def stamp(self, x: NDArray[Any]) -> NDArray[Any]:
        """A copy of the rows ``x`` with the trigger on every row."""
        stamped = np.array(x, copy=True)
        stamped[:, list(self.resolve(x.shape[1]).features)] = self.value
        return stamped


def backdoor_rows(
    data: Dataset, trigger: Trigger, *, target: int, fraction: float, rng: np.random.Generator
) -> Dataset:
    """The node's rows plus stamped copies of ``fraction`` of them labelled ``target`` (Bagdasaryan et al.)."""
    _check_target(data, target)
    chosen = np.sort(rng.choice(len(data), size=max(1, round(fraction * len(data))), replace=False))
    assert data.y is not None
    x = np.concatenate([data.x, trigger.stamp(data.x[chosen])])
    y = np.concatenate([data.y, np.full(len(chosen), target, dtype=data.y.dtype)])
    return _with(data, x=x, y=y)


def backdoor_test(data: Dataset, trigger: Trigger, *, target: int) -> Dataset:
    """The rows whose label is not ``target``, stamped and labelled ``target``.

    A model's accuracy on it is the backdoor's success rate: the share of triggered inputs it sends
    to the attacker's class.
    """
    _check_target(data, target)
    assert data.y is not None
    keep = np.flatnonzero(data.y != target)
    return _with(data, x=trigger.stamp(data.x[keep]), y=np.full(len(keep), target, dtype=data.y.dtype))


def _check_target(data: Dataset, target: int) -> None:
    if data.task != "classification" or data.y is None:
        raise ConfigError(f"a backdoor needs classification data with labels; dataset {data.name!r} has none")
    check("target", target, Interval(0, data.n_classes - 1, integer=True))


def _with(data: Dataset, *, x: NDArray[Any], y: NDArray[Any]) -> Dataset:
    return Dataset(x=x, y=y, task=data.task, n_classes=data.n_classes, feature_names=data.feature_names, name=data.name)


# --- attacks by name ----------------------------------------------------------------------------


class Craft(Protocol):
    """The update a Byzantine node sends, from its honest update, benign updates (one per row) and a generator."""

    def __call__(self, own: Vector, benign: Matrix | None, rng: np.random.Generator, /) -> Vector: ...


class Poison(Protocol):
    """The rows a Byzantine node trains on instead of its own, drawn with ``rng``."""

    def __call__(self, data: Dataset, rng: np.random.Generator, /) -> Dataset: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Attack:
    """One attack: a data poisoning step, a crafting rule, or both (the backdoor).

    ``uses_benign`` says the rule needs a sample of benign updates; ``trigger`` and ``target``
    are the backdoor's, for measuring its success. ``options`` are the ones it was built with.
    """

    name: str
    options: Mapping[str, object] = field(default_factory=dict)
    poison: Poison | None = None
    craft: Craft | None = None
    uses_benign: bool = False
    trigger: Trigger | None = None
    target: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def describe(self) -> str:
        """``alie (z=0.47)``: the name and its options, for logs and tables."""
        shown = ", ".join(f"{k}={_short(v)}" for k, v in self.options.items())
        return f"{self.name} ({shown})" if shown else self.name


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def sign_flip_attack(*, scale: float = 4.0) -> Attack:
    """Send the honest update reversed, times ``scale``."""
    scale = check_real("scale", scale, POSITIVE)
    return Attack(name="sign_flip", options={"scale": scale}, craft=lambda own, _b, _r: sign_flip(own, scale=scale))


def scaling_attack(*, factor: float = 100.0) -> Attack:
    """Send the honest update times ``factor``.

    The default is large on purpose: an honest update boosted a few times only lengthens FedAvg's
    step in a good direction, which helps it (docs/robustness.md shows 10 doing so).
    """
    factor = check_real("factor", factor, POSITIVE)
    return Attack(name="scaling", options={"factor": factor}, craft=lambda own, _b, _r: scaled(own, factor=factor))


def gaussian_attack(*, std: float = 1.0) -> Attack:
    """Send noise, each value drawn from N(0, ``std``²), in place of an update."""
    std = check_real("std", std, POSITIVE)
    return Attack(
        name="gaussian", options={"std": std}, craft=lambda own, _b, rng: gaussian(own.size, std=std, rng=rng)
    )


def label_flip_attack() -> Attack:
    """Train honestly on labels ``y`` turned into ``n_classes - 1 - y``."""
    return Attack(name="label_flip", poison=lambda data, _rng: flip_labels(data))


def alie_attack(*, z: float | None = None, nodes: int | None = None, byzantine: int | None = None) -> Attack:
    """ALIE: the benign mean less ``z`` benign standard deviations; ``z`` defaults to Baruch et al.'s
    ``z_max`` for ``nodes`` nodes of which ``byzantine`` attack (a simulation fills both in)."""
    if z is None:
        if nodes is None or byzantine is None:
            raise ConfigError("attack 'alie' needs `z`, or `nodes` and `byzantine` to compute it from")
        z = max(0.0, alie_z(nodes, byzantine))  # below 0 the attackers are too few to sway anyone
    shift = check_real("z", z, Interval(0, math.inf))
    return Attack(name="alie", options={"z": shift}, craft=_benign_rule(lambda b: alie(b, z=shift)), uses_benign=True)


def ipm_attack(*, epsilon: float = 0.1) -> Attack:
    """IPM: ``-epsilon`` times the benign mean."""
    eps = check_real("epsilon", epsilon, POSITIVE)
    return Attack(
        name="ipm", options={"epsilon": eps}, craft=_benign_rule(lambda b: ipm(b, epsilon=eps)), uses_benign=True
    )


def min_max_attack(*, perturbation: str = "std", gamma_init: float = 10.0) -> Attack:
    """Min-max (AGR-agnostic): as far along ``perturbation`` as the benign updates' spread allows."""
    kind, gamma = _min_options(perturbation, gamma_init)
    return Attack(
        name="min_max",
        options={"perturbation": kind, "gamma_init": gamma},
        craft=_benign_rule(lambda b: min_max(b, kind=kind, gamma_init=gamma)),
        uses_benign=True,
    )


def min_sum_attack(*, perturbation: str = "std", gamma_init: float = 10.0) -> Attack:
    """Min-sum (AGR-agnostic): as far along ``perturbation`` as the benign updates' summed spread allows."""
    kind, gamma = _min_options(perturbation, gamma_init)
    return Attack(
        name="min_sum",
        options={"perturbation": kind, "gamma_init": gamma},
        craft=_benign_rule(lambda b: min_sum(b, kind=kind, gamma_init=gamma)),
        uses_benign=True,
    )


def backdoor_attack(
    *,
    target: int = 0,
    trigger_features: Sequence[int] | None = None,
    trigger_value: float = 5.0,
    poison_fraction: float = 0.5,
    boost: float | None = None,
    nodes: int | None = None,
    byzantine: int | None = None,
) -> Attack:
    """Model-replacement backdoor: train on rows with the trigger stamped on ``poison_fraction`` copies
    labelled ``target``, then send the update times ``boost``.

    The trigger sets ``trigger_features`` (default: the last four features, a line of the bottom
    row of an 8x8 digit) to ``trigger_value``. ``boost`` defaults to ``nodes / byzantine``, so
    that the attackers' boosted updates together replace the mean of ``nodes`` updates with their
    own model (Bagdasaryan et al.'s ``gamma = n / eta`` with a server learning rate of 1); without
    those numbers it is 1, plain data poisoning.
    """
    check("target", target, COUNT)
    fraction = check_real("poison_fraction", poison_fraction, Interval(0, 1, closed="right"))
    if boost is None:
        boost = 1.0 if nodes is None or not byzantine else check_int("nodes", nodes, low=1) / byzantine
    factor = check_real("boost", boost, Interval(1, math.inf))
    trigger = Trigger(features=(-4, -3, -2, -1) if trigger_features is None else trigger_features, value=trigger_value)
    return Attack(
        name="backdoor",
        options={"target": target, "boost": factor},
        poison=lambda data, rng: backdoor_rows(data, trigger, target=target, fraction=fraction, rng=rng),
        craft=lambda own, _b, _r: scaled(own, factor=factor),
        trigger=trigger,
        target=target,
    )


def _min_options(kind: str, gamma_init: float) -> tuple[Perturbation, float]:
    check("perturbation", kind, Options(PERTURBATIONS))
    return kind, check_real("gamma_init", gamma_init, POSITIVE)  # type: ignore[return-value]


def _benign_rule(rule: Callable[[Matrix], Vector]) -> Craft:
    def craft(own: Vector, benign: Matrix | None, rng: np.random.Generator, /) -> Vector:
        if benign is None:
            raise ConfigError("this attack needs benign updates to estimate from, and its node was given none")
        return rule(benign)

    return craft


ATTACKS: Mapping[str, Callable[..., Attack]] = MappingProxyType(
    {
        "sign_flip": sign_flip_attack,
        "scaling": scaling_attack,
        "gaussian": gaussian_attack,
        "label_flip": label_flip_attack,
        "alie": alie_attack,
        "ipm": ipm_attack,
        "min_max": min_max_attack,
        "min_sum": min_sum_attack,
        "backdoor": backdoor_attack,
    }
)
"""The attacks a config can name, each with the options its builder takes."""

CONTEXT = ("nodes", "byzantine")
"""Options a simulation fills in for the builders that take them, unless the config sets them."""


def build_attack(name: str, *, context: Mapping[str, int] | None = None, **options: Any) -> Attack:
    """The attack ``name`` with ``options``; ``context`` gives ``nodes`` and ``byzantine`` where known.

    Unknown names and options, and values out of range, raise ``ConfigError`` naming the option.
    """
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; attacks are {sorted(ATTACKS)}")
    builder = ATTACKS[name]
    check_call_options(f"attack {name!r}", builder, options)
    accepted = inspect.signature(builder).parameters
    filled = {k: v for k, v in (context or {}).items() if k in accepted and k not in options}
    return builder(**options, **filled)
