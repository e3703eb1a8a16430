"""What both ends of the SecAgg+ protocol agree on: its settings, the vector layout and signed bytes.

:class:`SecureAggregation` is the strategy piece (and the run TOML's
``[privacy.secure_aggregation]``): the encoding's clip range, largest weight and width, the
expected dropout and corrupt fractions, and optional hand-picked degree and threshold. It checks
up front that a configuration is safe and cannot overflow for the number of nodes.

:class:`VectorLayout` is how a node's update becomes one flat vector of integers mod ``2^bits``:
each parameter's update (trained model minus global model) weighted by the node's example count,
in sorted order of the names; then, for SCAFFOLD, each control-variate delta with weight 1; then
one element holding the weight itself. Nodes and the coordinator derive the same layout from the
model's spec. Everything here is pure: no I/O, no state.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fedlearn.core.checks import Interval, Options, check_fields
from fedlearn.core.errors import ConfigError, SecureAggregationError
from fedlearn.core.params import Spec
from fedlearn.privacy.encoding import MAX_WEIGHT_LIMIT, FixedPoint, check_capacity
from fedlearn.privacy.framing import canonical
from fedlearn.privacy.graph import (
    MIN_NODES,
    Adversary,
    SecAggParameters,
    check_secagg_parameters,
    secagg_parameters,
)

ADVERSARY: Adversary = "semi-malicious"
"""The protocol assumes a coordinator that may lie about who dropped out, so thresholds meet ``2t > k + c``;
honest nodes refuse thresholds with ``2t <= k`` whatever the coordinator claims."""

DEFAULT_CLIP = 1.0
DEFAULT_MAX_WEIGHT = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class SecureAggregation:
    """Settings of secure aggregation for a strategy; see docs/secure-aggregation.md.

    ``clip``: each coordinate of an update (and of a SCAFFOLD control delta) is clipped to
    ``[-clip, clip]``. ``max_weight``: a node's example count is counted at most this. ``bits``:
    32 or 64, the width of the modular sum. ``fraction_bits``: fixed-point precision; ``None``
    picks the finest that cannot overflow. ``dropout_fraction`` / ``corrupt_fraction``: the
    fractions of nodes that may drop out during a round and that may be corrupt; they set the
    default ``degree`` and ``threshold``, which can be given by hand instead (both together). The
    adversary is always semi-malicious (:data:`ADVERSARY`).
    """

    clip: float = DEFAULT_CLIP
    max_weight: int = DEFAULT_MAX_WEIGHT
    bits: int = 32
    fraction_bits: int | None = None
    dropout_fraction: float = 0.1
    corrupt_fraction: float = 0.05
    degree: int | None = None
    threshold: int | None = None

    def __post_init__(self) -> None:
        check_fields(
            self,
            {
                "clip": Interval(0, math.inf, closed="neither"),
                "max_weight": Interval(1, MAX_WEIGHT_LIMIT - 1, integer=True),
                "bits": Options((32, 64)),
                "dropout_fraction": Interval(0, 1, closed="left"),
                "corrupt_fraction": Interval(0, 1, closed="left"),
            },
        )
        if (self.degree is None) != (self.threshold is None):
            raise ConfigError("`degree` and `threshold` of secure aggregation must be given together, or neither")
        if self.fraction_bits is not None:
            FixedPoint(clip=self.clip, max_weight=self.max_weight, fraction_bits=self.fraction_bits, bits=self.bits)

    def parameters(self, n_nodes: int) -> SecAggParameters:
        """Degree and threshold for a round over ``n_nodes`` nodes: the safe defaults, or the checked overrides.

        When the hand-picked degree does not fit this many nodes (fewer came than expected), the
        round uses full SecAgg with the hand-picked threshold, checked the same way.
        """
        if n_nodes < MIN_NODES:
            raise SecureAggregationError(
                f"secure aggregation needs at least {MIN_NODES} nodes in a round; got {n_nodes} (sample more nodes)"
            )
        common = {
            "dropout_fraction": self.dropout_fraction,
            "corrupt_fraction": self.corrupt_fraction,
            "adversary": ADVERSARY,
        }
        if self.degree is None or self.threshold is None:
            return secagg_parameters(n_nodes, **common)  # type: ignore[arg-type]
        degree = self.degree if self.degree <= n_nodes - 2 else n_nodes - 1
        return check_secagg_parameters(n_nodes, degree=degree, threshold=self.threshold, **common)  # type: ignore[arg-type]

    def encoding(self, n_nodes: int, *, noise_stddev: float = 0.0) -> FixedPoint:
        """The fixed-point encoding for sums over up to ``n_nodes`` nodes; ConfigError if it could overflow.

        ``noise_stddev`` is the distributed-DP noise each node adds (in update units): the encoding
        leaves room for it in the sum and keeps it within what the discrete sampler draws exactly.
        """
        if self.fraction_bits is None:
            return FixedPoint.fit(
                n_nodes, clip=self.clip, max_weight=self.max_weight, bits=self.bits, noise_stddev=noise_stddev
            )
        encoding = FixedPoint(
            clip=self.clip, max_weight=self.max_weight, fraction_bits=self.fraction_bits, bits=self.bits
        )
        check_capacity(n_nodes, encoding, noise_stddev=noise_stddev)
        return encoding

    def check(self, n_nodes: int) -> None:
        """Refuse up front, naming the parameter to change, a configuration unsafe or overflowing for ``n_nodes``."""
        self.parameters(n_nodes)
        self.encoding(n_nodes)


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    start: int
    size: int
    weighted: bool


@dataclass(frozen=True, slots=True)
class VectorLayout:
    """Where each array of an update lies in the flat vector that is masked and summed."""

    segments: tuple[Segment, ...]
    length: int

    @classmethod
    def of(cls, spec: Spec, *, control_names: Sequence[str] = ()) -> VectorLayout:
        """Parameters of ``spec`` (weighted) in sorted order, then ``control_names`` (weight 1), then the weight."""
        segments: list[Segment] = []
        start = 0
        for name in sorted(spec):
            size = math.prod(spec[name][0])
            segments.append(Segment(name, start, size, True))
            start += size
        for name in control_names:
            size = math.prod(spec[_param_of(name, spec)][0])
            segments.append(Segment(name, start, size, False))
            start += size
        return cls(tuple(segments), start + 1)

    @property
    def weight_index(self) -> int:
        return self.length - 1


def _param_of(control_name: str, spec: Spec) -> str:
    name = control_name.split("/", 2)[-1]
    if name not in spec:
        raise ConfigError(f"control delta {control_name!r} names no parameter of the model")
    return name


def survivors_bytes(*, run_id: str, round: int, survivors: Sequence[str]) -> bytes:
    """What a node signs in the consistency stage: the survivor set it was told, sorted."""
    return canonical("survivors", run_id, round, *sorted(survivors))


def commitment(seed: bytes) -> bytes:
    """A hiding, binding commitment to a 32-byte self-mask seed, so a wrongly rebuilt seed is caught."""
    return hashlib.sha256(canonical("self-mask-commitment", seed)).digest()


def rounding_seed(*, node_seed: int, run_id: str, round: int, node_id: str) -> bytes:
    """The stochastic-rounding seed of a simulated node, derived from its round seed (reproducible, not secret)."""
    return hashlib.sha256(canonical("rounding-seed", node_seed, run_id, round, node_id)).digest()


def to_array(data: bytes) -> np.ndarray:
    """Bytes as a read-only uint8 array, the form they travel in."""
    return np.frombuffer(data, dtype=np.uint8)


def from_array(array: np.ndarray, *, what: str, length: int | None = None) -> bytes:
    """The bytes a uint8 array carries; SecureAggregationError for another dtype, rank or length."""
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 1:
        got = f"{array.dtype}{array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
        raise SecureAggregationError(f"{what} must be a 1-D uint8 array; got {got}")
    if length is not None and array.size != length:
        raise SecureAggregationError(f"{what} must be {length} bytes; got {array.size}")
    return array.tobytes()


def node_list(value: object, *, what: str) -> tuple[str, ...]:
    """A JSON list of distinct node ids from a task config entry; SecureAggregationError otherwise."""
    try:
        nodes = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        nodes = None
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes) or len(set(nodes)) != len(nodes):
        raise SecureAggregationError(f"{what} must be a JSON list of distinct node ids")
    return tuple(nodes)


def encoding_config(encoding: FixedPoint) -> Mapping[str, int | float]:
    """The encoding as task config entries."""
    return {
        "secagg.clip": encoding.clip,
        "secagg.max_weight": encoding.max_weight,
        "secagg.fraction_bits": encoding.fraction_bits,
        "secagg.bits": encoding.bits,
    }


def encoding_from_config(config: Mapping[str, object]) -> FixedPoint:
    try:
        return FixedPoint(
            clip=float(config["secagg.clip"]),  # type: ignore[arg-type]
            max_weight=int(config["secagg.max_weight"]),  # type: ignore[call-overload]
            fraction_bits=int(config["secagg.fraction_bits"]),  # type: ignore[call-overload]
            bits=int(config["secagg.bits"]),  # type: ignore[call-overload]
        )
    except KeyError as exc:
        raise SecureAggregationError(f"the masked-input task lacks the encoding entry {exc.args[0]!r}") from None
