"""Tables stream named columns in bounded chunks: memory does not grow with the row count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedlearn.analytics import ArrayTable, ConcatTable, CsvTable, SummarySpec, accumulate, table_from_dataset
from fedlearn.core import ConfigError
from fedlearn.data.dataset import Dataset


def test_csv_table_streams_chunks_of_bounded_size(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,name\n" + "".join(f"{i},{i * 0.5},row{i}\n" for i in range(1000)))
    chunks = list(CsvTable(path).chunks(["b", "a"], chunk_rows=64))
    assert max(len(c) for c in chunks) == 64
    stacked = np.vstack(chunks)
    np.testing.assert_array_equal(stacked[:, 1], np.arange(1000))
    np.testing.assert_array_equal(stacked[:, 0], np.arange(1000) * 0.5)


def test_csv_schema_infers_int_float_and_text(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b,c\n1,2.5,x\n2,3,y\n")
    assert CsvTable(path).schema() == {"a": "int", "b": "float", "c": "str"}


def test_text_columns_cannot_be_summarised(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,b\n1,x\n")
    table = ArrayTable({"a": np.arange(3.0), "b": np.array(["x", "y", "z"])})
    with pytest.raises(ConfigError, match="column 'b' is text"):
        accumulate(table, SummarySpec(columns=("a", "b")))


def test_summarising_a_dataset_uses_its_feature_names_and_y() -> None:
    data = Dataset(x=np.arange(12.0).reshape(6, 2), y=np.arange(6.0), task="regression", feature_names=("p", "q"))
    summary = accumulate(data, SummarySpec(columns=("q", "p"), target="y"))
    np.testing.assert_array_equal(summary.moments.mean, [6.0, 5.0, 2.5])


def test_dataset_target_name_must_not_clash_with_a_feature() -> None:
    data = Dataset(x=np.ones((3, 1)), y=np.ones(3), task="regression", feature_names=("y",))
    with pytest.raises(ConfigError, match="clashes with a feature name"):
        table_from_dataset(data)


def test_array_table_removes_one_matching_row_per_removed_row() -> None:
    table = ArrayTable({"a": np.array([1.0, 2.0, 2.0, 3.0])})
    left = table.without(ArrayTable({"a": np.array([2.0])}))
    np.testing.assert_array_equal(np.vstack(list(left.chunks(["a"]))).ravel(), [1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="not in the table"):
        table.without(ArrayTable({"a": np.array([9.0])}))


def test_concat_table_reads_its_parts_in_order() -> None:
    both = ConcatTable([ArrayTable({"a": np.array([1.0])}), ArrayTable({"a": np.array([2.0, 3.0])})])
    np.testing.assert_array_equal(np.vstack(list(both.chunks(["a"]))).ravel(), [1.0, 2.0, 3.0])


def test_array_table_copies_its_input_so_later_edits_do_not_leak_in() -> None:
    column = np.arange(3.0)
    table = ArrayTable({"a": column})
    column[0] = 99.0
    assert next(table.chunks(["a"]))[0, 0] == 0.0
