"""A declared dataset read chunk by chunk gives exactly the columns and values of its loaded ``Dataset``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.data import load_csv
from fedlearn.data.arrow_reader import open_csv
from fedlearn.data.dataset_table import DatasetTable
from fedlearn.data.reader import dataset_layout

COLUMNS = {"smoker": ["never", "current"], "outcome": ["well", "sick"]}


@pytest.fixture
def visits(tmp_path: Path) -> Path:
    path = tmp_path / "v.csv"
    path.write_text("age,smoker,outcome\n30,never,well\n61,current,sick\n45,current,well\n")
    return path


def _table(path: Path) -> DatasetTable:
    reader = open_csv(path, text_columns=["smoker", "outcome"])
    return DatasetTable(reader, dataset_layout(reader, target="outcome", columns=COLUMNS))


def test_chunks_hold_the_loaded_datasets_features_and_target(visits: Path) -> None:
    loaded = load_csv(visits, target="outcome", columns=COLUMNS)
    assert loaded.y is not None

    chunks = list(_table(visits).chunks(["smoker=current", "y", "age"], chunk_rows=2))

    assert [len(c) for c in chunks] == [2, 1]
    np.testing.assert_array_equal(np.vstack(chunks), np.column_stack([loaded.x[:, 2], loaded.y, loaded.x[:, 0]]))


def test_schema_names_the_encoded_features_and_the_target_as_y(visits: Path) -> None:
    assert _table(visits).schema() == {"age": "float", "smoker=never": "float", "smoker=current": "float", "y": "int"}


def test_an_unknown_column_is_refused_listing_the_real_ones(visits: Path) -> None:
    with pytest.raises(ConfigError, match=r"no column\(s\) \['smoker'\]; its columns are \['age', 'smoker=never'"):
        next(_table(visits).chunks(["smoker"]))
