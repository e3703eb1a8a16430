from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError, SchemaError
from fedlearn.data.sources import load_csv, load_sql
from tests.sql_tables import scratch_table

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "visits.csv"
    path.write_text("age,weight,label\n30,70.5,1\n45,80,0\n52,65.25,2\n")
    return path


@pytest.fixture
def pg_table() -> Iterator[str]:
    rows = [(30, 70.5, 1), (45, 80.0, 0), (52, 65.25, 2)]
    with scratch_table(PG_URL, "visits", "age int, weight double precision, label int", rows) as table:
        yield table


def test_csv_reads_features_and_labels(csv_file: Path) -> None:
    data = load_csv(csv_file, target="label", n_classes=3)

    np.testing.assert_allclose(data.x, [[30, 70.5], [45, 80], [52, 65.25]])
    np.testing.assert_array_equal(data.y, [1, 0, 2])
    assert data.feature_names == ("age", "weight") and data.x.dtype == np.float32


def test_csv_selects_named_features(csv_file: Path) -> None:
    data = load_csv(csv_file, target="label", features=["weight"], n_classes=3)

    assert data.x.shape == (3, 1)


def test_csv_unknown_column_lists_the_real_ones(csv_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"no target column 'outcome'; its columns are \['age', 'weight', 'label'\]"):
        load_csv(csv_file, target="outcome", n_classes=3)


def test_csv_text_column_is_refused_at_load_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,label\n1,0\nabc,1\n")

    with pytest.raises(SchemaError, match="column 'a' is text; declare it as a category"):
        load_csv(path, target="label", n_classes=2)


def test_csv_label_out_of_range_is_refused(csv_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"integers in \[0, 1\]"):
        load_csv(csv_file, target="label", n_classes=2)


def test_missing_csv_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_csv(tmp_path / "nope.csv", target="label", n_classes=2)


def test_sql_query_runs_in_postgres(pg_table: str) -> None:
    data = load_sql(PG_URL, f"SELECT age, weight, label FROM {pg_table} ORDER BY age", target="label", n_classes=3)

    np.testing.assert_allclose(data.x[:, 1], [70.5, 80, 65.25])
    np.testing.assert_array_equal(data.y, [1, 0, 2])


def test_sql_regression_target(pg_table: str) -> None:
    data = load_sql(PG_URL, f"SELECT age, weight FROM {pg_table}", target="weight", task="regression")

    assert data.y is not None and data.y.dtype == np.float32 and data.n_features == 1


def test_dead_database_is_a_one_line_error_without_password() -> None:
    with pytest.raises(ConfigError, match=r"cannot read data from postgresql://postgres:\*\*\*@127\.0\.0\.1:1/test"):
        load_sql("postgresql://postgres:secret@127.0.0.1:1/test", "SELECT 1", target=None)


def test_bad_query_is_reported(pg_table: str) -> None:
    with pytest.raises(ConfigError, match="cannot read data from"):
        load_sql(PG_URL, f"SELECT nope FROM {pg_table}", target=None)
