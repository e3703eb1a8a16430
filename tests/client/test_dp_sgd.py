"""DP-SGD in the PyTorch trainer: per-example clipping, seeded reproducibility, accounting and refusals."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fedlearn.client.dp_sgd import (
    EPSILON_METRIC,
    LEDGER_STATE_KEY,
    NOISE_MULTIPLIER_METRIC,
    DpSgd,
    dp_sgd_charge,
    noise_source,
    plan_fit,
    poisson_batches,
    private_training,
)
from fedlearn.client.learners import check_fit_config
from fedlearn.client.node_app import NodeApp
from fedlearn.client.trainer import NodeState
from fedlearn.core.errors import ConfigError
from fedlearn.core.messages import (
    DP_CLIP_KEY,
    DP_DELTA_KEY,
    DP_MECHANISM_KEY,
    DP_NOISE_MULTIPLIER_KEY,
    FIT,
    Task,
)
from fedlearn.data.dataset import Dataset
from fedlearn.engine import EngineConfig
from fedlearn.privacy.accountant import Accountant, PoissonSampling
from fedlearn.privacy.ledger import PrivacyLedger
from fedlearn.privacy.noise import SeededNoise
from fedlearn.simulation import SimulationResult, simulate
from fedlearn.strategies import build_strategy
from tests.client.conftest import tiny_classification

pytest.importorskip("torch")
pytest.importorskip("opacus")
import torch  # after the skips, so this module is skipped cleanly without the extras

from fedlearn.client.torch_trainer import TorchLearner, torch_mlp

pytestmark = pytest.mark.torch

DP = {"dp_sgd": True, "dp_sgd_noise_multiplier": 1.0, "dp_sgd_max_grad_norm": 1.0, "dp_sgd_delta": 1e-5}
CONFIG = {"batch_size": 10, "local_epochs": 1, "learning_rate": 0.1, "seed": 7, **DP}


class Line(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class Normed(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8))
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _mlp(**options: object) -> TorchLearner:
    return torch_mlp(5, 3, hidden=(8,), dp_sgd_noise="seeded", **options)  # type: ignore[arg-type]


def _distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return math.sqrt(sum(float(np.sum((a[k].astype(np.float64) - b[k]) ** 2)) for k in a))


def test_dp_sgd_huge_loss_example_moves_model_at_most_lr_times_clip_plus_noise() -> None:
    # One row whose target is 1e6 away: plain SGD would move the weights by about lr * 1e6 * |x|.
    x = np.array([[3.0, -4.0, 12.0]], dtype=np.float32)
    data = Dataset(x=x, y=np.array([1e6], dtype=np.float32), task="regression", name="outlier")
    learner = TorchLearner(model_fn=Line, dp_sgd_noise="seeded")
    params = learner.init_params(0)
    sigma, clip, lr = 1e-3, 0.5, 0.1
    config = {**CONFIG, "batch_size": 1, "learning_rate": lr, "dp_sgd_noise_multiplier": sigma}
    result = learner.trainer(data).fit(params, {**config, "dp_sgd_max_grad_norm": clip}, {})
    # Rate 1, expected batch 1: the step is lr * (clipped gradient + N(0, (sigma*C)^2) on 4 coordinates).
    noise_bound = 6 * sigma * clip * math.sqrt(4)
    moved = _distance(dict(result.params), dict(params))
    assert moved <= lr * (clip + noise_bound)
    assert moved >= lr * (clip - noise_bound)  # clipped, not zeroed: the gradient's full norm is C


def test_dp_sgd_same_seed_gives_same_model_in_simulation() -> None:
    data = tiny_classification()
    learner = _mlp()
    params = learner.init_params(0)
    first = learner.trainer(data).fit(params, CONFIG, {})
    second = learner.trainer(data).fit(params, CONFIG, {})
    other = learner.trainer(data).fit(params, {**CONFIG, "seed": 8}, {})
    assert first.params.bitwise_equal(second.params)
    assert not first.params.bitwise_equal(other.params)


def test_dp_sgd_reports_epsilon_of_our_accountant_composed_across_fits() -> None:
    data = tiny_classification(rows=60)
    trainer = _mlp().trainer(data)
    params = _mlp().init_params(0)
    state: NodeState = {}
    first = trainer.fit(params, CONFIG, state)
    second = trainer.fit(params, {**CONFIG, "seed": 8}, state)
    one_fit = dp_sgd_charge(noise_multiplier=1.0, rate=10 / 60, steps=6)
    ledger = PrivacyLedger(delta=1e-5).plus(one_fit)
    assert first.metrics[EPSILON_METRIC] == ledger.epsilon()
    assert second.metrics[EPSILON_METRIC] == ledger.plus(one_fit).epsilon()
    assert "loss" not in first.metrics  # an unnoised training loss is not covered by DP
    assert list(state[LEDGER_STATE_KEY]["count"]) == [12]


def test_dp_sgd_charge_matches_opacus_rdp_accountant() -> None:
    from opacus.accountants import RDPAccountant

    for sigma, rate, steps in [(1.0, 0.01, 100), (1.1, 0.05, 40), (2.0, 0.5, 3)]:
        opacus = RDPAccountant()
        opacus.history = [(sigma, rate, steps)]
        ours = PrivacyLedger(delta=1e-5).plus(dp_sgd_charge(noise_multiplier=sigma, rate=rate, steps=steps))
        # Same event; the two libraries search different Rényi orders, so they agree to about 1e-5.
        assert ours.epsilon() == pytest.approx(opacus.get_epsilon(1e-5), rel=1e-4)


@pytest.mark.slow  # the calibration search takes about 2 s
def test_dp_sgd_target_epsilon_calibrates_each_fit_to_that_epsilon() -> None:
    data = tiny_classification(rows=20)
    config = {key: value for key, value in CONFIG.items() if key != "dp_sgd_noise_multiplier"}
    learner = _mlp()
    result = learner.trainer(data).fit(learner.init_params(0), {**config, "dp_sgd_target_epsilon": 4.0}, {})
    sigma = result.metrics[NOISE_MULTIPLIER_METRIC]
    spent = Accountant(delta=1e-5).epsilon(noise_multiplier=sigma, sampling=PoissonSampling(rate=0.5), rounds=2)
    assert result.metrics[EPSILON_METRIC] == spent
    assert spent == pytest.approx(4.0, rel=1e-3)
    assert spent <= 4.0


def test_dp_sgd_trainer_charge_is_known_before_the_fit() -> None:
    trainer = _mlp().trainer(tiny_classification(rows=60))
    assert trainer.dp_sgd_charge(CONFIG) == dp_sgd_charge(noise_multiplier=1.0, rate=1 / 6, steps=6)
    assert trainer.dp_sgd_charge({"batch_size": 10}) is None


def test_dp_sgd_node_settings_apply_whatever_the_fit_config_asks() -> None:
    # Attack: a coordinator turns DP-SGD off, or asks for almost no noise, on a node that set its own.
    learner = _mlp(dp_sgd={"noise_multiplier": 2.0, "max_grad_norm": 0.5})
    trainer = learner.trainer(tiny_classification())
    for asked in ({"dp_sgd": False}, {**DP, "dp_sgd_noise_multiplier": 1e-6}):
        result = trainer.fit(learner.init_params(0), {"batch_size": 10, "seed": 1, **asked}, {})
        assert result.metrics[NOISE_MULTIPLIER_METRIC] == 2.0


def test_dp_sgd_deployed_noise_is_not_derived_from_the_task_seed() -> None:
    # Attack: the coordinator chose the seed; if the noise followed from it, it could subtract the noise.
    learner = torch_mlp(5, 3, hidden=(8,))  # dp_sgd_noise="system" by default
    data = tiny_classification()
    params = learner.init_params(0)
    first = learner.trainer(data).fit(params, CONFIG, {})
    second = learner.trainer(data).fit(params, CONFIG, {})
    assert not first.params.bitwise_equal(second.params)


def test_dp_sgd_empty_poisson_batches_release_noise_only() -> None:
    learner = _mlp()
    config = {**CONFIG, "batch_size": 1, "local_steps": 20}  # rate 1/60: most batches are empty
    result = learner.trainer(tiny_classification()).fit(learner.init_params(0), config, {})
    assert all(np.isfinite(v).all() for v in result.params.values())
    assert result.metrics[EPSILON_METRIC] > 0


def test_dp_sgd_batch_norm_model_is_refused_naming_the_layer_and_fix() -> None:
    learner = TorchLearner(model_fn=Normed, dp_sgd_noise="seeded")
    with pytest.raises(ConfigError, match=r"layer 'body\.1' \(BatchNorm1d\).*GroupNorm"):
        learner.trainer(tiny_classification()).fit(learner.init_params(0), CONFIG, {})


def test_dp_sgd_node_settings_with_batch_norm_model_are_refused_when_the_node_starts() -> None:
    learner = TorchLearner(model_fn=Normed, dp_sgd=DpSgd(noise_multiplier=1.0))
    with pytest.raises(ConfigError, match=r"layer 'body\.1' \(BatchNorm1d\)"):
        learner.trainer(tiny_classification())


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("dp_sgd_noise_multiplier", -1.0, r"`dp_sgd_noise_multiplier` must be in \(0, inf\); got -1.0"),
        ("dp_sgd_max_grad_norm", 0.0, r"`dp_sgd_max_grad_norm` must be in \(0, inf\); got 0.0"),
        ("dp_sgd_delta", 1.5, r"`dp_sgd_delta` must be in \(0, 1\); got 1.5"),
        ("dp_sgd_noise_multiplier", math.nan, r"`dp_sgd_noise_multiplier` must be in \(0, inf\); got nan"),
        ("dp_sgd", "yes", r"`dp_sgd` must be true or false"),
    ],
)
def test_dp_sgd_bad_value_is_refused_at_submission_and_on_the_node(key: str, value: object, message: str) -> None:
    config = {**{k: v for k, v in CONFIG.items() if k != "seed"}, key: value}
    with pytest.raises(ConfigError, match=message):
        check_fit_config(_mlp(), config)
    with pytest.raises(ConfigError, match=message):
        DpSgd.from_config(config)


def test_dp_sgd_settings_without_switch_or_noise_are_refused() -> None:
    with pytest.raises(ConfigError, match="not `dp_sgd = true`"):
        DpSgd.from_config({"dp_sgd_noise_multiplier": 1.0})
    with pytest.raises(ConfigError, match="exactly one of `dp_sgd_noise_multiplier` and `dp_sgd_target_epsilon`"):
        DpSgd.from_config({"dp_sgd": True})


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
@pytest.mark.parametrize("kind", ["seeded", "system"])
def test_dp_sgd_noise_std_is_sigma_times_clip_over_expected_batch(kind: str) -> None:
    module = torch.nn.Linear(100, 100)
    plan = plan_fit(DpSgd(noise_multiplier=0.7, max_grad_norm=3.0), batch_size=4, rows=8, steps=1)
    source = noise_source(kind, np.random.default_rng(0))  # type: ignore[arg-type]
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    wrapped, dp_optimizer = private_training(module, optimizer, plan, source, secure=kind == "system")
    (wrapped(torch.ones(4, 100)) * 0).sum().backward()  # every example's gradient is zero: noise alone
    dp_optimizer.pre_step()
    wrapped._close()
    noise = module.weight.grad.numpy().ravel() * plan.expected_batch_size
    assert noise.mean() == pytest.approx(0, abs=0.05)
    assert noise.std() == pytest.approx(0.7 * 3.0, rel=0.03)


def test_dp_sgd_poisson_batches_include_each_row_with_the_rate() -> None:
    source = SeededNoise(np.random.default_rng(0))
    sizes = [len(b) for b in poisson_batches(source, rows=1000, rate=0.1, steps=200)]
    assert np.mean(sizes) == pytest.approx(100, rel=0.02)
    assert np.std(sizes) == pytest.approx(math.sqrt(1000 * 0.1 * 0.9), rel=0.2)


def test_dp_sgd_plan_caps_rate_at_one_for_small_nodes() -> None:
    plan = plan_fit(DpSgd(noise_multiplier=1.0), batch_size=32, rows=10, steps=3)
    assert plan.rate == 1.0
    assert plan.expected_batch_size == 10


def _simulate(executor: str) -> SimulationResult:
    data = tiny_classification(rows=90)
    parts = [data.subset(np.arange(i, 90, 3)) for i in range(3)]
    learner = torch_mlp(5, 3, hidden=(8,), dp_sgd_noise="seeded")
    client = {"batch_size": 10, "local_epochs": 1, "learning_rate": 0.1, **DP}
    config = EngineConfig(rounds=2, seed=3, client_config=client)
    return simulate(learner, parts, build_strategy("fedavg"), config, executor=executor)  # type: ignore[arg-type]


def test_dp_sgd_simulation_reports_each_node_epsilon_composed_over_its_rounds() -> None:
    history = _simulate("inprocess").history
    two_fits = PrivacyLedger(delta=1e-5).plus(dp_sgd_charge(noise_multiplier=1.0, rate=1 / 3, steps=6))
    assert history[-1].fit_metrics[EPSILON_METRIC] == pytest.approx(two_fits.epsilon())


@pytest.mark.slow
def test_dp_sgd_simulation_is_reproducible_across_executors() -> None:
    reference = _simulate("inprocess").params
    assert _simulate("inprocess").params.bitwise_equal(reference)
    assert _simulate("pool").params.bitwise_equal(reference)


# the node's lifetime budget -------------------------------------------------------------------


def _budgeted_node(tmp_path: Path, epsilon: float) -> NodeApp:
    from fedlearn.client.budget import NodeBudget
    from fedlearn.client.node_privacy import NodePrivacy

    data = tiny_classification(60, 5, 3)
    return NodeApp(
        node_id="n0",
        trainer=_mlp().trainer(data),
        privacy=NodePrivacy(budget=NodeBudget.open(tmp_path / "ledger.json", epsilon=epsilon)),
    )


def _fit_task(round_number: int, **config: object) -> Task:
    params = _mlp().init_params(0)
    return Task(kind=FIT, round=round_number, run_id="r", params=params, config={**CONFIG, **config})


def test_dp_sgd_fit_charges_the_node_budget_and_is_refused_past_it(tmp_path: Path) -> None:
    node = _budgeted_node(tmp_path, epsilon=6.0)
    charge = node.trainer.dp_sgd_charge(_fit_task(1).config)  # type: ignore[union-attr]
    assert charge is not None
    replies = [node.handle(_fit_task(number)) for number in range(1, 6)]
    served = [reply for reply in replies if reply.error is None]
    refused = [reply for reply in replies if reply.error is not None]
    ledger = node.privacy.budget.ledger  # type: ignore[union-attr]
    assert served and refused, "a budget of ε = 6 takes some DP-SGD fits, then refuses"
    assert ledger.charges == (replace(charge, count=charge.count * len(served)),)
    assert ledger.epsilon() <= 6.0
    assert "lifetime budget" in (refused[0].error or "")
    assert all(reply.error is not None for reply in replies[len(served) :]), "once refused, always refused"


def test_dp_sgd_fit_inside_a_dp_run_spends_both_charges_or_neither(tmp_path: Path) -> None:
    node = _budgeted_node(tmp_path, epsilon=1e-3)  # less than either charge
    run_dp = {DP_MECHANISM_KEY: "central", DP_CLIP_KEY: 1.0, DP_NOISE_MULTIPLIER_KEY: 1.0, DP_DELTA_KEY: 1e-5}
    reply = node.handle(_fit_task(1, **run_dp))
    assert reply.error is not None and "lifetime budget" in reply.error
    assert node.privacy.budget.ledger.charges == ()  # type: ignore[union-attr]
