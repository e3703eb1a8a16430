"""Differential privacy on the node: what a fit task asks for, what the node's policy allows, and the clipping.

A run with differential privacy sends its fit tasks the ``dp.*`` keys of
:mod:`fedlearn.core.messages`. The node reads them with :func:`dp_request` and
:meth:`NodePrivacy.admit` decides, before any training, whether it will take part:

* a value that is missing, not a finite positive number, or a mechanism it does not know is refused;
* its policy (``[privacy]`` in NODE.toml) may require differential privacy, set the least noise
  multiplier it accepts and the largest δ, and hold a lifetime budget (:mod:`fedlearn.client.budget`);
* under ``local`` and ``distributed`` DP the node adds the noise itself, so it checks that the noise
  it is told to add really is the claimed noise multiplier times the clip: a coordinator that claims
  a large multiplier while sending a huge clip or a tiny noise is refused, not believed;
* ``distributed`` needs secure aggregation (the noise shares only add up inside a masked sum), and
  ``central`` and ``distributed`` need an unweighted secure sum, since a weight ``w`` would make one
  node's sensitivity ``w`` times the clip that the accounting assumes.

Only then is the budget charged (with the task's noise multiplier, unsampled: the node knows it
took part), and only then does it train. After training the node clips its update to the L2 norm
``dp.clip`` (:func:`clip_update`) and, under local DP, adds Gaussian noise to it; under
distributed DP, secure aggregation adds discrete Gaussian noise to the encoded update
(:func:`fedlearn.privacy.masked_input.masked_input`).

Where the noise comes from is the node's :class:`NoiseFactory`: :func:`seeded_noise` in
simulation, so a run's seed fixes it, and :func:`system_noise` (the OS's secure source) on a
deployed node, where noise the coordinator could predict it could subtract.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fedlearn.client.budget import PrivacyBudget
from fedlearn.core.checks import NON_NEGATIVE, POSITIVE, Interval, Options, check
from fedlearn.core.errors import PrivacyError
from fedlearn.core.messages import (
    DP_CLIP_KEY,
    DP_DELTA_KEY,
    DP_MECHANISM_KEY,
    DP_NOISE_KEY,
    DP_NOISE_MULTIPLIER_KEY,
    SEED_KEY,
    Config,
    Task,
)
from fedlearn.core.params import ParamSet
from fedlearn.privacy.differential import MECHANISMS, Mechanism
from fedlearn.privacy.ledger import Charge
from fedlearn.privacy.noise import NoiseSource, SeededNoise, SystemNoise, add_gaussian

DP_KEYS = (DP_MECHANISM_KEY, DP_CLIP_KEY, DP_NOISE_KEY, DP_NOISE_MULTIPLIER_KEY, DP_DELTA_KEY)
_DELTA = Interval(0, 1, closed="neither")
_TOLERANCE = 1e-9
"""Relative slack when the node compares the noise it is told to add with the claimed multiplier × clip."""
_CLIP_SLACK = 1e-12
"""A clipped update's norm is at most ``clip × (1 + _CLIP_SLACK)``, float rounding included."""
_NOISE_STREAM = 0x6470_6E6F
"""Spawn key of the simulated noise stream, so it never repeats the trainer's stream from the same seed."""


class NoiseFactory(Protocol):
    """The noise source for one task: seeded in simulation, the OS's secure source in a deployment."""

    def __call__(self, task: Task, /) -> NoiseSource: ...


def seeded_noise(task: Task) -> NoiseSource:
    """Reproducible noise from the task's seed (``seed``), as simulated nodes use; never for a deployment.

    The stream is spawned apart from the seed's own, so the noise is independent of the trainer's
    shuffling. A task without a seed gets :func:`system_noise`: unpredictable noise is never wrong.
    """
    seed = task.config.get(SEED_KEY)
    if seed is None:
        return SystemNoise()
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PrivacyError(f"`{SEED_KEY}` must be a non-negative integer to seed simulated noise; got {seed!r}")
    sequence = np.random.SeedSequence(seed, spawn_key=(_NOISE_STREAM,))
    return SeededNoise(np.random.Generator(np.random.PCG64(sequence)))


