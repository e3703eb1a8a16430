"""Bad input to a scoring job: one clear line, and nothing already written is lost or half-written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from numpy.typing import NDArray

from fedlearn.core.errors import ConfigError
from fedlearn.registry.scoring import ScoringJob, score
from tests.registry.scoring.databases import MARIADB_URL, ScratchDatabase, rows_of
from tests.registry.scoring.models import LinearModel


def test_a_missing_key_column_is_named_with_the_real_ones(sqlite_db: ScratchDatabase) -> None:
    job = sqlite_db.job(sqlite_db.source(rows_of(3)), keys=("customer",))

    with pytest.raises(
        ConfigError, match=r"the source has no column\(s\) \['customer'\]; its columns are \['id', 'x1', 'x2'\]"
    ):
        score(LinearModel(), job)


def test_a_key_repeated_within_a_chunk_is_refused_before_writing(sqlite_db: ScratchDatabase) -> None:
    job = sqlite_db.job(sqlite_db.source([(1, 1.0, 0.0), (2, 1.0, 0.0), (2, 0.0, 1.0)]))

    with pytest.raises(ConfigError, match=r"the source holds the key 2 more than once"):
        score(LinearModel(), job)
    assert not sa.inspect(sqlite_db.engine).has_table(job.write)


def test_a_key_repeated_across_chunks_is_refused_and_earlier_chunks_stay(database: ScratchDatabase) -> None:
    rows = rows_of(12)
    table = database.source([*rows[:8], (8, 0.0, 1.0), *rows[8:]])  # key 8 ends chunk one and starts chunk two
    job = database.job(table)

    with pytest.raises(ConfigError, match=r"the source holds the key 8 more than once"):
        score(LinearModel(), job)
    assert database.sql(f"SELECT COUNT(*), MAX(id) FROM {job.write}")[0] == (8, 8)
    assert database.sql(f"SELECT rows_done FROM {job.progress_table}") == [(8,)]


@pytest.mark.parametrize(
    "url",
    ["postgresql://postgres:secret@127.0.0.1:1/test", MARIADB_URL.replace(":3306", ":1")],
    ids=["postgresql", "mariadb"],
)
def test_a_dead_database_is_one_line_without_the_password(url: str) -> None:
    job = ScoringJob(source=url, table="visits", keys=("id",), write="scores")

    with pytest.raises(ConfigError, match=r"^cannot connect to (postgresql|mysql)://\S+:1/test: ") as raised:
        score(LinearModel(), job)
    assert "secret" not in str(raised.value) and "\n" not in str(raised.value)


def test_a_dead_sink_loses_nothing_and_a_rerun_elsewhere_scores_all(
    sqlite_db: ScratchDatabase, tmp_path: object
) -> None:
    source = sqlite_db.source(rows_of(5))
    dead = ScoringJob(source=sqlite_db.url, table=source, keys=("id",), write="scores",
                      write_url="postgresql://postgres@127.0.0.1:1/test")  # fmt: skip

    with pytest.raises(ConfigError, match=r"cannot connect to postgresql://postgres@127\.0\.0\.1:1/test"):
        score(LinearModel(), dead)
    assert score(LinearModel(), sqlite_db.job(source)).rows_scored == 5


def test_an_existing_table_with_other_columns_is_refused_naming_them(database: ScratchDatabase) -> None:
    job = database.job(database.source(rows_of(3)))
    database.sql(f"CREATE TABLE {job.write} (id BIGINT PRIMARY KEY, score FLOAT, model_version VARCHAR(20))")
    database.sql(f"INSERT INTO {job.write} VALUES (1, 0.5, 'old/1')")

    with pytest.raises(ConfigError, match=r"does not fit these predictions: missing \['prediction', 'scored_at'\], "
                                          r"unexpected \['score'\]"):  # fmt: skip
        score(LinearModel(), job)
    assert database.sql(f"SELECT * FROM {job.write}") == [(1, 0.5, "old/1")]


def test_an_existing_table_keyed_otherwise_is_refused(sqlite_db: ScratchDatabase) -> None:
    job = sqlite_db.job(sqlite_db.source(rows_of(3)))
    sqlite_db.sql(f"CREATE TABLE {job.write} (id BIGINT, prediction BIGINT, model_version TEXT, scored_at TIMESTAMP)")

    with pytest.raises(ConfigError, match=r"must have the primary key \['id'\]; it has none"):
        score(LinearModel(), job)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"table": "visits; DROP TABLE x"}, r"`table` must be TABLE or SCHEMA\.TABLE"),
        ({"write": "scores--"}, r"`write` must be TABLE or SCHEMA\.TABLE"),
        ({"chunk_rows": 10**7}, r"`chunk_rows` must be at most 1,000,000; got 10,000,000"),
        ({"chunk_rows": 0}, r"`chunk_rows` must be an integer >= 1; got 0"),
        ({"keys": ()}, r"`key` must name one or more distinct columns"),
        ({"table": None}, r"a SQL source needs exactly one of `query` and `table`"),
    ],
)
def test_bad_options_are_refused(sqlite_db: ScratchDatabase, options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        score(LinearModel(), sqlite_db.job(sqlite_db.source(rows_of(1)), **options))


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("NULL", r"key column 'id' must hold integers or text; it holds a missing value"),
        ("1.5", r"key column 'id' must hold integers or text; it holds 1\.5 \(float\)"),
        (f"'{'k' * 300}'", r"key column 'id' holds a key of 300 characters; at most 255"),
    ],
)
def test_keys_that_cannot_identify_a_row_are_refused(sqlite_db: ScratchDatabase, key: str, message: str) -> None:
    table = sqlite_db.source([], columns="id, x1 FLOAT, x2 FLOAT")
    sqlite_db.sql(f"INSERT INTO {table} VALUES ({key}, 1.0, 2.0)")

    with pytest.raises(ConfigError, match=message):
        score(LinearModel(), sqlite_db.job(table))


def test_probabilities_of_a_regression_model_are_refused(sqlite_db: ScratchDatabase) -> None:
    job = sqlite_db.job(sqlite_db.source(rows_of(1)), probabilities=True)

    with pytest.raises(ConfigError, match=r"`probabilities` needs a classification model; price/1 is regression"):
        score(LinearModel(version="price/1", task="regression"), job)


@dataclass(frozen=True)
class _BrokenModel(LinearModel):
    """Predicts what it is given in ``output``, whatever the rows."""

    output: tuple[object, ...] = ()

    def predict(self, features: NDArray[np.float32]) -> NDArray[Any]:
        return np.asarray(self.output)


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ((1, float("nan")), r"churn/1 gave a non-finite prediction for the key 2"),
        ((0, 0.5), r"churn/1 is a classifier but predicted 0\.5, not a class index"),
        (("yes", "no"), r"churn/1 must predict one number per row; it gave <U3 \[2\] for 2 rows"),
        ((1,), r"churn/1 must predict one number per row; it gave int64 \[1\] for 2 rows"),
    ],
)
def test_a_model_giving_unusable_predictions_is_refused_before_writing(
    sqlite_db: ScratchDatabase, output: tuple[object, ...], message: str
) -> None:
    job = sqlite_db.job(sqlite_db.source(rows_of(2)))

    with pytest.raises(ConfigError, match=message):
        score(_BrokenModel(output=output), job)
    assert not sa.inspect(sqlite_db.engine).has_table(job.write)
