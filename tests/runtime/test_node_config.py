"""A node's config decides which of its rows fit tasks train on and which evaluate tasks score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedlearn.config import parse_config
from fedlearn.core.errors import ConfigError
from fedlearn.runtime.node_config import load_node_config
from fedlearn.runtime.node_runtime import build_node
from fedlearn.simulation import plan_simulation

BUILTIN = """
[datasets.digits]
source = "builtin"
name = "digits"
nodes = 4
index = 2
seed = 7
"""


def _config(tmp_path: Path, node: str, extra: str = "") -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f"[node]\nlearner = 'numpy.softmax'\n{node}\n{BUILTIN}{extra}")
    return path


def test_holdout_fraction_keeps_back_the_rows_the_simulated_twin_keeps_back(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, "holdout_fraction = 0.25\nholdout_seed = 7"))
    fit_rows, evaluation_rows = config.fit_and_evaluation_rows(config.load_datasets()) or (None, None)
    plan = plan_simulation(parse_config({"run": {"seed": 7}, "data": {"nodes": 4, "holdout_fraction": 0.25}}))

    assert fit_rows is not None and evaluation_rows is not None and plan.evaluation_data is not None
    np.testing.assert_array_equal(fit_rows.x, plan.partitions[2].x)
    np.testing.assert_array_equal(evaluation_rows.x, plan.evaluation_data[2].x)


def test_a_built_node_evaluates_with_its_held_out_rows(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, "holdout_fraction = 0.5"))
    node = build_node("n", config, config.load_datasets())

    assert node.app.evaluator is not None


def test_a_node_without_held_out_rows_evaluates_on_its_training_rows(tmp_path: Path) -> None:
    config = load_node_config(_config(tmp_path, ""))
    node = build_node("n", config, config.load_datasets())

    assert node.app.evaluator is None


def test_an_evaluation_dataset_is_a_declared_one(tmp_path: Path) -> None:
    extra = BUILTIN.replace("[datasets.digits]", "[datasets.later]").replace("index = 2", "index = 3")
    config = load_node_config(_config(tmp_path, "dataset = 'digits'\nevaluation_dataset = 'later'", extra))
    datasets = config.load_datasets()

    fit_rows, evaluation_rows = config.fit_and_evaluation_rows(datasets) or (None, None)

    assert fit_rows is datasets["digits"] and evaluation_rows is datasets["later"]


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ("holdout_fraction = 0.2\nevaluation_dataset = 'digits'", "sets both holdout_fraction and evaluation_dataset"),
        ("evaluation_dataset = 'nope'", r"evaluation_dataset 'nope' is not declared; declared: \['digits'\]"),
        ("holdout_fraction = 1.5", r"\[node\] holdout_fraction: Input should be less than 1"),
    ],
)
def test_impossible_evaluation_settings_fail_at_start_up_with_one_line(tmp_path: Path, node: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_node_config(_config(tmp_path, node))
