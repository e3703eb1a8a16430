"""The coordinator's own training on a trusted dataset: FLTrust's server model, from a learner.

FLTrust (``fedlearn.strategies.fltrust``) trusts a client update as far as it agrees with an
update the coordinator computes itself, from the global model, on a small clean "root" dataset.
The strategies layer knows neither data nor learners, so it takes that computation as a callable;
this module makes one from the pieces a run already has: its learner, a dataset and the fit
settings nodes use (``[client]``), so the server's update is made the way the clients' are, as
Cao et al. prescribe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fedlearn.client.trainer import Learner, Trainer
from fedlearn.core.messages import SEED_KEY, Scalar, freeze_config
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustedModel:
    """Fit ``trainer`` (bound to the trusted data) from the global model, once a round.

    Each call starts afresh, with no node state carried over, and draws the fit's ``seed`` from
    the round's generator, so the same run seed gives the same server model in every round.
    """

    trainer: Trainer
    config: Mapping[str, Scalar]

    def __call__(self, params: ParamSet, rng: np.random.Generator) -> ParamSet:
        config = {**self.config, SEED_KEY: int(rng.integers(2**31 - 1))}
        return self.trainer.fit(params, config, {}).params


def trusted_model(learner: Learner, data: Dataset, config: Mapping[str, Scalar] | None = None) -> TrustedModel:
    """FLTrust's server model: ``learner`` trained on the trusted ``data`` with fit ``config``."""
    return TrustedModel(trainer=learner.trainer(data), config=freeze_config(dict(config or {})))
