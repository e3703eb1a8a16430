"""A learner that reports, during each fit, whether the run's initial parameters are still alive.

Coordinator tests name it as ``tests.runtime.tracked_learner:make`` and run it over an in-process
fleet, so the trainer's check sees the coordinator's own memory.
"""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedlearn.client.trainer import EvalResult, FitResult, NodeState
from fedlearn.core.messages import Config
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset

INITIAL: list[weakref.ref[np.ndarray]] = []
ALIVE_DURING_FIT: list[bool] = []


@dataclass(frozen=True)
class TrackingTrainer:
    def fit(self, params: ParamSet, config: Config, state: NodeState, extras: ParamSet | None = None) -> FitResult:
        gc.collect()
        ALIVE_DURING_FIT.append(INITIAL[-1]() is not None)
        return FitResult(params=params.map(lambda a: a + 1), num_examples=1)

    def evaluate(self, params: ParamSet, config: Config) -> EvalResult:
        return EvalResult(loss=0.0, num_examples=1)


@dataclass(frozen=True)
class TrackedLearner:
    def init_params(self, seed: int) -> ParamSet:
        weight = np.zeros(1000, np.float32)
        INITIAL.append(weakref.ref(weight))
        return ParamSet({"w": weight})

    def trainer(self, data: Dataset) -> TrackingTrainer:
        return TrackingTrainer()


def make(data: Any, **options: Any) -> TrackedLearner:
    return TrackedLearner()
