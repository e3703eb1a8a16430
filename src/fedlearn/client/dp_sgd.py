"""Record-level differential privacy: DP-SGD inside a node's PyTorch training, through Opacus.

Node-level DP (the coordinator's mechanisms) hides whether a *site* took part; DP-SGD (Abadi et
al. 2016) hides whether any one *record* of a site was used, so it protects the site's records
even from a model that leaves the site. Each step samples a batch by Poisson sampling (every row
independently with probability ``q = batch_size / rows``), clips every example's gradient to L2
norm ``C`` (``dp_sgd_max_grad_norm``), sums, adds N(0, (σC)²) per coordinate and divides by the
expected batch size ``q · rows``. Opacus computes the per-example gradients and clips them; the
sampling and the noise come from fedlearn's :mod:`~fedlearn.privacy.noise` sources:

* Opacus draws its noise from torch's generator (a Mersenne Twister): predictable to whoever
  learns its seed, and the engine sends every node its seed. Opacus's own ``secure_mode`` needs
  ``torchcsprng``, which is not built for current torch. So in deployment (``"system"``) the noise
  and the batch draws come from :class:`~fedlearn.privacy.noise.SystemNoise`, the OS's CSPRNG
  expanded by AES-CTR, and each noise value is the sum of four draws divided by two, the
  mitigation of floating-point attacks (Holohan and Braghin 2021) that ``secure_mode`` applies.
* In simulation (``"seeded"``) both come from the fit's seed, so the same seed gives the same
  model; such noise protects nobody and must never leave a simulation.

Poisson sampling, not shuffled fixed-size batches, is what the accounting assumes, so a fit
of ``K`` steps is charged as ``Charge(noise_multiplier=σ, sampling=PoissonSampling(q), count=K)``
(:func:`dp_sgd_charge`), the same event Opacus's RDP accountant composes. A node's lifetime
budget charges it before the fit starts; the fit reply reports ε at ``dp_sgd_delta`` composed over
this node's DP-SGD fits (``dp_sgd_epsilon``).

Opacus is the optional ``opacus`` extra and is imported only when a fit asks for DP-SGD.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from fedlearn.client.trainer import NodeState
from fedlearn.core.checks import BOOL, POSITIVE, Constraint, Interval, Options, check, check_fields
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import Config
from fedlearn.core.params import ParamSet
from fedlearn.privacy.accountant import Accountant, PoissonSampling
from fedlearn.privacy.ledger import Charge, PrivacyLedger
from fedlearn.privacy.noise import NoiseSource, SeededNoise, SystemNoise, gaussian, uniforms

if TYPE_CHECKING:
    import torch

DP_SGD_KEY = "dp_sgd"
NOISE_MULTIPLIER_KEY = "dp_sgd_noise_multiplier"
MAX_GRAD_NORM_KEY = "dp_sgd_max_grad_norm"
DELTA_KEY = "dp_sgd_delta"
TARGET_EPSILON_KEY = "dp_sgd_target_epsilon"
EPSILON_METRIC = "dp_sgd_epsilon"
"""Fit-reply metric: ε at ``dp_sgd_delta`` of every DP-SGD fit this node's state holds, this one included."""
NOISE_MULTIPLIER_METRIC = "dp_sgd_noise_multiplier"
"""Fit-reply metric: the σ this fit used (the calibrated one when a target ε was given)."""
LEDGER_STATE_KEY = "dp_sgd/charges"
"""Where a node keeps its DP-SGD charges in its ``NodeState``, to compose ε across fits."""

DEFAULT_MAX_GRAD_NORM = 1.0
DEFAULT_DELTA = 1e-5
NoiseKind = Literal["system", "seeded"]
NOISE_KINDS: tuple[NoiseKind, ...] = ("system", "seeded")
_DELTA = Interval(0, 1, closed="neither")

