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

from fedlearn.core.errors import ConfigError
from fedlearn.core.params import ParamSet

Scalar = bool | int | float | str
Config = Mapping[str, Scalar]

FIT = "fit"
EVALUATE = "evaluate"


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
