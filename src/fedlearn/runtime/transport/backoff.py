"""How long a node waits before dialling the coordinator again.

Delays grow exponentially up to a cap, so a coordinator that is down for an hour is not hammered,
and each delay is drawn from the upper half of its range ("equal jitter"), so nodes that lost the
coordinator at the same instant do not all come back at the same instant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from fedlearn.core.errors import ConfigError

_MAX_DOUBLINGS = 64  # past this the cap has long been reached; keeps the power finite


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ConfigError(f"backoff needs 0 < initial <= maximum; got {self.initial} and {self.maximum}")
        if self.multiplier < 1:
            raise ConfigError(f"backoff `multiplier` must be >= 1; got {self.multiplier}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
        ceiling = min(self.maximum, self.initial * self.multiplier ** min(attempt, _MAX_DOUBLINGS))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)
