"""Worker momentum: what a node sends is the running average of its updates, kept per run."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from fedlearn.client.momentum import with_momentum
from fedlearn.client.node_app import NodeApp
from fedlearn.client.trainer import EvalResult, FitResult, NodeState
from fedlearn.core import ConfigError, ParamSet, Task
from fedlearn.core.messages import CLIENT_MOMENTUM_KEY

GLOBAL = ParamSet({"w": np.zeros(3, np.float32)})


def _model(*values: float) -> ParamSet:
    return ParamSet({"w": np.array(values, np.float32)})


def test_first_round_sends_the_update_scaled_by_one_minus_beta() -> None:
    sent = with_momentum(_model(1, 2, 3), GLOBAL, {}, beta=0.9, run_id="r")

    np.testing.assert_allclose(sent["w"], [0.1, 0.2, 0.3], rtol=1e-6)


def test_later_rounds_average_the_updates_the_node_made() -> None:
    state: NodeState = {}
    with_momentum(_model(1, 1, 1), GLOBAL, state, beta=0.5, run_id="r")

    sent = with_momentum(_model(3, 3, 3), GLOBAL, state, beta=0.5, run_id="r")

    np.testing.assert_allclose(sent["w"], [0.5 * 0.5 + 0.5 * 3] * 3, rtol=1e-6)  # m = 0.5 m + 0.5 u


def test_another_run_starts_from_zero_and_forgets_the_old_history() -> None:
    state: NodeState = {}
    with_momentum(_model(9, 9, 9), GLOBAL, state, beta=0.5, run_id="old")

    sent = with_momentum(_model(2, 2, 2), GLOBAL, state, beta=0.5, run_id="new")

    np.testing.assert_allclose(sent["w"], [1, 1, 1])
    assert list(state) == [f"{CLIENT_MOMENTUM_KEY}/new"]


def test_beta_zero_sends_the_latest_update_unchanged() -> None:
    trained = _model(1.5, -2, 3)

    sent = with_momentum(trained, GLOBAL, {}, beta=0.0, run_id="r")

    np.testing.assert_array_equal(sent["w"], trained["w"])


@pytest.mark.parametrize("beta", [1.0, -0.1, "0.9", True])
def test_an_impossible_beta_is_refused_naming_the_key(beta: object) -> None:
    with pytest.raises(ConfigError, match=CLIENT_MOMENTUM_KEY):
        with_momentum(_model(1, 1, 1), GLOBAL, {}, beta=beta, run_id="r")


class _StrictTrainer:
    """Refuses any fit-config key it does not know, as the built-in trainers do."""

    def fit(self, params: ParamSet, config: Mapping[str, object], state: NodeState) -> FitResult:
        assert set(config) <= {"seed"}, f"the trainer saw {sorted(config)}"
        return FitResult(params=params.map(lambda a: a + 1), num_examples=4)

    def evaluate(self, params: ParamSet, config: Mapping[str, object]) -> EvalResult:
        return EvalResult(loss=0.0, num_examples=4)


def test_a_node_applies_momentum_itself_and_its_trainer_never_sees_the_key() -> None:
    node = NodeApp(node_id="n", trainer=_StrictTrainer())
    task = Task(kind="fit", round=1, run_id="r", params=GLOBAL, config={CLIENT_MOMENTUM_KEY: 0.75, "seed": 1})

    first, second = node.handle(task), node.handle(task)

    assert first.ok and second.ok, (first.error, second.error)
    np.testing.assert_allclose(first.params["w"], [0.25] * 3)
    np.testing.assert_allclose(second.params["w"], [0.75 * 0.25 + 0.25] * 3)
