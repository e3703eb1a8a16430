"""The documented end-to-end example runs as written, and the predictions land in each clinic's own database."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "end_to_end.py"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
TABLES = ("e2e_visits", "e2e_predictions")  # the shared progress table stays: other tests may be using it


def _visits(rows: int, seed: int) -> dict[str, list[object]]:
    """Age, BMI and region of each visit; the outcome is likelier for the old and heavy."""
    rng = np.random.default_rng(seed)
    age, bmi = rng.uniform(20, 80, rows).round(), rng.uniform(18, 40, rows).round(1)
    outcome = (0.05 * (age - 50) + 0.2 * (bmi - 29) + rng.normal(0, 1, rows) > 0).astype(int)
    region = rng.choice(["N", "S"], rows)
    return {"id": list(range(1, rows + 1)), "age": age.tolist(), "bmi": bmi.tolist(),
            "region": region.tolist(), "outcome": outcome.tolist()}  # fmt: skip


@pytest.fixture
def clinic_a() -> Iterator[int]:
    """Clinic A's visits in PostgreSQL; yields the row count and drops every table the example made."""
    visits = _visits(120, seed=1)
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute("CREATE TABLE e2e_visits (id int PRIMARY KEY, age float8, bmi float8, region text, outcome int)")
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO e2e_visits VALUES (%s, %s, %s, %s, %s)", list(zip(*visits.values(), strict=True))
            )
    yield len(visits["id"])
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


@pytest.mark.slow
def test_the_end_to_end_example_lands_predictions_in_each_clinics_own_database(clinic_a: int, tmp_path: Path) -> None:
    rows_b = 80
    pq.write_table(pa.table(_visits(rows_b, seed=2)), tmp_path / "clinic_b.parquet")

    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("{'predictions': [") and done.stdout.strip().endswith("]}")
    with psycopg.connect(POSTGRES) as conn:
        in_a = conn.execute("SELECT count(*), count(DISTINCT id), min(model_version), max(model_version) "
                            "FROM e2e_predictions").fetchone()  # fmt: skip
    with sqlite3.connect(tmp_path / "b.db") as conn:
        in_b = conn.execute("SELECT count(*), count(DISTINCT id), min(model_version), max(model_version) "
                            "FROM predictions").fetchone()  # fmt: skip
    assert in_a == (clinic_a, clinic_a, "risk/1", "risk/1")
    assert in_b == (rows_b, rows_b, "risk/1", "risk/1")


def test_the_example_is_at_most_fifteen_lines_and_the_guide_shows_it_verbatim() -> None:
    code = EXAMPLE.read_text()
    lines = [line for line in code.splitlines()[1:] if line.strip() and not line.lstrip().startswith("#")]

    assert len(lines) <= 15
    assert code in (ROOT / "docs" / "end-to-end.md").read_text()
