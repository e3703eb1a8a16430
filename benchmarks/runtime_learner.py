"""A learner for transport benchmarks: N float32 parameters and next to no compute.

Its "training" adds a node-specific constant, so a round's time is the cost of moving and
aggregating parameters, which is what the runtime benchmark measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fedlearn.client.trainer import EvalResult, FitResult, NodeState
from fedlearn.core.messages import Config
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset


@dataclass(frozen=True)
class ShiftTrainer:
    rows: int

    def fit(self, params: ParamSet, config: Config, state: NodeState, extras: ParamSet | None = None) -> FitResult:
        shift = np.float32((int(config.get("seed", 0)) % 7) * 1e-3)
        return FitResult(params=params.map(lambda a: a + shift), num_examples=self.rows)

    def evaluate(self, params: ParamSet, config: Config) -> EvalResult:
        return EvalResult(loss=0.0, num_examples=self.rows)


@dataclass(frozen=True)
class BigLearner:
    size: int

    def init_params(self, seed: int) -> ParamSet:
        return ParamSet({"weight": np.random.default_rng(seed).standard_normal(self.size, dtype=np.float32)})

    def trainer(self, data: Dataset) -> ShiftTrainer:
        return ShiftTrainer(len(data))


def make(data: Any, *, size: int = 10_000_000) -> BigLearner:
    return BigLearner(size)
