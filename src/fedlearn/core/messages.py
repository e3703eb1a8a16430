"""Tasks the coordinator sends and the replies nodes send back.

These are the only things that cross the ``Fleet`` boundary. ``kind`` names what the node must do
(``fit``, ``evaluate``, or a stage of a multi-stage protocol such as secure aggregation or an
analytics summary), so new protocols add kinds rather than new message types. Config values are
JSON scalars: they travel as JSON and never as code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.core.params import ParamSet

Scalar = bool | int | float | str
Config = Mapping[str, Scalar]

# Task kinds. Every node answers fit and evaluate; the analytics kinds are answered by nodes
# that mount the analytics handlers.
FIT = "fit"
EVALUATE = "evaluate"
ANALYTICS_SCHEMA = "analytics.schema"
ANALYTICS_SUMMARIZE = "analytics.summarize"
ANALYTICS_LOGISTIC_STEP = "analytics.logistic_step"
ANALYTICS_SECURE_MOMENTS = "analytics.secure_moments"
"""A node's moments as one vector of plain sums, only ever sent masked (the masked-input stage runs it)."""
SCORE = "score"
"""Score a dataset with a registered model and write the predictions into the node's own database;
the reply holds counts and summary metrics only (``fedlearn.registry.node_scoring``)."""
EVALUATE_MODEL = "evaluate_model"
"""Evaluate a registered model on the node's held-out rows; the reply holds sums only: a confusion
matrix and score histograms, or error sums for a regression (``fedlearn.registry.federated_metrics``)."""
MODEL_PACKAGE_KEY = "model.package"
"""Config of ``score`` and ``evaluate_model``: the model package's JSON description; its arrays are the
task's params. The node checks the pair exactly as it checks a package file."""

# Secure aggregation (SecAgg+): the six stages of one securely aggregated round, in order; nodes
# built for a secure run mount their handlers (docs/secure-aggregation.md, "The protocol").
SECAGG_ADVERTISE = "secagg.advertise"
SECAGG_SHARE = "secagg.share"
SECAGG_RECEIVE = "secagg.receive"
SECAGG_MASKED_INPUT = "secagg.masked_input"
SECAGG_CONSISTENCY = "secagg.consistency"
SECAGG_UNMASK = "secagg.unmask"
SECAGG_KINDS = (
    SECAGG_ADVERTISE, SECAGG_SHARE, SECAGG_RECEIVE, SECAGG_MASKED_INPUT, SECAGG_CONSISTENCY, SECAGG_UNMASK
)  # fmt: skip

SECAGG_CONFIG_PREFIX = "secagg."
"""Task config keys of the secure stages: ``secagg.nodes`` (JSON list of the round's nodes with valid
keys), ``secagg.graph_seed``, ``secagg.degree``, ``secagg.threshold``, ``secagg.partners`` (JSON list of
the nodes to mask with), ``secagg.survivors`` (JSON list), ``secagg.weighted``,
and the encoding ``secagg.clip``, ``secagg.max_weight``, ``secagg.fraction_bits``, ``secagg.bits``.
``secagg.contribution`` names the task kind whose reply's ``vector`` a node masks instead of training
(absent: the node trains), with ``secagg.max_nodes`` sizing its exact encoding (``fedlearn.privacy.exact``)."""
SECURE_CONTRIBUTION_KEY = "secagg.contribution"
"""Set on the task a masked-input stage hands to a contribution's handler: its reply will leave masked."""
SECAGG_ARRAY_PREFIX = "secagg/"
"""Extras of the secure stages. Task: ``secagg/keys/<node>/{cipher,mask,signature}`` (adverts, share
stage), ``secagg/in/<sender>`` (sealed shares for this node, receive stage),
``secagg/sig/<node>`` (survivor-set signatures, unmask stage). Reply: ``secagg/{cipher,mask,signature}``
(advert), ``secagg/out/<receiver>`` and ``secagg/commitment`` (share stage), ``secagg/rejected``
(receive), ``secagg/masked`` (masked input), ``secagg/signature`` (consistency), ``secagg/self/<peer>`` and
``secagg/key/<peer>`` (unmask). Byte strings travel as uint8 arrays."""

# Config keys that the engine and strategies set on a fit task and that trainers read.
SEED_KEY = "seed"
"""The node's seed for this round, derived from the run's seed; a trainer draws all its randomness from it."""
FEATURES_KEY = "features"
"""The feature names the run's model expects, in order, as a JSON list; a node whose data has other
columns refuses the task (see ``fedlearn.client.contract``)."""
ROUND_KEY = "round"
"""The round a fit or evaluate task belongs to, for trainers whose work depends on it (schedules, say)."""
WORK_FRACTION_KEY = "work_fraction"
"""Share in (0, 1] of its usual local steps a node does this round; below 1 for a simulated straggler
that does partial work, as in FedProx's systems-heterogeneity experiments. Absent means 1."""
PROXIMAL_MU_KEY = "proximal_mu"
"""FedProx's proximal term weight."""
CLIENT_MOMENTUM_KEY = "client_momentum"
"""Worker momentum ``beta`` in [0, 1): the node sends the running average of its updates
(``fedlearn.client.momentum``); centered clipping asks for it."""

