"""``fedlearn score`` end to end: a registered model's package, a real database, a real SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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
from fedlearn.runtime.coordinator import Coordinator
from fedlearn.runtime.store import open_store
from fedlearn.simulation.inprocess import InProcessFleet
from fedlearn.web.api import create_app
from fedlearn.web.server import api_server
from tests.registry.scoring.databases import ScratchDatabase, rows_of
from tests.registry.scoring.models import expected
from tests.web.serving import served_on_loopback
from tests.web.test_api import ADMIN, _no_node

ROOT = Path(__file__).resolve().parents[2]
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
        app_ = create_app(Coordinator(store, InProcessFleet([], _no_node)), admin_token=ADMIN)
        with served_on_loopback(api_server(app_, host="127.0.0.1", port=0)) as port:
            coordinator = ["--coordinator", f"http://127.0.0.1:{port}", "--admin-token", ADMIN]
            result = runner.invoke(app, [*_args("churn@production", db, db.source(rows)), *coordinator])

    assert result.exit_code == 0, result.output
    assert {row.model_version for row in db.sql("SELECT model_version FROM scores")} == {"churn/2"}


def test_score_bad_input_is_one_line_and_its_exit_code(db: ScratchDatabase, model_file: Path) -> None:
    result = runner.invoke(app, [*_args(str(model_file), db, db.source(rows_of(3)))[:-4], "--key", "uid",
                                 "--write", "scores"])  # fmt: skip

    assert result.exit_code == 2
    assert result.stderr == "error: the source has no column(s) ['uid']; its columns are ['id', 'x1', 'x2']\n"


def _committed(db: ScratchDatabase) -> int:
    try:
        found = db.sql("SELECT rows_done FROM fedlearn_scoring_progress")
    except sa.exc.OperationalError:  # no progress table yet
        return 0
    return found[0][0] if found else 0


@pytest.mark.slow  # a fresh interpreter loads fedlearn and the model, then is killed after two chunks: 2-5 s
def test_score_killed_mid_job_then_rerun_skips_what_was_committed(db: ScratchDatabase, model_file: Path) -> None:
    rows = rows_of(3000)
    source = db.source(rows)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-c", "from fedlearn.cli import main; main()",
               *_args(str(model_file), db, source, "--chunk-rows", "1", "-q")]  # fmt: skip
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while _committed(db) < 2:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the job committed no chunk in 30 s"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()
    committed = _committed(db)

    result = runner.invoke(app, _args(str(model_file), db, source, "--chunk-rows", "1000", "-q"))

    assert result.exit_code == 0, result.output
    assert 2 <= committed < 3000
    assert f"scored {3000 - committed:,} rows into" in result.stdout
    assert result.stdout.rstrip().endswith(f"; skipped {committed:,} rows already scored by this job")
    assert _written(db) == [(i, expected(x1, x2)) for i, x1, x2 in rows]
