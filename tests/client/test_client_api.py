"""The public surface of ``fedlearn.client``, the built-in learner factory and import cost."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fedlearn.client
from fedlearn.client import (
    BUILTIN_LEARNERS,
    MLPLearner,
    NumpyLearner,
    SGDLearner,
    TorchLearner,
    builtin_learner,
    check_fit_config,
)
from fedlearn.core.errors import ConfigError
from tests.client.conftest import tiny_classification, tiny_regression


def test_public_api_is_pinned() -> None:
    assert fedlearn.client.__all__ == [
        "BUILTIN_LEARNERS",
        "DatasetMeta",
        "EvalResult",
        "FitResult",
        "Handler",
        "Learner",
        "LocalConfig",
        "LossAndGrad",
        "MLPLearner",
        "MetricsFn",
        "NodeApp",
        "NodeBudget",
        "NodePrivacy",
        "NodeState",
        "NoiseFactory",
        "NumpyLearner",
        "NumpyTrainer",
        "PrivacyBudget",
        "SGDLearner",
        "SklearnTrainer",
        "TorchLearner",
        "TorchTrainer",
        "Trainer",
        "TrustedModel",
        "build_learner",
        "builtin_learner",
        "check_fit_config",
        "linear_regression",
        "mlp_classifier",
        "seeded_noise",
        "softmax_regression",
        "system_noise",
        "torch_mlp",
        "trusted_model",
    ]
    assert all(hasattr(fedlearn.client, name) for name in fedlearn.client.__all__)


def test_importing_the_client_loads_neither_sklearn_nor_torch() -> None:
    code = "import sys, fedlearn.client; print(sorted({'sklearn', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("numpy.softmax", tiny_classification(), NumpyLearner),
        ("numpy.linear", tiny_regression(), NumpyLearner),
        ("numpy.mlp", tiny_classification(), NumpyLearner),
        ("sklearn.sgd", tiny_classification(), SGDLearner),
        ("sklearn.sgd", tiny_regression(), SGDLearner),
        ("sklearn.mlp", tiny_classification(), MLPLearner),
        pytest.param("torch.mlp", tiny_classification(), TorchLearner, marks=pytest.mark.torch),
    ],
)
def test_builtin_learner_builds_a_learner_shaped_for_the_data(name, data, kind) -> None:
    if name.startswith("torch."):
        pytest.importorskip("torch")
    learner = builtin_learner(name, data)
    assert isinstance(learner, kind)
    assert learner.trainer(data).fit(learner.init_params(0), {"seed": 0}, {}).params


def test_builtin_learner_passes_options_through() -> None:
    learner = builtin_learner("sklearn.mlp", tiny_classification(), hidden=[16, 8], learning_rate=0.05)
    assert isinstance(learner, MLPLearner)
    assert (learner.hidden, learner.learning_rate) == ((16, 8), 0.05)


def test_builtin_learner_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown learner 'numpy.cnn'; built-in learners are \['numpy.linear'"):
        builtin_learner("numpy.cnn", tiny_classification())
    assert BUILTIN_LEARNERS == (
        "numpy.linear", "numpy.mlp", "numpy.softmax", "sklearn.mlp", "sklearn.sgd", "torch.mlp"
    )  # fmt: skip


def test_builtin_learner_unknown_option_lists_the_accepted_ones() -> None:
    expected = r"unknown option\(s\) lr for learner 'numpy.softmax'; valid options: init_scale, learning_rate"
    with pytest.raises(ConfigError, match=expected):
        builtin_learner("numpy.softmax", tiny_classification(), lr=0.1)


def test_builtin_learner_wrong_task_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'numpy\.softmax' needs classification data; got regression data"):
        builtin_learner("numpy.softmax", tiny_regression())


def test_builtin_learner_option_of_the_wrong_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"learner 'sklearn\.sgd': invalid option value"):
        builtin_learner("sklearn.sgd", tiny_classification(), learning_rate="fast")


def test_fit_config_keys_of_a_built_in_learner_are_checked_by_name_and_value() -> None:
    learner = builtin_learner("numpy.softmax", tiny_classification())

    check_fit_config(learner, {"local_epochs": 2, "batch_size": 8, "learning_rate": 0.1, "local_steps": 0})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) local_epoch for \[client\]"):
        check_fit_config(learner, {"local_epoch": 2})
    with pytest.raises(ConfigError, match=r"^\[client\] `batch_size` must be an integer >= 1; got 0$"):
        check_fit_config(learner, {"batch_size": 0})


def test_fit_config_of_a_learner_that_declares_no_options_is_not_checked() -> None:
    class Undeclared:
        def init_params(self, seed: int):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        def trainer(self, data):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    check_fit_config(Undeclared(), {"anything": "goes"})  # type: ignore[arg-type]
