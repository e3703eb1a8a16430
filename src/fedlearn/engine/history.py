"""Per-round records of a run, and their JSON and CSV forms."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundRecord:
    """Everything measured in one round.

    ``failures`` maps each node left out of the round to the reason; ``capped`` maps each node
    whose reply counted for fewer examples than it claimed to what it claimed; ``contributors``
    names the nodes whose update went into the aggregate (under secure aggregation, the survivors
    whose masked input is in the sum), so a model's lineage can say exactly who trained it.
    """

    round: int
    sampled: int
    replies: int
    num_examples: int
    duration_s: float
    bytes_sent: int
    bytes_received: int
    fit_metrics: Mapping[str, float] = field(default_factory=dict)
    federated_metrics: Mapping[str, float] = field(default_factory=dict)
    central_metrics: Mapping[str, float] = field(default_factory=dict)
    failures: Mapping[str, str] = field(default_factory=dict)
    capped: Mapping[str, str] = field(default_factory=dict)
    secure: bool = False
    """True when the round was securely aggregated: the coordinator saw only the sum."""
    survived: int | None = None
    """Under secure aggregation, the nodes whose masked input is in the sum; None otherwise."""
    dropped: int | None = None
    """Under secure aggregation, the sampled nodes whose input is not in the sum; None otherwise."""
    epsilon: float | None = None
    """Under differential privacy, ε spent by the run so far (at its δ), this round included; None otherwise."""
    contributors: tuple[str, ...] = ()
    """The nodes whose update is in this round's aggregate, sorted; empty in records from before it was kept."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "contributors", tuple(self.contributors))  # JSON gives a list

    def to_json(self) -> dict[str, object]:
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> RoundRecord:
        return cls(**data)  # type: ignore[arg-type]


def history_to_json(history: Sequence[RoundRecord]) -> str:
    return json.dumps([r.to_json() for r in history], indent=2)


def history_from_json(text: str) -> list[RoundRecord]:
    return [RoundRecord.from_json(item) for item in json.loads(text)]


def history_to_csv(history: Sequence[RoundRecord]) -> str:
    """One row per round; metric columns are prefixed ``fit_``, ``federated_`` and ``central_``."""
    scalar = ["round", "sampled", "replies", "num_examples", "duration_s", "bytes_sent", "bytes_received"]
    if any(r.secure for r in history):  # older histories keep their columns
        scalar += ["secure", "survived", "dropped"]
    if any(r.epsilon is not None for r in history):
        scalar += ["epsilon"]
    groups = ("fit_metrics", "federated_metrics", "central_metrics")
    metric_cols: list[tuple[str, str]] = []
    for group in groups:
        names = sorted({name for r in history for name in getattr(r, group)})
        metric_cols += [(group, name) for name in names]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*scalar, *(f"{g.removesuffix('_metrics')}_{n}" for g, n in metric_cols), "failures"])
    for r in history:
        writer.writerow(
            ["" if getattr(r, c) is None else getattr(r, c) for c in scalar]
            + [getattr(r, g).get(n, "") for g, n in metric_cols]
            + [len(r.failures)]
        )
    return out.getvalue()
