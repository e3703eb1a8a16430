"""A learner for deployment tests: the built-in NumPy softmax model whose fit can be slowed.

Node configs in the tests name it as ``tests.runtime.deploy.slow_learner:make``, so a node can
be made slow enough that a SIGKILL reliably lands in the middle of its work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fedlearn.client.learners import builtin_learner
from fedlearn.client.trainer import EvalResult, FitResult, Learner, NodeState, Trainer
from fedlearn.core.messages import Config
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset


@dataclass(frozen=True)
class SlowTrainer:
    inner: Trainer
    delay: float

    def fit(self, params: ParamSet, config: Config, state: NodeState, extras: ParamSet | None = None) -> FitResult:
        time.sleep(self.delay)
        return self.inner.fit(params, config, state)

    def evaluate(self, params: ParamSet, config: Config) -> EvalResult:
        return self.inner.evaluate(params, config)


@dataclass(frozen=True)
class SlowLearner:
    inner: Learner
    delay: float

    def init_params(self, seed: int) -> ParamSet:
        return self.inner.init_params(seed)

    def trainer(self, data: Dataset) -> SlowTrainer:
        return SlowTrainer(self.inner.trainer(data), self.delay)


def make(data: Any, *, delay: float = 0.0, **options: Any) -> SlowLearner:
    return SlowLearner(builtin_learner("numpy.softmax", data, **options), delay)
