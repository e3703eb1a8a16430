"""scikit-learn adapters: fixed shapes across nodes, unsupported options, and a digits benchmark."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.client.sklearn_trainer import MLPLearner, SGDLearner
from fedlearn.core.errors import ConfigError, TrainerError
from fedlearn.data.dataset import Dataset
from tests.client.conftest import digits, dirichlet_parts, run_fedavg, tiny_classification, tiny_regression

LEARNERS = [
    pytest.param(SGDLearner(n_features=5, n_classes=3), id="sgd"),
    pytest.param(MLPLearner(n_features=5, n_classes=3, hidden=(8,)), id="mlp"),
]


def only_classes(data: Dataset, classes: tuple[int, ...]) -> Dataset:
    assert data.y is not None
    return data.subset(np.flatnonzero(np.isin(data.y, classes)))


@pytest.mark.parametrize("learner", LEARNERS)
@pytest.mark.parametrize("option", [{"proximal_mu": 0.1}, {"scaffold": True}])
def test_fedprox_and_scaffold_are_config_errors_suggesting_other_trainers(learner, option) -> None:
    trainer = learner.trainer(tiny_classification())
    name = next(iter(option))
    with pytest.raises(ConfigError, match=f"`{name}` is not supported.*numpy or torch trainer"):
        trainer.fit(learner.init_params(0), {**option, "seed": 0}, {})


@pytest.mark.parametrize("learner", LEARNERS)
def test_zero_proximal_mu_is_accepted(learner) -> None:
    trainer = learner.trainer(tiny_classification())
    assert trainer.fit(learner.init_params(0), {"proximal_mu": 0.0, "scaffold": False, "seed": 0}, {}).params


@pytest.mark.parametrize("learner", LEARNERS)
def test_node_missing_classes_returns_the_agreed_shapes(learner) -> None:
    params = learner.init_params(0)
    result = learner.trainer(only_classes(tiny_classification(), (0, 1))).fit(params, {"seed": 0}, {})
    assert result.params.spec() == params.spec()


@pytest.mark.parametrize("learner", LEARNERS)
def test_evaluate_on_node_missing_classes_still_reports_log_loss(learner) -> None:
    result = learner.trainer(only_classes(tiny_classification(), (2,))).evaluate(learner.init_params(0), {})
    assert np.isfinite(result.loss)
    assert 0.0 <= result.metrics["accuracy"] <= 1.0


def test_sgd_binary_classifier_has_one_row_of_coefficients() -> None:
    spec = SGDLearner(n_features=5, n_classes=2).init_params(0).spec()
    assert spec == {"coef": ((1, 5), "<f8"), "intercept": ((1,), "<f8")}


def test_mlp_binary_classifier_has_one_output_unit() -> None:
    spec = MLPLearner(n_features=5, n_classes=2, hidden=(8, 4)).init_params(0).spec()
    assert spec == {
        "coefs_0": ((5, 8), "<f8"),
        "coefs_1": ((8, 4), "<f8"),
        "coefs_2": ((4, 1), "<f8"),
        "intercepts_0": ((8,), "<f8"),
        "intercepts_1": ((4,), "<f8"),
        "intercepts_2": ((1,), "<f8"),
    }


def test_sgd_regressor_reports_mse() -> None:
    learner = SGDLearner(n_features=5, task="regression")
    trainer = learner.trainer(tiny_regression(rows=200))
    params = trainer.fit(learner.init_params(0), {"local_epochs": 5, "seed": 0}, {}).params
    result = trainer.evaluate(params, {})
    assert result.metrics == {"mse": result.loss}
    assert result.loss < 0.1


@pytest.mark.parametrize("learner", LEARNERS)
def test_one_local_step_moves_less_than_many_epochs(learner) -> None:
    trainer = learner.trainer(tiny_classification())
    params = learner.init_params(0)
    one = trainer.fit(params, {"local_steps": 1, "batch_size": 4, "seed": 0}, {}).params
    many = trainer.fit(params, {"local_epochs": 5, "seed": 0}, {}).params
    assert (one - params).l2_norm() < (many - params).l2_norm()


@pytest.mark.parametrize("learner", LEARNERS)
def test_params_of_another_shape_are_a_trainer_error(learner) -> None:
    other = MLPLearner(n_features=5, n_classes=4, hidden=(3,)).init_params(0)
    with pytest.raises(TrainerError, match="do not match this model"):
        learner.trainer(tiny_classification()).fit(other, {"seed": 0}, {})


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: SGDLearner(n_features=5, n_classes=3, loss="hinge"), "`loss` for classification must be one of"),
        (lambda: SGDLearner(n_features=5, n_classes=1), "`n_classes` must be an integer >= 2"),
        (
            lambda: SGDLearner(n_features=5, task="ranking"),  # type: ignore[arg-type]
            "`task` must be one of classification, regression",
        ),
        (lambda: MLPLearner(n_features=5, n_classes=3, hidden=()), "`hidden` must be a non-empty list"),
        (lambda: MLPLearner(n_features=5, n_classes=3, hidden=64), "`hidden` must be a non-empty list .*; got 64"),  # type: ignore[arg-type]
        (lambda: MLPLearner(n_features=5, n_classes=3, activation="gelu"), "`activation` must be"),
        (lambda: MLPLearner(n_features=5, n_classes=3, learning_rate=0), "`learning_rate` must be"),
    ],
)
def test_learners_validate_arguments(build, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        build()


@pytest.mark.slow
@pytest.mark.parametrize(
    "learner",
    [
        pytest.param(SGDLearner(n_features=64, n_classes=10), id="sgd"),
        pytest.param(MLPLearner(n_features=64, n_classes=10), id="mlp"),
    ],
)
def test_fedavg_on_non_iid_digits_reaches_ninety_percent(learner) -> None:
    train, test = digits()
    parts = dirichlet_parts(train, 20, alpha=0.5, seed=0)
    params = run_fedavg(learner, parts, rounds=20, config={"local_epochs": 1}, seed=0)
    assert learner.trainer(test).evaluate(params, {}).metrics["accuracy"] >= 0.90


def test_partial_work_ends_the_per_sample_passes_early() -> None:
    from fedlearn.client.local_sgd import LocalConfig
    from fedlearn.client.sklearn_trainer import _partial_fit_rows

    full = LocalConfig.from_config({"local_epochs": 2}, learning_rate=0.1)
    partial = LocalConfig.from_config({"local_epochs": 2, "work_fraction": 0.25}, learning_rate=0.1)

    assert sum(len(rows) for rows in _partial_fit_rows(10, full, np.random.default_rng(0))) == 20
    assert sum(len(rows) for rows in _partial_fit_rows(10, partial, np.random.default_rng(0))) == 5
