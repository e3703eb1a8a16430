"""The input schema's encoder: the same features on every node and endpoint, and errors that name the column."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError, SchemaError
from fedlearn.data.schema import Column, InputSchema

SCHEMA = InputSchema(
    (
        Column(name="age", type="int"),
        Column(name="color", type="category", categories=("red", "green", "blue")),
        Column(name="smoker", type="bool"),
        Column(name="bmi"),
    )
)


def test_encode_builds_one_indicator_per_category_in_declared_order() -> None:
    x = SCHEMA.encode(
        {"bmi": [20.5, 31.0], "smoker": [True, 0], "color": ["blue", "red"], "age": [40, 51], "id": [7, 8]}
    )

    assert SCHEMA.feature_names == ("age", "color=red", "color=green", "color=blue", "smoker", "bmi")
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, [[40, 0, 0, 1, 1, 20.5], [51, 1, 0, 0, 0, 31.0]])


def test_a_node_without_some_category_still_builds_every_column() -> None:
    assert SCHEMA.encode({"age": [1], "color": ["red"], "smoker": [0], "bmi": [1.0]}).shape == (1, SCHEMA.n_features)


@pytest.mark.parametrize(
    ("columns", "column", "words"),
    [
        ({"age": [1], "color": ["red"], "smoker": [0]}, "bmi", "has no column 'bmi'"),
        ({"age": ["old"], "color": ["red"], "smoker": [0], "bmi": [1.0]}, "age", "row 0 holds 'old'"),
        ({"age": [1.5], "color": ["red"], "smoker": [0], "bmi": [1.0]}, "age", "must be int"),
        ({"age": [1], "color": ["purple"], "smoker": [0], "bmi": [1.0]}, "color", "'purple' is not one of"),
        ({"age": [1], "color": ["red"], "smoker": [2], "bmi": [1.0]}, "smoker", "must be bool"),
        ({"age": [1], "color": ["red"], "smoker": [0], "bmi": [float("nan")]}, "bmi", "missing or infinite"),
        ({"age": [1], "color": ["red"], "smoker": [0], "bmi": [None]}, "bmi", "a missing value"),
        ({"age": [1, 2], "color": ["red"], "smoker": [0], "bmi": [1.0]}, "color", "has 1 rows, others have 2"),
    ],
)
def test_encode_refuses_rows_that_do_not_fit_and_names_the_column(columns: dict, column: str, words: str) -> None:
    with pytest.raises(SchemaError, match=words) as caught:
        SCHEMA.encode(columns)
    assert caught.value.column == column


def test_schema_survives_json() -> None:
    assert InputSchema.from_json(SCHEMA.to_json()) == SCHEMA


@pytest.mark.parametrize(
    "bad",
    [
        [{"name": "c", "type": "category"}],
        [{"name": "c", "type": "text"}],
        [{"name": "c", "categories": ["a"]}],
        [{"name": "c", "type": "category", "categories": ["a", "a"]}],
        [{"name": "a"}, {"name": "a"}],
        [{"name": "a", "kind": "float"}],
        [],
    ],
)
def test_malformed_schemas_are_refused(bad: list) -> None:
    with pytest.raises(ConfigError):
        InputSchema.from_json(bad)