def system_noise(task: Task) -> NoiseSource:
    """Noise from the operating system's secure random source, fresh for every task: a deployed node's."""
    return SystemNoise()


@dataclass(frozen=True, slots=True, kw_only=True)
class DpRequest:
    """What a fit task asks of the node: a mechanism, a clip, the noise it adds itself, and what the release costs."""

    mechanism: Mechanism
    clip: float | None
    """None only under plain ``central`` DP, where the coordinator clips (its adaptive clipping counts
    the norms it clips, so the node must send them unclipped)."""
    noise_multiplier: float
    delta: float
    noise_stddev: float | None = None


def dp_request(config: Config) -> DpRequest | None:
    """The task's DP request, None if it carries no ``dp.*`` key; PrivacyError for one that is incomplete or invalid."""
    if not any(key in config for key in DP_KEYS):
        return None
    try:
        mechanism = check(f"{DP_MECHANISM_KEY}", config.get(DP_MECHANISM_KEY), Options(MECHANISMS))
        request = DpRequest(
            mechanism=mechanism,
            clip=None if DP_CLIP_KEY not in config else _positive(config, DP_CLIP_KEY),
            noise_multiplier=_positive(config, DP_NOISE_MULTIPLIER_KEY),
            delta=float(check(DP_DELTA_KEY, _number(config, DP_DELTA_KEY), _DELTA)),
            noise_stddev=None if DP_NOISE_KEY not in config else _positive(config, DP_NOISE_KEY),
        )
    except ValueError as exc:
        raise PrivacyError(f"the task's differential privacy is malformed, so this node refuses it: {exc}") from None
    adds_noise = request.mechanism != "central"
    if adds_noise != (request.noise_stddev is not None):
        raise PrivacyError(
            f"`{DP_NOISE_KEY}` must be given for the 'local' and 'distributed' mechanisms, where the node adds "
            f"noise, and only for them; got mechanism {request.mechanism!r} with `{DP_NOISE_KEY}` "
            f"{config.get(DP_NOISE_KEY)!r}"
        )
    return request


