"""MLflow's scoring-protocol bodies parsed into columns: each format, and each way a body can be wrong."""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest

from fedlearn.core.errors import LimitExceeded, SchemaError
from fedlearn.registry.invocations import CSV, JSON, media_type, parse_body
from tests.registry.linear import SCHEMA

ROWS = [[30, 2, "a"], [41.5, 0, "b"]]
EXPECTED = {"age": [30, 41.5], "visits": [2, 0], "plan": ["a", "b"]}


def _parse(document: Any, *, max_rows: int = 100) -> dict[str, list[Any]]:
    return parse_body(json.dumps(document).encode(), JSON, SCHEMA, max_rows=max_rows)


@pytest.mark.parametrize(
    "document",
    [
        {"dataframe_split": {"columns": ["age", "visits", "plan"], "data": [[30, 2, "a"], [41.5, 0, "b"]]}},
        {"dataframe_split": {"columns": ["plan", "age", "visits"], "data": [["a", 30, 2], ["b", 41.5, 0]],
                             "index": [7, 8]}},
        {"dataframe_records": [{"age": 30, "visits": 2, "plan": "a"},
                               {"age": 41.5, "visits": 0, "plan": "b", "id": 9}]},
        {"inputs": [[30, 2, "a"], [41.5, 0, "b"]]},
        {"inputs": {"age": [30, 41.5], "visits": [2, 0], "plan": ["a", "b"]}},
        {"instances": [{"age": 30, "visits": 2, "plan": "a"}, {"age": 41.5, "visits": 0, "plan": "b"}]},
    ],
    ids=["split", "split-reordered-with-index", "records", "inputs-rows", "inputs-columns", "instances-records"],
)  # fmt: skip
def test_every_format_gives_the_same_columns(document: Any) -> None:
    columns = _parse(document)

    assert {name: list(columns[name]) for name in SCHEMA.names} == EXPECTED


def test_csv_body_gives_the_same_columns() -> None:
    body = b"age,visits,plan\n30,2,a\n41.5,0,b\n"

    columns = parse_body(body, CSV, SCHEMA, max_rows=10)

    assert {name: list(values) for name, values in columns.items()} == EXPECTED


def test_csv_empty_numeric_cell_is_a_missing_value_and_text_stays_text_for_the_encoder() -> None:
    columns = parse_body(b"age,visits,plan\n,x,a\n", CSV, SCHEMA, max_rows=10)

    assert {name: list(values) for name, values in columns.items()} == {"age": [None], "visits": ["x"], "plan": ["a"]}


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [("application/json", JSON), ("application/json; charset=UTF-8", JSON), ("text/csv", CSV),
     ("application/json; charset=latin-1", None), ("text/plain", None), (None, None)],
)  # fmt: skip
def test_media_type_takes_json_and_csv_in_utf8_only(content_type: str | None, expected: str | None) -> None:
    assert media_type(content_type) == expected


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([[1, 2, "a"]], "must be a JSON object with one of"),
        ({"inputs": [[1, 2, "a"]], "dataframe_records": []}, "exactly one of"),
        ({"inputs": [[1, 2, "a"]], "params": {}}, "unknown key(s) ['params']"),
        ({"data": [[1, 2, "a"]]}, "exactly one of"),
        ({"dataframe_split": {"columns": ["age"], "data": [[1]], "dtype": "x"}}, "unknown key(s) ['dtype']"),
        ({"dataframe_split": {"columns": ["age", "age"], "data": [[1, 2]]}}, "more than once"),
        ({"dataframe_split": {"columns": ["age"], "data": [[1]], "index": [1, 2]}}, "one label per row"),
        ({"dataframe_split": {"columns": ["age"], "data": [[1, 2]]}}, "row 0 must be a list of 1 values"),
        ({"dataframe_records": {"age": [1]}}, "must be a list of row objects"),
        ({"dataframe_records": [{"age": 1, "visits": 1, "plan": "a"}, [1]]}, "row 1 must be an object"),
        ({"inputs": [1, 2, "a"]}, "row 0 must be a list of 3 values"),
        ({"inputs": "age"}, "must be a list of rows or an object of columns; got a string"),
        ({"inputs": []}, "holds no rows"),
    ],
)  # fmt: skip
def test_body_that_does_not_fit_the_protocol_is_refused_in_one_line(document: Any, message: str) -> None:
    with pytest.raises(SchemaError) as caught:
        _parse(document)

    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("document", "column"),
    [
        ({"dataframe_records": [{"age": 1, "visits": 2}]}, "plan"),
        ({"inputs": {"age": [1], "visits": 2, "plan": ["a"]}}, "visits"),
        ({"inputs": [[1, [2, 3], "a"]]}, "visits"),
        ({"dataframe_split": {"columns": ["age", "visits", "plan"], "data": [[{"x": 1}, 2, "a"]]}}, "age"),
    ],
    ids=["record-lacks-a-column", "column-not-a-list", "nested-list-in-a-cell", "object-in-a-cell"],
)  # fmt: skip
def test_cell_or_column_of_the_wrong_shape_names_its_column(document: Any, column: str) -> None:
    with pytest.raises(SchemaError) as caught:
        _parse(document)

    assert caught.value.column == column


@pytest.mark.parametrize(
    "document",
    [
        {"inputs": [[1, 2, "a"]] * 11},
        {"inputs": {"age": [1.0] * 11}},
        {"dataframe_split": {"columns": ["age"], "data": [[1]] * 11}},
        {"dataframe_records": [{"age": 1}] * 11},
    ],
    ids=["rows", "columns", "split", "records"],
)
def test_rows_over_the_limit_are_refused_before_any_row_is_read(document: Any) -> None:
    with pytest.raises(LimitExceeded, match="holds 11 rows, over this server's limit of 10"):
        _parse(document, max_rows=10)


def test_csv_rows_over_the_limit_are_refused() -> None:
    with pytest.raises(LimitExceeded, match="holds 3 rows"):
        parse_body(b"age,visits,plan\n1,1,a\n1,1,a\n1,1,a\n", CSV, SCHEMA, max_rows=2)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"inputs": [[1, 2, "a"]', "not valid JSON"),
        (b'{"inputs": [["\xff", 2, "a"]]}', "not UTF-8: byte 14 is 0xff"),
        (b'{"inputs": [[' + b"1" * 5000 + b', 2, "a"]]}', "not valid JSON"),
    ],
    ids=["deep", "truncated", "not-utf8", "5000-digit-integer"],
)
def test_body_that_is_not_json_is_refused_in_one_line(body: bytes, message: str) -> None:
    with pytest.raises(SchemaError) as caught:
        parse_body(body, JSON, SCHEMA, max_rows=10)

    assert message in str(caught.value)


def test_integer_past_float64_is_refused_naming_its_column() -> None:
    with pytest.raises(SchemaError, match="'age', row 0: an integer of 401 digits is out of range") as caught:
        parse_body(b'{"inputs": [[1' + b"0" * 400 + b', 2, "a"]]}', JSON, SCHEMA, max_rows=10)

    assert caught.value.column == "age"


def test_garbage_collector_runs_again_after_a_body_that_failed_to_parse() -> None:
    with pytest.raises(SchemaError):
        parse_body(b'{"inputs": [[1, 2', JSON, SCHEMA, max_rows=10)

    assert gc.isenabled()


def test_garbage_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        _parse({"inputs": ROWS})
        assert not gc.isenabled()
    finally:
        gc.enable()