DP_SGD_OPTIONS: Mapping[str, Constraint] = MappingProxyType(
    {
        DP_SGD_KEY: BOOL,
        NOISE_MULTIPLIER_KEY: POSITIVE,
        MAX_GRAD_NORM_KEY: POSITIVE,
        DELTA_KEY: _DELTA,
        TARGET_EPSILON_KEY: POSITIVE,
    }
)
"""The fit-config keys DP-SGD reads, which a run's ``[client]`` section may set for torch learners."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DpSgd:
    """DP-SGD settings: a fixed ``noise_multiplier`` σ, or a ``target_epsilon`` each fit is calibrated to.

    ``target_epsilon`` bounds one fit at ``delta``; a node's total over many fits is what its
    lifetime budget (``[privacy]`` in NODE.toml) bounds.
    """

    noise_multiplier: float | None = None
    max_grad_norm: float = DEFAULT_MAX_GRAD_NORM
    delta: float = DEFAULT_DELTA
    target_epsilon: float | None = None

    def __post_init__(self) -> None:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ConfigError(
                f"DP-SGD needs exactly one of `{NOISE_MULTIPLIER_KEY}` and `{TARGET_EPSILON_KEY}`; "
                f"got {NOISE_MULTIPLIER_KEY}={self.noise_multiplier}, {TARGET_EPSILON_KEY}={self.target_epsilon}"
            )
        check_fields(self, {"max_grad_norm": POSITIVE, "delta": _DELTA})
        if self.noise_multiplier is not None:
            check("noise_multiplier", self.noise_multiplier, POSITIVE)
        if self.target_epsilon is not None:
            check("target_epsilon", self.target_epsilon, POSITIVE)

    @classmethod
    def from_config(cls, config: Config) -> DpSgd | None:
        """The settings a fit config asks for, or ``None`` when it does not turn ``dp_sgd`` on."""
        present = {key: config[key] for key in DP_SGD_OPTIONS if key in config}
        try:
            for key, value in present.items():
                check(key, value, DP_SGD_OPTIONS[key])
        except ConfigError as exc:
            raise ConfigError(f"fit config {exc}") from None
        if not present.pop(DP_SGD_KEY, False):
            if present:
                raise ConfigError(
                    f"fit config sets {sorted(present)} but not `{DP_SGD_KEY} = true`; "
                    "turn DP-SGD on, or drop its settings"
                )
            return None
        numbers = {key: float(value) for key, value in present.items()}  # checked numbers above
        return cls(
            noise_multiplier=numbers.get(NOISE_MULTIPLIER_KEY),
            max_grad_norm=numbers.get(MAX_GRAD_NORM_KEY, DEFAULT_MAX_GRAD_NORM),
            delta=numbers.get(DELTA_KEY, DEFAULT_DELTA),
            target_epsilon=numbers.get(TARGET_EPSILON_KEY),
        )

    @classmethod
    def coerce(cls, value: DpSgd | Mapping[str, Any] | None) -> DpSgd | None:
        """Settings given as an instance or as a table (a NODE.toml ``learner_options``)."""
        if value is None or isinstance(value, DpSgd):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"`dp_sgd` must be a table of DP-SGD settings; got {value!r}")
        try:
            return cls(**value)
        except TypeError as exc:
            raise ConfigError(
                f"`dp_sgd` accepts noise_multiplier, max_grad_norm, delta and target_epsilon; got {sorted(value)}"
            ) from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class DpSgdPlan:
    """What one fit will run and spend: σ, the Poisson rate and the number of steps."""

    settings: DpSgd
    noise_multiplier: float
    rate: float
    steps: int
    rows: int

    @property
    def expected_batch_size(self) -> float:
        return self.rate * self.rows

    def charge(self) -> Charge:
        return dp_sgd_charge(noise_multiplier=self.noise_multiplier, rate=self.rate, steps=self.steps)


def plan_fit(settings: DpSgd, *, batch_size: int, rows: int, steps: int) -> DpSgdPlan:
    """The plan of a fit of ``steps`` Poisson batches of expected size ``batch_size`` over ``rows`` rows.

    With a ``target_epsilon`` σ is calibrated by our RDP accountant, so the charge of the fit is
    exactly what was calibrated against.
    """
    if rows < 1:
        raise ConfigError("DP-SGD needs at least one training row on this node")
    rate = min(1.0, batch_size / rows)
    noise = settings.noise_multiplier
    if noise is None:
        assert settings.target_epsilon is not None
        noise = _calibrated(settings.target_epsilon, settings.delta, rate, steps)
    return DpSgdPlan(settings=settings, noise_multiplier=noise, rate=rate, steps=steps, rows=rows)


@functools.lru_cache(maxsize=256)
def _calibrated(target_epsilon: float, delta: float, rate: float, steps: int) -> float:
    """σ for a target; cached because a search takes about a second and a node repeats the same fit."""
    return Accountant(delta=delta).calibrate(
        target_epsilon=target_epsilon, sampling=PoissonSampling(rate=rate), rounds=steps
    )


def dp_sgd_charge(*, noise_multiplier: float, rate: float, steps: int) -> Charge:
    """A DP-SGD fit as the ledger charges it: ``steps`` Gaussian steps at σ under Poisson sampling ``rate``."""
    return Charge(noise_multiplier=noise_multiplier, sampling=PoissonSampling(rate=rate), count=steps)


def noise_source(kind: NoiseKind, rng: np.random.Generator) -> NoiseSource:
    """``SystemNoise`` in deployment; in simulation, words from the fit's seeded ``rng``."""
    check("dp_sgd_noise", kind, Options(NOISE_KINDS))
    if kind == "system":
        return SystemNoise()
    return SeededNoise(np.random.default_rng(int(rng.integers(2**63))))