@dataclass(frozen=True, slots=True, kw_only=True)
class MaskedSum:
    """How the node's update leaves it under secure aggregation: summed with ``nodes`` others, weighted or not."""

    nodes: int
    weighted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Admitted:
    """A DP fit task the node took on: its request and the node's ε after the charge (None without a budget)."""

    request: DpRequest | None
    """The run's DP request; None for a fit private only through the node's own DP-SGD."""
    epsilon: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NodePrivacy:
    """The node's differential-privacy policy: NODE.toml's ``[privacy]``, enforced whatever a coordinator asks.

    ``budget`` is charged with every DP task (None: no lifetime budget). ``delta`` is the largest
    δ a task may account at. ``require_differential_privacy`` refuses fit tasks without DP; so does
    a budget, since a release without noise has no finite ε to charge. Analytics handlers read
    :attr:`requires_differential_privacy` to refuse noiseless statistics. ``min_noise_multiplier``
    is the least noise, over sensitivity, the node lets any release have.
    """

    budget: PrivacyBudget | None = None
    delta: float = 1e-5
    require_differential_privacy: bool = False
    min_noise_multiplier: float = 0.0

    def __post_init__(self) -> None:
        check("delta", self.delta, _DELTA)
        check("min_noise_multiplier", self.min_noise_multiplier, NON_NEGATIVE)

    @property
    def requires_differential_privacy(self) -> bool:
        """True when nothing may leave the node without noise: DP is required, or a budget must cover every release.

        Analytics handlers read it and refuse noiseless statistics when it is set.
        """
        return self.require_differential_privacy or self.budget is not None

    def admit(
        self, task: Task, *, what: str, masked: MaskedSum | None = None, record_level: Charge | None = None
    ) -> Admitted | None:
        """Check ``task``'s DP against this policy and charge the budget; PrivacyError, nothing spent, on refusal.

        ``masked`` says the update will leave inside a secure sum (None: in the clear). Returns None
        for a task without DP that the policy lets through. ``record_level`` is the charge of the
        DP-SGD the node's trainer will run for the task (None: it runs none): such a fit is private
        without the run's DP, and the budget is charged with both when the run adds its own.
        """
        request = dp_request(task.config)
        if record_level is not None:
            delta = request.delta if request is not None else self.delta
            self._check_release(record_level, delta)
        if request is None and record_level is not None:
            epsilon = None if self.budget is None else self.budget.spend(record_level, what=f"{what} (DP-SGD)")
            return None if epsilon is None else Admitted(request=None, epsilon=epsilon)
        if request is None:
            if self.require_differential_privacy:
                raise PrivacyError(
                    "this node requires differential privacy ([privacy] require_differential_privacy) and the task "
                    "carries none; run with [privacy.differential_privacy]"
                )
            if self.budget is not None:
                raise PrivacyError(
                    "this node keeps a lifetime privacy budget ([privacy] epsilon_budget), and a task without "
                    "differential privacy would spend an unbounded ε; run with [privacy.differential_privacy]"
                )
            return None
        self._check(request, masked)
        if self.budget is None:
            return Admitted(request=request, epsilon=None)
        charges: tuple[Charge, ...] = (Charge(noise_multiplier=request.noise_multiplier),)
        if record_level is not None:  # the DP-SGD inside and the run's DP around it, spent together or not at all
            charges += (record_level,)
        epsilon = self.budget.spend(*charges, what=what)
        return Admitted(request=request, epsilon=epsilon)

    def spend(self, charge: Charge, *, delta: float, what: str) -> float | None:
        """Charge a release other than training (a noised statistic), after the policy's δ and noise checks.

        Analytics handlers call it before they compute anything; PrivacyError, nothing spent, if the
        release accounts at a δ above the node's, has less noise than ``min_noise_multiplier``, or
        would exceed the budget. Returns the node's ε after the charge (None without a budget).
        """
        self._check_release(charge, delta)
        return None if self.budget is None else self.budget.spend(charge, what=what)

    def _check_release(self, charge: Charge, delta: float) -> None:
        if delta > self.delta:
            raise PrivacyError(
                f"the task accounts at `{DP_DELTA_KEY}` = {delta:g}, above this node's [privacy] delta "
                f"{self.delta:g}; run with a δ of at most {self.delta:g}"
            )
        # A rho-zCDP release is as private as the Gaussian mechanism with noise multiplier 1 / sqrt(2 rho).
        z = charge.noise_multiplier if charge.rho is None else 1 / math.sqrt(2 * charge.rho)
        if z is not None and z < self.min_noise_multiplier:
            raise PrivacyError(
                f"the task's `{DP_NOISE_MULTIPLIER_KEY}` {z:g} is below this node's [privacy] min_noise_multiplier "
                f"{self.min_noise_multiplier:g}; run with more noise"
            )

    def _check(self, request: DpRequest, masked: MaskedSum | None) -> None:
        z, clip = request.noise_multiplier, request.clip
        self._check_release(Charge(noise_multiplier=z), request.delta)
        if request.mechanism == "distributed" and masked is None:
            raise PrivacyError(
                "distributed differential privacy needs secure aggregation, where the nodes' noise shares add up "
                "inside the masked sum; enable [privacy.secure_aggregation] or use another mechanism"
            )
        if masked is not None and masked.weighted and request.mechanism != "local":
            raise PrivacyError(
                f"a weighted secure sum makes one node's sensitivity its weight times `{DP_CLIP_KEY}`, which the "
                f"{request.mechanism!r} accounting does not cover; the run must send `secagg.weighted` = false"
            )
        if clip is None:
            if request.mechanism != "central" or masked is not None:
                raise PrivacyError(
                    f"the task's differential privacy lacks `{DP_CLIP_KEY}`: only the coordinator of a run without "
                    "secure aggregation clips for the nodes ('central'); this node refuses it"
                )
            return
        if request.noise_stddev is not None:
            # Under distributed DP the noise of all the round's nodes adds up: at most sqrt(nodes) times one share.
            shares = masked.nodes if masked is not None and request.mechanism == "distributed" else 1
            total = request.noise_stddev * math.sqrt(shares)
            if total < z * clip * (1 - _TOLERANCE):
                raise PrivacyError(
                    f"the noise this node is told to add ({request.mechanism}: `{DP_NOISE_KEY}` "
                    f"{request.noise_stddev:g}" + (f" from each of {shares} nodes" if shares > 1 else "")
                    + f") is below `{DP_NOISE_MULTIPLIER_KEY}` {z:g} × `{DP_CLIP_KEY}` {clip:g} = {z * clip:g}, "
                    "so the release would be less private than it claims; it is refused"
                )  # fmt: skip


