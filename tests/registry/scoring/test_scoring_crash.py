"""A scoring process SIGKILLed in the middle of a job, then run again: every key once, nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from fedlearn.registry.scoring import ScoringJob, score
from tests.registry.scoring.databases import ScratchDatabase, rows_of
from tests.registry.scoring.models import LinearModel, expected

ROOT = Path(__file__).resolve().parents[3]
JOB = """
import sys
from fedlearn.registry.scoring import ScoringJob, score
from tests.registry.scoring.models import LinearModel
url, table, write, progress = sys.argv[1:]
job = ScoringJob(source=url, table=table, keys=("id",), write=write, progress_table=progress, chunk_rows=5)
score(LinearModel(delay=0.1), job)
"""


def _chunks_committed(db: ScratchDatabase, progress: str) -> int:
    try:
        found = db.sql(f"SELECT chunks_done FROM {progress}")
    except SQLAlchemyError:  # the job has not created its progress table yet
        return 0
    return found[0][0] if found else 0


def _kill_after_two_chunks(db: ScratchDatabase, job: ScoringJob) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    args = [sys.executable, "-c", JOB, db.url, str(job.table), job.write, job.progress_table]
    process = subprocess.Popen(args, cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while _chunks_committed(db, job.progress_table) < 2:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the job committed no chunk in 30 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


@pytest.mark.slow  # a fresh interpreter imports fedlearn, scores two slowed chunks and is killed: 2-6 s
def test_a_job_killed_mid_way_resumes_and_scores_every_key_once(database: ScratchDatabase) -> None:
    rows = rows_of(60)
    job = ScoringJob(
        source=database.url, table=database.source(rows), keys=("id",), write=database.name("scores"),
        progress_table=database.name("progress"), chunk_rows=5,
    )  # fmt: skip
    _kill_after_two_chunks(database, job)
    committed = database.sql(f"SELECT rows_done FROM {job.progress_table}")[0][0]
    assert 10 <= committed < 60
    assert database.sql(f"SELECT COUNT(*) FROM {job.write}")[0][0] == committed  # predictions match progress

    report = score(LinearModel(), job)

    written = database.sql(f"SELECT id, prediction FROM {job.write} ORDER BY id")
    assert [tuple(row) for row in written] == [(i, expected(x1, x2)) for i, x1, x2 in rows]
    assert (report.rows_skipped, report.rows_scored) == (committed, 60 - committed)
    assert sa.inspect(database.engine).get_pk_constraint(job.write)["constrained_columns"] == ["id"]
