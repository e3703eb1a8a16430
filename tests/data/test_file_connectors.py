"""CSV and Parquet files, and DataFrames, read in batches and encoded through the one input schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedlearn.core.errors import ConfigError, SchemaError
from fedlearn.data import iter_batches, load_csv, load_frame, load_parquet
from fedlearn.data.arrow_reader import CSV_BLOCK_BYTES
from fedlearn.data.schema import Column, InputSchema

COLORS = ["red", "green", "blue"]


@pytest.fixture
def visits() -> pa.Table:
    return pa.table(
        {
            "id": [10, 11, 12, 13],
            "age": [30, 45, 52, 61],
            "color": ["red", "blue", "red", "green"],
            "bmi": [20.5, 31.0, 25.25, 22.0],
            "outcome": [1, 0, 1, 0],
        }
    )


def test_parquet_file_reads_in_batches_with_a_declared_category(tmp_path: Path, visits: pa.Table) -> None:
    pq.write_table(visits, tmp_path / "v.parquet", row_group_size=2)

    data = load_parquet(
        tmp_path / "v.parquet", target="outcome", features=["age", "color", "bmi"], columns={"color": COLORS},
        n_classes=2, batch_rows=1,
    )  # fmt: skip

    assert data.feature_names == ("age", "color=red", "color=green", "color=blue", "bmi")
    np.testing.assert_array_equal(data.x[1], [45, 0, 0, 1, 31.0])
    np.testing.assert_array_equal(data.y, [1, 0, 1, 0])
    assert data.schema is not None and data.schema.columns[1] == Column(
        name="color", type="category", categories=tuple(COLORS)
    )


def test_parquet_directory_is_read_as_one_table(tmp_path: Path, visits: pa.Table) -> None:
    (tmp_path / "parts").mkdir()
    pq.write_table(visits.slice(0, 2), tmp_path / "parts" / "a.parquet")
    pq.write_table(visits.slice(2), tmp_path / "parts" / "b.parquet")

    data = load_parquet(tmp_path / "parts", target=None, features=["age", "bmi"])

    assert sorted(data.x[:, 0]) == [30, 45, 52, 61]


def test_categories_are_encoded_identically_on_nodes_holding_different_subsets(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("color,y\nred,1\nred,0\n")
    (tmp_path / "b.csv").write_text("color,y\nblue,1\ngreen,0\n")

    a = load_csv(tmp_path / "a.csv", target="y", columns={"color": COLORS}, n_classes=2)
    b = load_csv(tmp_path / "b.csv", target="y", columns={"color": COLORS}, n_classes=2)

    assert a.feature_names == b.feature_names == ("color=red", "color=green", "color=blue")
    np.testing.assert_array_equal(a.x, [[1, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(b.x, [[0, 0, 1], [0, 1, 0]])


def test_text_column_not_declared_is_refused_at_load_naming_it(tmp_path: Path, visits: pa.Table) -> None:
    pq.write_table(visits, tmp_path / "v.parquet")

    with pytest.raises(SchemaError, match=r"column 'color' is text; declare it as a category") as info:
        load_parquet(tmp_path / "v.parquet", target="outcome", n_classes=2)
    assert info.value.column == "color"


def test_numeric_looking_category_column_of_a_csv_is_read_as_text(tmp_path: Path) -> None:
    (tmp_path / "z.csv").write_text("zone,y\n1,0.5\n3,1.5\n")

    data = load_csv(tmp_path / "z.csv", target="y", task="regression", columns={"zone": ["1", "2", "3"]})

    np.testing.assert_array_equal(data.x, [[1, 0, 0], [0, 0, 1]])


def test_missing_value_is_refused_naming_column_and_row(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("a,b\n1,2\n3,\n5,6\n")

    with pytest.raises(SchemaError, match=r"column 'b' holds a missing or infinite value at row 1"):
        load_csv(tmp_path / "m.csv", target=None)


def test_missing_category_is_refused_naming_column_and_row(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("color,b\nred,2\n,3\n")

    with pytest.raises(SchemaError, match=r"column 'color', row 1: a missing value is not one of its categories"):
        load_csv(tmp_path / "m.csv", target=None, columns={"color": COLORS})


def test_row_numbers_count_across_batches(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("color\n" + "red\n" * 10 + "purple\n")

    with pytest.raises(SchemaError, match=r"row 10: 'purple' is not one of its categories"):
        load_csv(tmp_path / "c.csv", target=None, columns={"color": COLORS}, batch_rows=3)


def test_csv_int_column_with_a_fraction_after_the_first_block_stays_numeric(tmp_path: Path) -> None:
    rows = "".join(f"{i}\n" for i in range(CSV_BLOCK_BYTES // 4))
    (tmp_path / "n.csv").write_text(f"a\n{rows}2.5\n")

    data = load_csv(tmp_path / "n.csv", target=None)

    assert data.x[-1, 0] == 2.5


def test_csv_text_after_the_first_block_is_reported_with_its_row(tmp_path: Path) -> None:
    rows = "".join(f"{i}\n" for i in range(CSV_BLOCK_BYTES // 4))
    (tmp_path / "n.csv").write_text(f"a\n{rows}abc\n")

    with pytest.raises(
        ConfigError, match=rf"n\.csv: line {CSV_BLOCK_BYTES // 4 + 2}: column 'a' holds 'abc', not a number"
    ):
        load_csv(tmp_path / "n.csv", target=None)


def test_csv_row_longer_than_a_block_is_refused(tmp_path: Path) -> None:
    (tmp_path / "huge.csv").write_text("a,b\n1," + "x" * (2 * CSV_BLOCK_BYTES) + "\n")

    with pytest.raises(ConfigError, match=rf"cannot read .*huge\.csv: a row is longer than {CSV_BLOCK_BYTES} bytes"):
        load_csv(tmp_path / "huge.csv", target=None)


def test_a_file_that_is_not_parquet_is_refused(tmp_path: Path) -> None:
    (tmp_path / "fake.parquet").write_bytes(b"PAR1 this is not parquet at all PAR1")

    with pytest.raises(ConfigError, match=r"fake\.parquet is not a readable Parquet file or directory"):
        load_parquet(tmp_path / "fake.parquet", target=None)


def test_a_date_column_is_refused_naming_it(tmp_path: Path) -> None:
    pq.write_table(pa.table({"when": pa.array([0, 1], pa.date32()), "a": [1.0, 2.0]}), tmp_path / "d.parquet")

    with pytest.raises(SchemaError, match="column 'when' is neither a number, a boolean nor text"):
        load_parquet(tmp_path / "d.parquet", target=None)


def test_a_category_target_becomes_class_codes_in_declared_order(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,label\n1,sick\n2,well\n3,sick\n")

    data = load_csv(tmp_path / "t.csv", target="label", columns={"label": ["well", "sick"]})

    np.testing.assert_array_equal(data.y, [1, 0, 1])
    assert data.n_classes == 2


def test_declaring_a_column_the_source_lacks_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a\n1\n")

    with pytest.raises(ConfigError, match=r"declared column\(s\) \['colour'\] are not in its columns \['a'\]"):
        load_csv(tmp_path / "t.csv", target=None, columns={"colour": COLORS})


def test_pandas_and_polars_frames_give_the_same_dataset() -> None:
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    frame = pd.DataFrame({"age": [30, 45], "color": pd.Categorical(["red", "blue"]), "y": [0.5, 1.5]})

    from_pandas = load_frame(frame, target="y", task="regression", columns={"color": COLORS})
    from_polars = load_frame(pl.from_pandas(frame), target="y", task="regression", columns={"color": COLORS})

    assert from_pandas.feature_names == from_polars.feature_names == ("age", "color=red", "color=green", "color=blue")
    np.testing.assert_array_equal(from_pandas.x, from_polars.x)
    np.testing.assert_array_equal(from_pandas.x, [[30, 1, 0, 0], [45, 0, 0, 1]])


def test_pandas_missing_value_is_refused_naming_column_and_row() -> None:
    pd = pytest.importorskip("pandas")

    with pytest.raises(SchemaError, match=r"column 'a' holds a missing or infinite value at row 1"):
        load_frame(pd.DataFrame({"a": [1.0, None]}), target=None)


def test_iter_batches_yields_keys_and_features_encoded_like_training(tmp_path: Path, visits: pa.Table) -> None:
    pq.write_table(visits, tmp_path / "v.parquet")
    trained = load_parquet(
        tmp_path / "v.parquet", target="outcome", features=["age", "color"], columns={"color": COLORS}, n_classes=2
    )
    assert trained.schema is not None

    batches = list(iter_batches(tmp_path / "v.parquet", trained.schema, key_columns=["id"], batch_rows=3))

    assert [len(b.features) for b in batches] == [3, 1]
    np.testing.assert_array_equal(np.concatenate([b.keys["id"] for b in batches]), [10, 11, 12, 13])
    np.testing.assert_array_equal(np.concatenate([b.features for b in batches]), trained.x)


def test_iter_batches_refuses_a_text_column_the_schema_takes_as_numbers(tmp_path: Path, visits: pa.Table) -> None:
    pq.write_table(visits, tmp_path / "v.parquet")
    schema = InputSchema.numeric(["age", "color"])

    with pytest.raises(SchemaError, match="column 'color' is text"):
        next(iter_batches(tmp_path / "v.parquet", schema))


def test_iter_batches_refuses_a_missing_key_column(visits: pa.Table) -> None:
    with pytest.raises(ConfigError, match=r"no key column\(s\) \['patient'\]"):
        next(iter_batches(visits, InputSchema.numeric(["age"]), key_columns=["patient"]))


def test_a_dataset_from_arrays_gets_a_numeric_schema_of_its_feature_names() -> None:
    from fedlearn.data import Dataset

    data = Dataset(x=np.zeros((2, 2)), feature_names=("p", "q"))

    assert data.schema == InputSchema.numeric(["p", "q"])


def test_a_large_parquet_file_is_read_in_memory_bounded_by_a_batch(tmp_path: Path) -> None:
    rows = 1_000_000  # 16 MB of values, in row groups of 10,000 rows
    values = np.random.default_rng(0).random(rows)
    pq.write_table(pa.table({"a": values, "b": values}), tmp_path / "big.parquet", row_group_size=10_000)
    base, peak, seen = pa.total_allocated_bytes(), 0, 0

    for batch in iter_batches(tmp_path / "big.parquet", InputSchema.numeric(["a", "b"]), batch_rows=10_000):
        peak = max(peak, pa.total_allocated_bytes() - base)
        seen += len(batch.features)

    assert seen == rows
    assert peak < 4_000_000  # a quarter of the file's values: nothing is read ahead (it was all, before)
