"""FLTrust: the coordinator's own update on a small trusted dataset decides whom to trust.

Cao, Fang, Liu and Gong, "FLTrust: Byzantine-robust Federated Learning via Trust
Bootstrapping", NDSS 2021. The other robust reducers judge an update by how it compares with
the other updates, which fails once attackers are many or honest nodes disagree. FLTrust judges
it against an update the coordinator computes itself, from the global model, on a small clean
"root" dataset it holds (the paper's is 100 examples).

The strategies layer knows no data and no learners, so the coordinator's training arrives as a
:class:`ServerModel`: any callable from the global model and the round's generator to the model
trained on the root dataset. ``fedlearn.client.trusted.trusted_model`` builds one from a
learner and a dataset, and a simulation's run config gets one with ``[strategy.reducer]
name = "fltrust"`` and ``trusted_examples``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from fedlearn.core.checks import name_mismatch
from fedlearn.core.errors import ConfigError, QuorumError, ValidationError
from fedlearn.core.params import ParamSet
from fedlearn.strategies.accumulators import Flats, RunningSum, check_model, check_weight, difference_blocks, flat
from fedlearn.strategies.base import Reducer, RoundReducer


@runtime_checkable
class ServerModel(Protocol):
    def __call__(self, params: ParamSet, rng: np.random.Generator) -> ParamSet:
        """The model the coordinator trains from ``params`` on its trusted dataset, drawing only from ``rng``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class FLTrust(RoundReducer):
    """The trust-weighted mean of the client updates, each rescaled to the server update's norm.

    With ``g0`` the server update (the server model minus the global model) and ``g_i`` a
    client's update, the trust score is ``ts_i = max(0, cos(g_i, g0))``: an update that points
    away from the server's, or at right angles to it, gets no weight at all. Each update is
    rescaled to ``||g0||``, so no node gains pull by sending a large update, and the result is
    ``sum_i ts_i * (||g0|| / ||g_i||) * g_i / sum_i ts_i``. When no update has a positive score
    (or the server update is zero) the result is zero: the model stays where it is, as the
    paper prescribes. An update of norm zero has no direction and scores zero. Weights other
    than 0 are ignored, since trust comes from the direction, not from a self-reported count.

    A round reducer only because the server's training may draw random numbers: it is bound
    to each round's generator and keeps no state.

    Memory: O(model), streaming: each update is scored and folded into a float64 sum as it
    arrives; the server update is held as float64 for the round (two more model sizes). The
    server's training runs once a round, when the round's accumulator is made.
    """

    server_model: ServerModel

    streaming: ClassVar[bool] = True
    needs_each_update: ClassVar[str] = "it scores each update by its direction against the server's own"

    def __post_init__(self) -> None:
        if not callable(self.server_model):
            raise ConfigError(
                "`server_model` must be a callable (params, rng) -> the model trained on the trusted dataset; "
                f"got {type(self.server_model).__name__}"
            )

    def init_state(self, params: ParamSet) -> ParamSet:
        return ParamSet()

    def bind(self, state: ParamSet, rng: np.random.Generator) -> Reducer:
        return _TrustRound(server_model=self.server_model, rng=rng)

    def next_state(self, state: ParamSet, update: ParamSet) -> ParamSet:
        return ParamSet()


class _Trust:
    __slots__ = ("count", "direction", "norm", "sums", "trust")

    def __init__(self, template: ParamSet, direction: Flats) -> None:
        self.sums = RunningSum(template)
        self.direction = direction
        self.norm = math.sqrt(math.fsum(float(np.dot(d, d)) for d in direction.values()))
        self.trust = 0.0
        self.count = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class _TrustRound(Reducer[_Trust]):
    server_model: ServerModel
    rng: np.random.Generator

    streaming: ClassVar[bool] = True

    def init(self, template: ParamSet) -> _Trust:
        server = self.server_model(template, self.rng)
        mismatch = name_mismatch(server, template)
        if mismatch or any(server[k].shape != template[k].shape for k in template):
            raise ValidationError(
                f"fltrust's server model does not match the global model: {mismatch or 'shapes differ'}"
            )
        base = flat(template)
        direction = {k: np.subtract(server[k].reshape(-1), base[k]).astype(np.float64) for k in base}
        return _Trust(template, direction)

    def add(self, acc: _Trust, model: ParamSet, weight: float) -> _Trust:
        check_model(acc.sums.spec, model)
        if check_weight(weight) == 0:
            return acc
        acc.count += 1
        dot = squares = 0.0
        for name, columns, block in difference_blocks(model, acc.sums.base):
            dot += float(np.dot(block, acc.direction[name][columns]))
            squares += float(np.dot(block, block))
        norm = math.sqrt(squares)
        if norm == 0 or acc.norm == 0:
            return acc
        trust = max(0.0, dot / (norm * acc.norm))
        if trust > 0:
            acc.sums.add(model, trust * acc.norm / norm)
            acc.trust += trust
        return acc

    def result(self, acc: _Trust) -> ParamSet:
        if acc.count == 0:
            raise QuorumError("fltrust needs at least 1 update(s) of weight > 0; got 0")
        if acc.trust == 0:
            return acc.sums.divided(1.0)  # nothing was added: the zero update
        return acc.sums.divided(acc.trust)


def fltrust(server_model: ServerModel) -> FLTrust:
    """FLTrust with the coordinator's training on its trusted dataset as ``server_model``. Streams."""
    return FLTrust(server_model=server_model)
