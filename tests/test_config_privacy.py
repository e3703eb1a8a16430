"""The run config's [privacy.differential_privacy] section: how it maps onto the strategy, and what it refuses."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from fedlearn.config import engine_config, load_config, parse_config
from fedlearn.core.errors import ConfigError
from fedlearn.privacy.accountant import Accountant, FixedSizeSampling, PoissonSampling
from fedlearn.privacy.differential import AdaptiveClipping, DifferentialPrivacy
from fedlearn.runtime.deployment import plan_deployment
from fedlearn.simulation import plan_simulation, simulate
from fedlearn.strategies.samplers import PoissonSampler

BASE = """
[run]
rounds = 10
seed = 1

[data]
dataset = "digits"
nodes = 40

[model]
learner = "numpy.softmax"

[strategy]
name = "fedavg"
{strategy}

[privacy.differential_privacy]
enabled = true
{dp}
"""


def config(strategy: str = 'sampler = "poisson"\nsampling_rate = 0.25', dp: str = "epsilon = 4.0") -> Any:
    return parse_config(tomllib.loads(BASE.format(strategy=strategy, dp=dp)))


def test_the_section_becomes_the_strategys_dp_piece() -> None:
    cfg = config(dp='epsilon = 4.0\nnoise_multiplier = 1.2\nclip = 0.5\ndelta = 1e-6\nadaptive_clipping = true\n'
                 'target_quantile = 0.7\nclip_learning_rate = 0.1\nclipped_count_stddev = 3.0')  # fmt: skip

    strategy = plan_simulation(cfg).strategy

    assert strategy.sampler == PoissonSampler(rate=0.25)
    assert strategy.differential_privacy == DifferentialPrivacy(
        noise_multiplier=1.2, epsilon=4.0, clip=0.5, delta=1e-6,
        adaptive=AdaptiveClipping(target_quantile=0.7, learning_rate=0.1, count_stddev=3.0),
    )  # fmt: skip
    assert engine_config(cfg).require_differential_privacy


@pytest.mark.slow  # the calibrator searches the accountant
def test_a_missing_noise_multiplier_is_calibrated_to_spend_exactly_the_budget() -> None:
    noise = plan_simulation(config()).strategy.differential_privacy.noise_multiplier  # type: ignore[union-attr]

    spent = Accountant(delta=1e-5).epsilon(noise_multiplier=noise, sampling=PoissonSampling(rate=0.25), rounds=10)

    assert spent == pytest.approx(4.0, rel=1e-2) and spent <= 4.0 + 1e-9


@pytest.mark.slow  # fixed-size sampling's RDP takes a while to search
def test_fixed_size_calibration_plans_with_the_nodes_and_charges_half_the_multiplier() -> None:
    noise = plan_simulation(config("fraction = 0.25")).strategy.differential_privacy.noise_multiplier  # type: ignore[union-attr]

    spent = Accountant(delta=1e-5).epsilon(
        noise_multiplier=noise / 2, sampling=FixedSizeSampling(population=40, sample=10), rounds=10
    )

    assert spent == pytest.approx(4.0, rel=1e-2) and spent <= 4.0 + 1e-9


def test_a_deployment_plan_carries_the_dp_piece() -> None:
    cfg = parse_config(
        tomllib.loads(
            BASE.format(strategy='sampler = "poisson"\nsampling_rate = 0.1', dp="epsilon = 2.0\nnoise_multiplier = 1.0")
            .replace('dataset = "digits"\nnodes = 40', "")
            .replace('learner = "numpy.softmax"', 'learner = "numpy.softmax"\nn_features = 4\nn_classes = 3')
        )
    )

    assert plan_deployment(cfg, run_id="r").strategy.differential_privacy is not None


@pytest.mark.parametrize(
    ("strategy", "dp", "message"),
    [
        ('sampler = "poisson"\nsampling_rate = 0.25', "noise_multiplier = 1.0", "`epsilon` .* is required"),
        (
            '[strategy.reducer]\nname = "krum"\nnum_byzantine = 1',
            "epsilon = 4.0",
            "cannot be combined with the Krum reducer",
        ),
        ("", 'epsilon = 4.0\nmechanism = "distributed"\nnoise_multiplier = 1.0', "needs secure aggregation"),
        ("fraction = 0.5", 'epsilon = 4.0\naccountant = "pld"', "PLD accountant cannot"),
        ("", "epsilon = 4.0\nnoise = 1.0", "noise"),
        ("", 'epsilon = 4.0\nmechanism = "distributed"', "`noise_multiplier` is required"),
    ],
)
def test_bad_combinations_give_one_clear_line(strategy: str, dp: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        plan_simulation(config(strategy, dp))
    assert "\n" not in str(refused.value)


def test_adaptive_clipping_under_secure_aggregation_is_refused() -> None:
    text = BASE.format(strategy="", dp="epsilon = 4.0\nnoise_multiplier = 1.0\nadaptive_clipping = true")
    text += "\n[privacy.secure_aggregation]\nenabled = true\n"

    with pytest.raises(ConfigError, match=r"\[privacy.differential_privacy\]: adaptive clipping cannot be used"):
        plan_simulation(parse_config(tomllib.loads(text)))


@pytest.mark.slow
def test_a_dp_simulation_from_a_toml_file_trains_digits_at_moderate_epsilon(tmp_path: Path) -> None:
    path = tmp_path / "dp.toml"
    path.write_text(
        BASE.format(strategy='sampler = "poisson"\nsampling_rate = 0.5', dp="epsilon = 8.0\nclip = 0.5")
        .replace("rounds = 10", "rounds = 15")
        .replace("nodes = 40", "nodes = 300")
        + "\n[client]\nlocal_epochs = 2\nbatch_size = 8\nlearning_rate = 0.1\n"
    )
    plan = plan_simulation(load_config(path))

    result = simulate(plan.learner, plan.partitions, plan.strategy, plan.engine, test_data=plan.test_data)

    epsilons = [r.epsilon for r in result.history]
    assert all(e is not None for e in epsilons) and epsilons[-1] <= 8.0  # type: ignore[operator]
    assert epsilons[-1] == pytest.approx(8.0, rel=0.02)  # calibrated to spend the budget
    assert result.history[-1].central_metrics["accuracy"] > 0.8
    assert math.isfinite(result.history[-1].central_metrics["loss"])


MECHANISMS = {
    "central": ("central", False),
    "central on a secure sum": ("central", True),
    "distributed": ("distributed", True),
    "local": ("local", False),
}


@pytest.mark.parametrize("name", MECHANISMS)
def test_every_mechanism_runs_end_to_end_with_the_nodes_own_dp(name: str) -> None:
    # The engine's keys meet the real node side (NodeApp + NodePrivacy): every node takes part and ε is recorded.
    mechanism, secure = MECHANISMS[name]
    parsed = config(
        strategy="",
        dp=f'mechanism = "{mechanism}"\nepsilon = 50.0\nnoise_multiplier = 0.5\n\n'
        f"[privacy.secure_aggregation]\nenabled = {str(secure).lower()}",
    )
    plan = plan_simulation(parsed.model_copy(update={"run": parsed.run.model_copy(update={"rounds": 2})}))

    result = simulate(plan.learner, plan.partitions, plan.strategy, plan.engine, test_data=plan.test_data)

    assert [r.failures for r in result.history] == [{}, {}]
    assert [r.replies for r in result.history] == [40, 40]
    first, second = (r.epsilon for r in result.history)
    assert first is not None and second is not None and 0 < first < second <= 50.0
