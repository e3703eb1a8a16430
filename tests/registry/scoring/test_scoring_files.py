"""Scoring Parquet and CSV files into a database: chunks by row offset, resumed without rescoring."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedlearn.core.errors import ConfigError, SchemaError
from fedlearn.data.schema import Column, InputSchema
from fedlearn.registry import scoring_sources
from fedlearn.registry.scoring import ScoringJob, score
from fedlearn.registry.scoring_sources import open_source
from fedlearn.registry.write_back import Progress, utc_now
from tests.registry.scoring.databases import ScratchDatabase, rows_of
from tests.registry.scoring.models import LinearModel, expected


def _parquet(path: Path, rows: list[tuple[int, float, float]], *, group_rows: int = 5) -> Path:
    ids, x1, x2 = zip(*rows, strict=True)
    pq.write_table(pa.table({"id": ids, "x1": x1, "x2": x2}), path, row_group_size=group_rows)
    return path


def _csv(path: Path, rows: list[tuple[object, ...]]) -> Path:
    path.write_text("id,x1,x2\n" + "".join(",".join(map(str, row)) + "\n" for row in rows))
    return path


def _job(db: ScratchDatabase, path: Path, **options: object) -> ScoringJob:
    settings: dict[str, object] = {
        "source": str(path), "write_url": db.url, "keys": ("id",), "write": db.name("scores"),
        "progress_table": db.name("progress"), "chunk_rows": 8,
    }  # fmt: skip
    return ScoringJob(**(settings | options))  # type: ignore[arg-type]


def _written(db: ScratchDatabase, job: ScoringJob) -> list[tuple[int, int]]:
    return [tuple(row) for row in db.sql(f"SELECT id, prediction FROM {job.write} ORDER BY id")]  # type: ignore[misc]


@pytest.mark.parametrize("make", [_parquet, _csv])
def test_a_file_is_scored_into_the_database(make: object, sqlite_db: ScratchDatabase, tmp_path: Path) -> None:
    rows = rows_of(30)
    path = make(tmp_path / ("data.parquet" if make is _parquet else "data.csv"), rows)  # type: ignore[operator]
    job = _job(sqlite_db, path)

    report = score(LinearModel(), job)

    assert _written(sqlite_db, job) == [(i, expected(x1, x2)) for i, x1, x2 in rows]
    assert (report.rows_scored, report.chunks) == (30, 4)


def test_a_parquet_job_resumes_at_its_row_offset_skipping_row_groups(
    sqlite_db: ScratchDatabase, tmp_path: Path
) -> None:
    rows = rows_of(30)
    spoiled = [(i, float("nan") if i == 13 else x1, x2) for i, x1, x2 in rows]
    job = _job(sqlite_db, _parquet(tmp_path / "data.parquet", spoiled))

    with pytest.raises(SchemaError, match=r"chunk from key 9: column 'x1' holds a missing or infinite value at row 4"):
        score(LinearModel(), job)
    _parquet(tmp_path / "data.parquet", rows)
    report = score(LinearModel(), job)

    assert (report.rows_skipped, report.rows_scored) == (8, 22)
    assert _written(sqlite_db, job) == [(i, expected(x1, x2)) for i, x1, x2 in rows]


def test_a_csv_text_value_names_the_column_and_keeps_the_chunks_before(
    sqlite_db: ScratchDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scoring_sources, "CSV_BLOCK_BYTES", 64)  # several blocks from a small file
    rows = rows_of(30)
    path = _csv(tmp_path / "data.csv", [(i, "abc" if i == 25 else x1, x2) for i, x1, x2 in rows])
    job = _job(sqlite_db, path)

    with pytest.raises(SchemaError, match=r"column 'x1': .*invalid value 'abc'") as raised:
        score(LinearModel(), job)
    committed = len(_written(sqlite_db, job))
    _csv(path, rows)
    report = score(LinearModel(), job)

    assert raised.value.column == "x1" and committed in (8, 16)
    assert (report.rows_skipped, report.rows_scored) == (committed, 30 - committed)
    assert _written(sqlite_db, job) == [(i, expected(x1, x2)) for i, x1, x2 in rows]


def test_a_csv_row_longer_than_a_block_is_refused(sqlite_db: ScratchDatabase, tmp_path: Path) -> None:
    path = _csv(tmp_path / "data.csv", [(1, "9" * (3 * scoring_sources.CSV_BLOCK_BYTES), 1.0)])

    with pytest.raises(ConfigError, match=r"cannot read .*data\.csv as CSV: straddling object"):
        score(LinearModel(), _job(sqlite_db, path))


def test_a_file_key_repeated_in_a_later_chunk_is_refused(sqlite_db: ScratchDatabase, tmp_path: Path) -> None:
    rows = [*rows_of(10), (3, 1.0, 1.0)]
    job = _job(sqlite_db, _parquet(tmp_path / "data.parquet", rows))

    with pytest.raises(ConfigError, match=r"the source holds the key 3 more than once; .*\['id'\] must identify"):
        score(LinearModel(), job)
    assert len(_written(sqlite_db, job)) == 8  # the chunk before stays; the chunk with the repeat is not written


def test_a_file_source_needs_a_database_to_write_to(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a file source needs `write_url`"):
        ScoringJob(source=str(tmp_path / "data.csv"), keys=("id",), write="scores")


def test_csv_category_columns_stay_text_and_numbers_are_numbers(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id,plan,age\n1,007,30\n2,10,41.5\n")
    schema = InputSchema((Column(name="plan", type="category", categories=("007", "10")), Column(name="age")))

    [chunk] = open_source(str(path), query=None, table=None, keys=("id",), schema=schema).chunks(
        Progress(started_at=utc_now()), 10
    )

    assert chunk.keys == [(1,), (2,)]
    assert schema.encode(chunk.columns).tolist() == [[1.0, 0.0, 30.0], [0.0, 1.0, 41.5]]


def test_csv_integer_keys_past_two_to_the_53_stay_exact(sqlite_db: ScratchDatabase, tmp_path: Path) -> None:
    big = 2**53 + 1  # a float64 would make it 2**53
    job = _job(sqlite_db, _csv(tmp_path / "data.csv", [(big, 2.0, 1.0), (big + 2, 0.0, 1.0)]))

    score(LinearModel(), job)

    assert _written(sqlite_db, job) == [(big, 1), (big + 2, 0)]
