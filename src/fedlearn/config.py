"""The TOML run config, validated in full before anything runs, and how it maps onto the engine.

A config names the data (for simulation), the learner, the strategy, the client settings sent
with every fit task, and how the engine waits. Every section rejects unknown keys, except the
option tables that are handed to a builder which checks them itself. Any problem becomes one
:class:`ConfigError` line naming the file, the key, what was expected and what was found.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fedlearn.core.config_files import read_toml, validate
from fedlearn.core.errors import ConfigError, PrivacyError
from fedlearn.core.limits import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_REORDER_BUFFER_BYTES
from fedlearn.core.messages import FEATURES_KEY
from fedlearn.core.validation import Limits
from fedlearn.data.dataset import Dataset
from fedlearn.data.split import split_over_nodes
from fedlearn.engine.engine import EngineConfig
from fedlearn.privacy.accountant import Accountant, FixedSizeSampling, PoissonSampling, Sampling
from fedlearn.privacy.differential import AdaptiveClipping, DifferentialPrivacy
from fedlearn.privacy.protocol import DEFAULT_CLIP, DEFAULT_MAX_WEIGHT, SecureAggregation
from fedlearn.strategies.privacy import AccountedSampler
from fedlearn.strategies.strategy import Strategy


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _OpenSection(BaseModel):
    """A section whose extra keys are options for a builder that validates them itself."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RunSection(_Section):
    name: str = "run"
    rounds: int = Field(20, ge=1)
    seed: int = Field(0, ge=0)


class DataSection(_Section):
    dataset: str = "digits"
    nodes: int = Field(20, ge=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    partition: str = "iid"
    holdout_fraction: float = Field(0.0, ge=0, lt=1)
    dataset_options: dict[str, Any] = Field(default_factory=dict)
    partition_options: dict[str, Any] = Field(default_factory=dict)

    def split(self, seed: int) -> tuple[list[Dataset], Dataset]:
        """The nodes' parts and the test set, as :func:`~fedlearn.data.split_over_nodes` makes them."""
        return split_over_nodes(
            self.dataset,
            nodes=self.nodes,
            test_fraction=self.test_fraction,
            partitioner=self.partition,
            seed=seed,
            dataset_options=self.dataset_options,
            partition_options=self.partition_options,
        )


class ModelSection(_OpenSection):
    """The learner, its options, and the data shape a coordinator needs when it has no data.

    In a simulation the shape comes from the dataset and, if given here, must agree with it.
    """

    learner: str = "numpy.softmax"
    n_features: int | None = Field(None, ge=1)
    features: list[str] | None = None
    n_classes: int = Field(0, ge=0)
    task: Literal["classification", "regression"] = "classification"

    def declared_n_features(self) -> int | None:
        """``n_features``, or the number of declared ``features``; the two must agree when both are set."""
        if self.features is None:
            return self.n_features
        if self.n_features is not None and self.n_features != len(self.features):
            raise ConfigError(f"[model] n_features is {self.n_features} but `features` names {len(self.features)}")
        if len(set(self.features)) != len(self.features):
            raise ConfigError(f"[model] `features` names a column twice: {self.features}")
        return len(self.features)


class StrategySection(_OpenSection):
    name: str = "fedavg"


class EngineSection(_Section):
    round_timeout: float = Field(600.0, gt=0)
    min_replies: int = Field(1, ge=1)
    min_reply_fraction: float = Field(0.5, ge=0, le=1)
    min_available_nodes: int = Field(1, ge=1)
    wait_for_nodes_timeout: float = Field(60.0, ge=0)
    evaluate_every: int = Field(1, ge=1)
    evaluate_fraction: float = Field(0.0, ge=0, le=1)
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, gt=0)
    reorder_buffer_bytes: int = Field(DEFAULT_REORDER_BUFFER_BYTES, ge=0)
    max_examples_per_reply: int | None = Field(None, ge=1)


class SimulationSection(_Section):
    executor: Literal["inprocess", "pool"] = "inprocess"
    workers: int = Field(2, ge=1)
    blas_threads: int | None = Field(1, ge=1)
    tune_allocator: bool = True
    declare_rows: bool = True


class FaultsSection(_Section):
    dropout: float = Field(0.0, ge=0, le=1)
    straggler: float = Field(0.0, ge=0, le=1)
    delay: float = Field(1.0, ge=0)
    partial_work: float = Field(0.0, ge=0, le=1)


