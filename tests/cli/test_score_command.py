"""``fedlearn score`` end to end: a registered model's package, from a file or a coordinator, and a real database.

The kill-and-resume tests, on SQLite, PostgreSQL and MariaDB, are in tests/registry/scoring/test_scoring_crash.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from fedlearn.cli import app
from fedlearn.data.schema import InputSchema
from fedlearn.registry.catalog import register
from fedlearn.registry.package import ModelPackage
from fedlearn.runtime.store import open_store
from tests.registry.scoring.databases import ScratchDatabase, rows_of
from tests.registry.scoring.models import expected
from tests.web.serving import coordinator_on_loopback
from tests.web.test_api import ADMIN

runner = CliRunner()


def _package(version: int = 1) -> ModelPackage:
    """Softmax over (x1, x2) predicting class 1 exactly when x1 > x2, whichever way its weight is laid out."""
    weight = np.array([[-0.5, 0.5], [0.5, -0.5]], np.float32)
    return ModelPackage(
        name="churn", version=version, kind="learner", model="numpy.softmax", task="classification",
        classes=(0, 1), schema=InputSchema.numeric(["x1", "x2"]),
        params={"weight": weight, "bias": np.zeros(2, np.float32)},
    )  # fmt: skip


@pytest.fixture
def db(tmp_path: Path) -> Iterator[ScratchDatabase]:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    scratch = ScratchDatabase(url=url, engine=sa.create_engine(url))
    yield scratch
    scratch.drop()


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return _package().write(tmp_path / "churn.safetensors")


def _args(model: str, db: ScratchDatabase, source: str, *extra: str) -> list[str]:
    return ["score", model, "--source", db.url, "--table", source, "--key", "id", "--write", "scores", *extra]


def _written(db: ScratchDatabase) -> list[tuple[int, int]]:
    return [(row.id, row.prediction) for row in db.sql("SELECT id, prediction FROM scores ORDER BY id")]


def test_score_writes_predictions_and_says_how_many(db: ScratchDatabase, model_file: Path) -> None:
    rows = rows_of(20)
    result = runner.invoke(app, _args(str(model_file), db, db.source(rows), "--chunk-rows", "8"))

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("scored 20 rows into sqlite:///") and "with churn/1 in " in result.stdout
    assert result.stderr.startswith("scored 20 rows in 3 chunks (") and " rows/s)" in result.stderr
    assert _written(db) == [(i, expected(x1, x2)) for i, x1, x2 in rows]


def test_score_by_alias_loads_the_model_from_the_coordinator(db: ScratchDatabase, tmp_path: Path) -> None:
    rows = rows_of(5)
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        register(store, _package()), register(store, _package())
        store.set_model_alias("churn", "production", 2)
        with coordinator_on_loopback(store) as url:
            coordinator = ["--coordinator", url, "--admin-token", ADMIN]
            result = runner.invoke(app, [*_args("churn@production", db, db.source(rows)), *coordinator])

    assert result.exit_code == 0, result.output
    assert {row.model_version for row in db.sql("SELECT model_version FROM scores")} == {"churn/2"}


def test_score_bad_input_is_one_line_and_its_exit_code(db: ScratchDatabase, model_file: Path) -> None:
    result = runner.invoke(app, [*_args(str(model_file), db, db.source(rows_of(3)))[:-4], "--key", "uid",
                                 "--write", "scores"])  # fmt: skip

    assert result.exit_code == 2
    assert result.stderr == "error: the source has no column(s) ['uid']; its columns are ['id', 'x1', 'x2']\n"


def test_score_after_an_interrupted_run_says_what_it_skipped(db: ScratchDatabase, model_file: Path) -> None:
    rows = rows_of(20)
    source = db.source(rows)
    db.sql(f"UPDATE {source} SET x2 = NULL WHERE id = 13")
    stopped = runner.invoke(app, _args(str(model_file), db, source, "--chunk-rows", "8", "-q"))
    db.sql(f"UPDATE {source} SET x2 = 1.5 WHERE id = 13")

    result = runner.invoke(app, _args(str(model_file), db, source, "--chunk-rows", "8", "-q"))

    assert stopped.exit_code == 2 and "chunk from key 9: column 'x2'" in stopped.stderr
    assert result.exit_code == 0, result.output
    assert "scored 12 rows into" in result.stdout
    assert result.stdout.rstrip().endswith("; skipped 8 rows already scored by this job")
    assert _written(db) == [(i, expected(x1, x2 if i != 13 else 1.5)) for i, x1, x2 in rows]


def test_score_loads_a_model_file_even_with_a_coordinator_in_the_environment(
    db: ScratchDatabase, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDLEARN_COORDINATOR", "http://127.0.0.1:1")

    result = runner.invoke(app, [*_args(str(model_file), db, db.source(rows_of(3))), "-q"])

    assert result.exit_code == 0, result.output


def test_score_by_alias_on_an_unreachable_coordinator_is_one_line(db: ScratchDatabase) -> None:
    args = [*_args("churn@production", db, db.source(rows_of(3))), "--coordinator", "http://127.0.0.1:1"]

    result = runner.invoke(app, [*args, "--admin-token", ADMIN])

    assert result.exit_code == 7
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
