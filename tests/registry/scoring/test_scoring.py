"""Batch scoring into a real database: one row per key, idempotent reruns, versions, resumed progress."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from fedlearn.core.errors import SchemaError
from fedlearn.registry.scoring import ScoringJob, ScoringReport, score
from tests.registry.scoring.databases import ScratchDatabase, rows_of
from tests.registry.scoring.models import LinearModel, expected


def test_scoring_writes_one_row_per_key_with_the_version(database: ScratchDatabase) -> None:
    rows = rows_of(50)
    job = database.job(database.source(rows))

    report = score(LinearModel(), job)

    written = database.sql(f"SELECT id, prediction, model_version FROM {job.write} ORDER BY id")
    assert [tuple(row) for row in written] == [(i, expected(x1, x2), "churn/1") for i, x1, x2 in rows]
    assert (report.rows_scored, report.rows_skipped, report.chunks) == (50, 0, 7)


def test_scoring_again_updates_rows_and_adds_none(database: ScratchDatabase) -> None:
    job = database.job(database.source(rows_of(20)))
    score(LinearModel(), job)
    before = {row.id: row for row in database.sql(f"SELECT * FROM {job.write}")}

    again = score(LinearModel(), job)

    after = {row.id: row for row in database.sql(f"SELECT * FROM {job.write}")}
    assert again.rows_scored == 20 and again.rows_skipped == 0
    assert after.keys() == before.keys()
    assert all(after[k].prediction == before[k].prediction and after[k].scored_at > before[k].scored_at for k in after)


def test_a_new_model_version_starts_fresh_and_overwrites_the_rows(sqlite_db: ScratchDatabase) -> None:
    job = sqlite_db.job(sqlite_db.source(rows_of(20)))
    score(LinearModel(version="churn/1"), job)

    report = score(LinearModel(version="churn/2"), job)

    versions = sqlite_db.sql(f"SELECT model_version, COUNT(*) FROM {job.write} GROUP BY model_version")
    assert [tuple(row) for row in versions] == [("churn/2", 20)]
    assert report.rows_skipped == 0


def test_probabilities_are_written_beside_the_prediction(sqlite_db: ScratchDatabase) -> None:
    job = sqlite_db.job(sqlite_db.source([(1, 2.0, 2.0), (2, 9.0, 1.0)]), probabilities=True)

    score(LinearModel(), job)

    written = sqlite_db.sql(f"SELECT id, prediction, probability_0, probability_1 FROM {job.write} ORDER BY id")
    assert written[0].prediction == 0 and written[0].probability_1 == pytest.approx(0.5)
    assert written[1].prediction == 1 and written[1].probability_1 == pytest.approx(1 / (1 + 2.718281828**-8))


def test_regression_writes_the_value(sqlite_db: ScratchDatabase) -> None:
    job = sqlite_db.job(sqlite_db.source([(1, 2.0, 0.5)]))

    score(LinearModel(version="price/1", task="regression"), job)

    assert sqlite_db.sql(f"SELECT prediction FROM {job.write}")[0].prediction == pytest.approx(4.5)


def test_a_query_source_with_text_and_composite_keys(database: ScratchDatabase) -> None:
    table = database.source(
        [("eu", 1, 3.0, 1.0), ("eu", 2, 0.0, 1.0), ("us", 1, 5.0, 1.0)],
        columns="region VARCHAR(8), n INT, x1 FLOAT, x2 FLOAT",
    )
    job = database.job("", table=None, query=f"SELECT * FROM {table} WHERE x2 > 0", keys=("region", "n"))
    job_chunks_of_one = ScoringJob(**{**_fields(job), "chunk_rows": 1})

    score(LinearModel(), job_chunks_of_one)

    written = database.sql(f"SELECT region, n, prediction FROM {job.write} ORDER BY region, n")
    assert [tuple(row) for row in written] == [("eu", 1, 1), ("eu", 2, 0), ("us", 1, 1)]


def test_a_chunk_that_breaks_the_schema_is_refused_whole_and_the_rerun_continues(database: ScratchDatabase) -> None:
    rows = rows_of(20)
    table = database.source(rows)
    database.sql(f"UPDATE {table} SET x1 = NULL WHERE id = 13")
    job = database.job(table)

    with pytest.raises(SchemaError, match=r"chunk from key 9: column 'x1' must be float; row 4 holds a missing value"):
        score(LinearModel(), job)
    assert database.sql(f"SELECT MAX(id) FROM {job.write}")[0][0] == 8
    database.sql(f"UPDATE {table} SET x1 = 13 WHERE id = 13")
    report = score(LinearModel(), job)

    assert (report.rows_skipped, report.rows_scored) == (8, 12)
    assert database.sql(f"SELECT COUNT(*), COUNT(DISTINCT id) FROM {job.write}")[0] == (20, 20)


def test_a_text_column_is_refused_naming_it_and_the_first_key(database: ScratchDatabase) -> None:
    table = database.source([(5, "1.5", 2.0)], columns="id BIGINT, x1 VARCHAR(8), x2 FLOAT")
    job = database.job(table)

    with pytest.raises(SchemaError, match=r"chunk from key 5: column 'x1' must be float; row 0 holds '1.5'"):
        score(LinearModel(), job)
    assert not sa.inspect(database.engine).has_table(job.write)


def test_restart_ignores_the_progress(sqlite_db: ScratchDatabase) -> None:
    job = sqlite_db.job(sqlite_db.source(rows_of(10)))
    progress: list[ScoringReport] = []
    score(LinearModel(), job)

    report = score(LinearModel(), ScoringJob(**{**_fields(job), "restart": True}), on_chunk=progress.append)

    assert report.rows_scored == 10 and [p.rows_scored for p in progress] == [8, 10]


def _fields(job: ScoringJob) -> dict[str, object]:
    return {name: getattr(job, name) for name in ScoringJob.__dataclass_fields__}


def test_an_empty_source_scores_nothing_and_creates_no_table(sqlite_db: ScratchDatabase) -> None:
    job = sqlite_db.job(sqlite_db.source([]))

    report = score(LinearModel(), job)

    assert (report.rows_scored, report.chunks) == (0, 0)
    assert not sa.inspect(sqlite_db.engine).has_table(job.write)
    assert sqlite_db.sql(f"SELECT rows_done, finished_at IS NOT NULL FROM {job.progress_table}") == [(0, 1)]


def test_write_url_writes_to_another_database(database: ScratchDatabase, sqlite_db: ScratchDatabase) -> None:
    rows = rows_of(10)
    job = database.job(database.source(rows), write_url=sqlite_db.url, write=sqlite_db.name("scores"),
               progress_table=sqlite_db.name("progress"))  # fmt: skip

    score(LinearModel(), job)

    written = sqlite_db.sql(f"SELECT id, prediction FROM {job.write} ORDER BY id")
    assert [tuple(row) for row in written] == [(i, expected(x1, x2)) for i, x1, x2 in rows]
    assert not sa.inspect(database.engine).has_table(job.write)
