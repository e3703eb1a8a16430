"""Worker momentum: a node sends the running average of its updates rather than the latest one.

Karimireddy, He and Jaggi ("Learning from History for Byzantine Robust Optimization", ICML 2021)
pair centered clipping with momentum on the workers: node ``i`` keeps

    m_i = beta * m_i + (1 - beta) * update_i        (m_i = 0 before its first round)

and sends ``global + m_i``. Averaging over rounds shrinks the noise of honest updates, so the
attacker's bias stands out against a tighter honest cluster and clipping catches it. The strategy
asks for it with ``client_momentum = beta`` in the fit config (``fedlearn.strategies.centered_clipping(...,
momentum=beta)``); the node keeps ``m_i`` in its ``NodeState``, for the run that asked, and starts
again from zero for another run or another model shape.
"""

from __future__ import annotations

from fedlearn.client.trainer import NodeState
from fedlearn.core.checks import Interval, check
from fedlearn.core.messages import CLIENT_MOMENTUM_KEY
from fedlearn.core.params import ParamSet

_PREFIX = f"{CLIENT_MOMENTUM_KEY}/"
BETA = Interval(0, 1, closed="left")
"""``beta`` in ``[0, 1)``: 0 sends the latest update unchanged."""


def with_momentum(
    trained: ParamSet, global_params: ParamSet, state: NodeState, *, beta: object, run_id: str
) -> ParamSet:
    """``global + m`` after folding this round's update ``trained - global`` into the node's momentum ``m``."""
    weight = float(check(CLIENT_MOMENTUM_KEY, beta, BETA))
    key = f"{_PREFIX}{run_id}"
    for stale in [k for k in state if k.startswith(_PREFIX) and k != key]:  # another run's history
        del state[stale]
    previous = state.get(key)
    if previous is None or previous.spec() != global_params.spec():
        previous = global_params.zeros_like()
    momentum = ParamSet(
        {
            name: (weight * previous[name] + (1 - weight) * (trained[name] - base)).astype(base.dtype)
            for name, base in global_params.items()
        }
    )
    state[key] = momentum
    return ParamSet({name: (base + momentum[name]).astype(base.dtype) for name, base in global_params.items()})