class AttackSection(_OpenSection):
    """``[attack]``: Byzantine nodes in a simulation, for red-team exercises (docs/robustness.md).

    ``name`` is an attack of ``fedlearn.client.attacks.ATTACKS``; its other options are keys of
    this section, checked by the attack's builder. The attackers are a ``fraction`` of the nodes
    drawn with the run seed, or the ``nodes`` named. A deployed coordinator refuses the section:
    a real node attacks only through its own NODE.toml.
    """

    name: str
    fraction: float | None = Field(None, ge=0, le=1)
    nodes: list[str] | None = None
    knowledge: Literal["own", "colluders", "omniscient"] = "colluders"
    shards: int = Field(4, ge=2)


class SecureAggregationSection(_Section):
    """``[privacy.secure_aggregation]``: the coordinator sees only the sum of the updates (SecAgg+)."""

    enabled: bool = False
    bits: Literal[32, 64] = 32
    clip: float = Field(DEFAULT_CLIP, gt=0)
    max_weight: int = Field(DEFAULT_MAX_WEIGHT, ge=1)
    fraction_bits: int | None = Field(None, ge=0)
    dropout_fraction: float = Field(0.1, ge=0, lt=1)
    corrupt_fraction: float = Field(0.05, ge=0, lt=1)
    degree: int | None = Field(None, ge=2)
    threshold: int | None = Field(None, ge=2)

    def piece(self) -> SecureAggregation | None:
        """The strategy piece, or None when secure aggregation is off."""
        if not self.enabled:
            return None
        return SecureAggregation(**self.model_dump(exclude={"enabled"}))


class DifferentialPrivacySection(_Section):
    """``[privacy.differential_privacy]``: node-level DP with an ε budget the engine accounts and enforces.

    ``noise_multiplier`` may be left out: it is then calibrated so that the planned rounds spend
    exactly ``epsilon`` (not for ``distributed``, whose zCDP accounting the calibrator does not
    search). ``epsilon`` is required when enabled; ``inf`` reports ε without a limit.
    """

    enabled: bool = False
    mechanism: Literal["central", "local", "distributed"] = "central"
    clip: float = Field(1.0, gt=0)
    noise_multiplier: float | None = Field(None, gt=0)
    epsilon: float | None = Field(None, gt=0)
    delta: float = Field(1e-5, gt=0, lt=1)
    accountant: Literal["rdp", "pld"] = "rdp"
    adaptive_clipping: bool = False
    target_quantile: float = Field(0.5, gt=0, lt=1)
    clip_learning_rate: float = Field(0.2, gt=0)
    clipped_count_stddev: float | None = Field(None, gt=0)

    def piece(self, *, sampling: Sampling | None, rounds: int) -> DifferentialPrivacy | None:
        """The strategy piece, or None when DP is off; ``sampling`` (central DP) and ``rounds`` plan the calibration."""
        if not self.enabled:
            return None
        if self.epsilon is None:
            raise ConfigError("`epsilon` (the run's privacy budget) is required when differential privacy is enabled")
        adaptive = (
            AdaptiveClipping(
                target_quantile=self.target_quantile,
                learning_rate=self.clip_learning_rate,
                count_stddev=self.clipped_count_stddev,
            )
            if self.adaptive_clipping
            else None
        )
        noise = self.noise_multiplier
        if noise is None:
            noise = self._calibrated(sampling, rounds)
        return DifferentialPrivacy(
            noise_multiplier=noise,
            epsilon=self.epsilon,
            clip=self.clip,
            delta=self.delta,
            mechanism=self.mechanism,
            accountant=self.accountant,
            adaptive=adaptive,
        )

    def _calibrated(self, sampling: Sampling | None, rounds: int) -> float:
        """The noise multiplier whose ``rounds`` planned rounds spend ``epsilon``, charged as the engine charges."""
        assert self.epsilon is not None
        if self.mechanism == "distributed" or math.isinf(self.epsilon):
            raise ConfigError(
                "`noise_multiplier` is required for mechanism 'distributed' and for an infinite `epsilon`: the "
                "calibrator searches the Gaussian mechanism's ε only"
            )
        accountant = Accountant(delta=self.delta, method=self.accountant)
        if self.mechanism == "local" or sampling is None:
            return accountant.calibrate(target_epsilon=self.epsilon, sampling=PoissonSampling(rate=1.0), rounds=rounds)
        noise = accountant.calibrate(target_epsilon=self.epsilon, sampling=sampling, rounds=rounds)
        # fixed-size sampling is charged z/2 (replace-one: one node moves the sum by 2C); see engine.privacy_budget
        return 2 * noise if isinstance(sampling, FixedSizeSampling) else noise