def update_norm(params: ParamSet, base: ParamSet) -> float:
    """The L2 norm of ``params - base`` over every array, in float64, one array's difference at a time."""
    total = 0.0
    for name, array in params.items():
        difference = np.subtract(array, base[name], dtype=np.float64).reshape(-1)
        total += float(np.dot(difference, difference))
    return math.sqrt(total)


def clip_update(params: ParamSet, base: ParamSet, clip: float) -> ParamSet:
    """``base + u · min(1, clip / ||u||)`` for ``u = params - base``, in ``params``' dtypes; its update norm <= clip.

    The scale is computed in float64 over all arrays. Casting back to the parameters' dtype (and
    float rounding of ``base + u · s``) can leave the norm a hair above ``clip``; the result is
    measured again and, if so, scaled a little further, so the bound holds for what leaves the node.
    """
    check("clip", clip, POSITIVE)
    norm = update_norm(params, base)
    if not math.isfinite(norm):
        raise PrivacyError("the trained update is not finite, so it cannot be clipped; nothing is sent")
    if norm <= clip:
        return params
    scale = clip / norm
    for _ in range(8):
        clipped = ParamSet({name: _scaled(array, base[name], scale) for name, array in params.items()})
        got = update_norm(clipped, base)
        if got <= clip * (1 + _CLIP_SLACK):
            return clipped
        scale *= clip / got * (1 - 2.0**-20)
    raise PrivacyError(f"the update could not be clipped to norm {clip:g} in its dtype; nothing is sent")


def _scaled(array: np.ndarray, base: np.ndarray, scale: float) -> np.ndarray:
    out = np.subtract(array, base, dtype=np.float64)
    out *= scale
    out += base
    return out.astype(array.dtype, copy=False)


def add_local_noise(params: ParamSet, std: float, source: NoiseSource) -> ParamSet:
    """``params`` with N(0, std²) added to every coordinate, array by array, block by block."""
    noised = {}
    for name, array in params.items():
        if array.dtype.kind != "f":
            raise PrivacyError(f"local DP noise is added to float parameters; {name!r} is {array.dtype}")
        copy = np.array(array, copy=True)
        add_gaussian(copy, std, source)
        noised[name] = copy
    return ParamSet(noised)


def _number(config: Config, key: str) -> float:
    value = config.get(key)
    if value is None:
        raise PrivacyError(f"the task's differential privacy lacks `{key}`; this node refuses it")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PrivacyError(f"`{key}` must be a number; got {value!r}")
    return float(value)


def _positive(config: Config, key: str) -> float:
    return float(check(key, _number(config, key), POSITIVE))