# Differential privacy on the node (``fedlearn.privacy.differential``). A fit task carries them when
# the run's mechanism needs the node to clip or to add noise; a node's budget charges the task with them.
DP_MECHANISM_KEY = "dp.mechanism"
"""The run's DP mechanism: ``central``, ``distributed`` or ``local``."""
DP_CLIP_KEY = "dp.clip"
"""The L2 norm the node clips its update (its model minus the global one) to before it leaves the node."""
DP_NOISE_KEY = "dp.noise_stddev"
"""The standard deviation of the Gaussian noise the node itself adds to each coordinate of its clipped
update: all of it under local DP, its share under distributed DP; absent when the coordinator adds it."""
DP_NOISE_MULTIPLIER_KEY = "dp.noise_multiplier"
"""The release's noise over its sensitivity, which a node's lifetime budget charges the task with."""
DP_DELTA_KEY = "dp.delta"
"""The run's δ, so that a node can say in ε what a task would cost it."""
SCAFFOLD_KEY = "scaffold"
"""True when the task carries SCAFFOLD's control variate and the reply must carry its change."""

HELDOUT_METRIC = "heldout"
"""Evaluate replies report 1 when the node evaluated on rows held out from training, 0 on its
training rows; averaged over a round's replies, the history shows which share was held out."""

# Names of arrays in a task's or reply's extras.
CONTROL_PREFIX = "scaffold/c/"
"""Task extras: the server's SCAFFOLD control variate, one array per parameter."""
CONTROL_DELTA_PREFIX = "scaffold/delta_c/"
"""Reply extras: the node's change to its control variate, one array per parameter."""

# A task's or reply's parameters and extras packed into one set of arrays, for transports that
# carry one blob (the process pool, the gRPC reply payload, the engine's spill files).
PARAMS_PREFIX = "p/"
EXTRAS_PREFIX = "x/"


def pack(params: ParamSet, extras: ParamSet) -> ParamSet:
    """Parameters and extras as one set: ``p/NAME`` and ``x/NAME``."""
    return params.with_prefix(PARAMS_PREFIX).merged(extras.with_prefix(EXTRAS_PREFIX))


def unpack(packed: ParamSet) -> tuple[ParamSet, ParamSet]:
    r"""The parameters and extras of a :func:`pack`\ ed set; any name outside both prefixes is refused.

    Raises :class:`ValidationError`, since the set may come from a peer.
    """
    stray = [name for name in packed if not name.startswith((PARAMS_PREFIX, EXTRAS_PREFIX))]
    if stray:
        raise ValidationError(f"packed arrays have names outside {PARAMS_PREFIX!r} and {EXTRAS_PREFIX!r}: {stray[:5]}")
    return packed.select(PARAMS_PREFIX), packed.select(EXTRAS_PREFIX)


def freeze_config(config: Mapping[str, object]) -> Mapping[str, Scalar]:
    """A read-only copy of ``config`` after checking every value is a JSON scalar."""
    for key, value in config.items():
        if not isinstance(key, str):
            raise ConfigError(f"config keys must be strings; got {key!r}")
        if not isinstance(value, (bool, int, float, str)):
            raise ConfigError(f"config value {key!r} must be a bool, int, float or str; got {type(value).__name__}")
    return MappingProxyType(dict(config))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """One unit of work for one node."""

    kind: str
    round: int
    params: ParamSet = field(default_factory=ParamSet)
    config: Config = field(default_factory=dict)
    extras: ParamSet = field(default_factory=ParamSet)
    run_id: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            raise ConfigError("task kind must be a non-empty string")
        object.__setattr__(self, "config", freeze_config(self.config))


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """What a node sends back for one task. ``error`` set means the node failed it.

    ``run_id`` is stamped by the fleet from the task it answers, never taken from the node, so a
    late reply from an earlier run or job cannot pass for one of the current stage.
    """

    node_id: str
    kind: str
    round: int
    run_id: str = ""
    params: ParamSet = field(default_factory=ParamSet)
    num_examples: int = 0
    metrics: Mapping[str, float] = field(default_factory=dict)
    extras: ParamSet = field(default_factory=ParamSet)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def nbytes(self) -> int:
        return self.params.nbytes + self.extras.nbytes