class PrivacySection(_Section):
    secure_aggregation: SecureAggregationSection = Field(default_factory=SecureAggregationSection)
    differential_privacy: DifferentialPrivacySection = Field(default_factory=DifferentialPrivacySection)


class RunConfig(_Section):
    """The whole file. ``client`` is free-form: it is sent to nodes with every fit task."""

    run: RunSection = Field(default_factory=RunSection)
    data: DataSection = Field(default_factory=DataSection)
    model: ModelSection = Field(default_factory=ModelSection)
    client: dict[str, Any] = Field(default_factory=dict)
    strategy: StrategySection = Field(default_factory=StrategySection)
    engine: EngineSection = Field(default_factory=EngineSection)
    simulation: SimulationSection = Field(default_factory=SimulationSection)
    faults: FaultsSection = Field(default_factory=FaultsSection)
    privacy: PrivacySection = Field(default_factory=PrivacySection)
    attack: AttackSection | None = None


def secure_strategy(config: RunConfig, strategy: Strategy, *, n_nodes: int) -> Strategy:
    """``strategy`` with the run's secure-aggregation piece, checked for ``n_nodes`` nodes; unchanged when it is off."""
    piece = config.privacy.secure_aggregation.piece()
    if piece is None:
        return strategy
    try:
        piece.check(n_nodes)
        return replace(strategy, secure_aggregation=piece)
    except ConfigError as exc:
        raise ConfigError(f"[privacy.secure_aggregation]: {exc}") from None


def private_strategy(config: RunConfig, strategy: Strategy, *, n_nodes: int) -> Strategy:
    """``strategy`` with the run's differential-privacy piece; unchanged when it is off.

    Apply it after :func:`secure_strategy`, since what DP may be combined with depends on secure
    aggregation. ``n_nodes`` is how many nodes a calibration plans with under fixed-size sampling
    (the engine checks the plan again with the nodes available when the run starts).
    """
    section = config.privacy.differential_privacy
    if not section.enabled:
        return strategy
    try:
        sampler = strategy.sampler
        sampling = sampler.accounting(n_nodes) if isinstance(sampler, AccountedSampler) else None
        piece = section.piece(sampling=sampling, rounds=config.run.rounds)
        return replace(strategy, differential_privacy=piece)
    except (ConfigError, PrivacyError) as exc:
        raise ConfigError(f"[privacy.differential_privacy]: {exc}") from None


def engine_config(config: RunConfig) -> EngineConfig:
    """The engine settings of a run config; shared by simulation and the networked runtime."""
    e = config.engine
    return EngineConfig(
        rounds=config.run.rounds,
        seed=config.run.seed,
        round_timeout=e.round_timeout,
        min_replies=e.min_replies,
        min_reply_fraction=e.min_reply_fraction,
        min_available_nodes=e.min_available_nodes,
        wait_for_nodes_timeout=e.wait_for_nodes_timeout,
        evaluate_every=e.evaluate_every,
        evaluate_fraction=e.evaluate_fraction,
        client_config={**config.client, **_features_entry(config.model)},
        limits=Limits(max_bytes=e.max_message_bytes),
        reorder_buffer_bytes=e.reorder_buffer_bytes,
        max_examples_per_reply=e.max_examples_per_reply,
        require_secure_aggregation=config.privacy.secure_aggregation.enabled,
        require_differential_privacy=config.privacy.differential_privacy.enabled,
    )


def _features_entry(model: ModelSection) -> dict[str, str]:
    """The declared feature names as the task config entry nodes check their columns against."""
    return {} if model.features is None else {FEATURES_KEY: json.dumps(model.features)}


def parse_config(data: dict[str, Any], *, source: str = "config") -> RunConfig:
    """Validate a parsed TOML document."""
    client = data.get("client", {})
    if isinstance(client, dict):
        for key, value in client.items():
            if not isinstance(value, (bool, int, float, str)):
                raise ConfigError(f"{source}: [client] {key}: must be a bool, int, float or string; got {value!r}")
    return validate(RunConfig, data, source=source)


def load_config(path: str | Path, **overrides: Any) -> RunConfig:
    """Read and validate a TOML file; ``overrides`` are ``section.key`` -> value."""
    data = read_toml(path)
    for dotted, value in overrides.items():
        section, key = dotted.split(".", 1)
        data.setdefault(section, {})[key] = value
    return parse_config(data, source=str(path))
