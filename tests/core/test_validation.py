from __future__ import annotations

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError, ValidationError
from fedlearn.core.messages import Task
from fedlearn.core.params import ParamSet
from fedlearn.core.validation import Limits, validate_metrics, validate_num_examples, validate_params

SPEC = ParamSet({"w": np.zeros((2, 2), np.float32)}).spec()


def test_matching_params_pass() -> None:
    validate_params(ParamSet({"w": np.ones((2, 2), np.float32)}), SPEC)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (ParamSet({"w": np.ones((2, 3), np.float32)}), r"shape \(2, 3\); expected \(2, 2\)"),
        (ParamSet({"w": np.ones((2, 2), np.float64)}), "dtype float64; expected float32"),
        (ParamSet({"w": np.full((2, 2), np.nan, np.float32)}), "NaN or Inf"),
        (ParamSet({"w": np.ones((2, 2), np.float32), "x": np.ones(1)}), r"unknown parameter\(s\) \['x'\]"),
        (ParamSet({}), r"missing parameter\(s\) \['w'\]"),
    ],
)
def test_mismatches_name_the_parameter_and_the_problem(params: ParamSet, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_params(params, SPEC)


def test_size_limit_is_enforced() -> None:
    with pytest.raises(ValidationError, match="the limit is 8"):
        validate_params(ParamSet({"w": np.ones((2, 2), np.float32)}), SPEC, limits=Limits(max_bytes=8))


@pytest.mark.parametrize("count", [-1, 10**13, 1.5, True, "3"])
def test_implausible_example_counts_are_rejected(count: object) -> None:
    with pytest.raises(ValidationError, match="num_examples"):
        validate_num_examples(count)


def test_metrics_must_be_finite_numbers() -> None:
    with pytest.raises(ValidationError, match="'loss' is not finite"):
        validate_metrics({"loss": float("inf")})
    with pytest.raises(ValidationError, match="'acc' must be a number"):
        validate_metrics({"acc": "high"})


def test_task_config_rejects_non_scalar_values() -> None:
    with pytest.raises(ConfigError, match="'layers' must be a bool, int, float or str; got list"):
        Task(kind="fit", round=1, config={"layers": [1, 2]})


def test_task_config_is_read_only_copy() -> None:
    source = {"lr": 0.1}
    task = Task(kind="fit", round=1, config=source)
    source["lr"] = 9.0

    assert task.config["lr"] == 0.1
    with pytest.raises(TypeError):
        task.config["lr"] = 1.0  # type: ignore[index]