def poisson_batches(source: NoiseSource, *, rows: int, rate: float, steps: int) -> Iterator[NDArray[np.intp]]:
    """Row indices of ``steps`` batches, each row in each batch independently with probability ``rate``.

    A batch may be empty; the step then releases noise alone, as the accounting assumes.
    """
    for _ in range(steps):
        yield np.flatnonzero(uniforms(source, rows) < rate)


def composed_epsilon(state: NodeState, charge: Charge, *, delta: float) -> float:
    """Add ``charge`` to the node's DP-SGD charges kept in ``state`` and return their ε at ``delta``."""
    held = state.get(LEDGER_STATE_KEY)
    ledger = PrivacyLedger(delta=delta)
    if held is not None:
        for sigma, rate, count in zip(held["noise_multiplier"], held["rate"], held["count"], strict=True):
            ledger = ledger.plus(dp_sgd_charge(noise_multiplier=float(sigma), rate=float(rate), steps=int(count)))
    ledger = ledger.plus(charge)
    state[LEDGER_STATE_KEY] = ParamSet(
        {
            "noise_multiplier": np.array([c.noise_multiplier for c in ledger.charges], dtype=np.float64),
            "rate": np.array([c.sampling.rate for c in ledger.charges], dtype=np.float64),  # type: ignore[union-attr]
            "count": np.array([c.count for c in ledger.charges], dtype=np.int64),
        }
    )
    return ledger.epsilon()


def check_module(module: torch.nn.Module) -> None:
    """Refuse a module DP-SGD cannot train, naming the first offending layer and the fix.

    Opacus's validator finds layers whose output mixes examples (batch norm) or that it cannot
    compute per-example gradients for; its messages do not say where the layer is, so each
    leaf module is checked on its own.
    """
    _import_opacus()
    from opacus.validators import ModuleValidator

    for name, layer in module.named_modules():
        if any(True for _ in layer.children()):
            continue
        errors = ModuleValidator.validate(layer, strict=False)
        if errors:
            reason = str(errors[0]).split(". ")[0].strip()
            raise ConfigError(
                f"`{DP_SGD_KEY}`: layer {name or '(root)'!r} ({type(layer).__name__}) cannot be trained with "
                f"DP-SGD: {reason}. Replace it (e.g. BatchNorm with GroupNorm or LayerNorm; "
                "opacus.validators.ModuleValidator.fix(model) does this) or turn dp_sgd off"
            )


def _import_opacus() -> None:
    try:
        import opacus  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"`{DP_SGD_KEY}` needs Opacus; install the extra on this node: pip install 'fedlearn[opacus]'"
        ) from exc


def private_training(
    module: torch.nn.Module, optimizer: torch.optim.Optimizer, plan: DpSgdPlan, source: NoiseSource, *, secure: bool
) -> tuple[Any, Any]:
    """Wrap ``module`` to record per-example gradients and ``optimizer`` to clip and noise them.

    Returns ``(grad_sample_module, dp_optimizer)``; call ``grad_sample_module._close()`` when done
    so the module is plain again. The DP optimizer's ``pre_step()`` leaves the private gradient in
    each ``p.grad``; ``original_optimizer.step()`` then applies it.
    """
    check_module(module)
    from opacus.grad_sample import GradSampleModule

    wrapped = GradSampleModule(module, batch_first=True, loss_reduction="mean")
    dp_optimizer = _optimizer_class()(
        optimizer,
        noise_multiplier=plan.noise_multiplier,
        max_grad_norm=plan.settings.max_grad_norm,
        expected_batch_size=plan.expected_batch_size,
        loss_reduction="mean",
    )
    dp_optimizer.fedlearn_source = source
    dp_optimizer.fedlearn_secure = secure
    return wrapped, dp_optimizer


@functools.cache
def _optimizer_class() -> type:
    """Opacus's DPOptimizer with its noise drawn from a fedlearn :class:`NoiseSource` (see module docstring)."""
    import torch
    from opacus.optimizers import DPOptimizer
    from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

    class SourcedDPOptimizer(DPOptimizer):  # type: ignore[misc]
        fedlearn_source: NoiseSource
        fedlearn_secure: bool

        def add_noise(self) -> None:
            std = self.noise_multiplier * self.max_grad_norm
            for p in self.params:
                summed = p.summed_grad
                size = summed.numel()
                if self.fedlearn_secure:  # sum of 2n draws over sqrt(2n) with n = 2, as Opacus's secure_mode
                    draws = sum(gaussian(self.fedlearn_source, size, std) for _ in range(4)) / 2.0
                else:
                    draws = gaussian(self.fedlearn_source, size, std)
                noise = torch.from_numpy(np.asarray(draws)).to(summed.dtype).view_as(summed)
                _check_processed_flag(summed)  # Opacus's guard against noising one gradient twice
                p.grad = (summed + noise).view_as(p)
                _mark_as_processed(summed)

    return SourcedDPOptimizer
