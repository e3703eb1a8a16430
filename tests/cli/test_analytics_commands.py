"""``fedlearn analytics`` end to end, through typer's runner: exit codes and output."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from typer.testing import CliRunner

from fedlearn.analytics import JobDir
from fedlearn.cli.analytics import app
from fedlearn.core import decode_with_metadata
from tests.analytics.conftest import assert_close, load, random_split

runner = CliRunner()
FEATURES = ["sl", "sw", "pl", "pw"]


def _write(path: Path, x: np.ndarray, y: np.ndarray, header: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([[*map(repr, row), int(label)] for row, label in zip(x.tolist(), y, strict=True)])
    return path


def _invoke(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture
def iris_job(tmp_path: Path) -> tuple[Path, list[Path]]:
    x, y = load("classification", "iris")
    files = [
        _write(tmp_path / f"node{i}.csv", x[p], y[p], [*FEATURES, "species"])
        for i, p in enumerate(random_split(150, 3, 0))
    ]
    job = tmp_path / "job"
    code, out = _invoke(
        "create", job, "--columns", ",".join(FEATURES), "--target", "species", "--task", "classification"
    )
    assert code == 0, out
    for i, file in enumerate(files):
        code, out = _invoke("join", job, "--node", f"node{i}", "--csv", file, "--min-rows", 0)
        assert code == 0, out
    return job, files


def test_create_join_inspect_reports_members_and_agreement(iris_job: tuple[Path, list[Path]]) -> None:
    code, out = _invoke("inspect", iris_job[0])
    assert code == 0
    assert "3 nodes, 150 rows" in out
    assert "schema: agrees" in out
    assert "species:int" in out


def test_job_directory_holds_summaries_and_never_rows(iris_job: tuple[Path, list[Path]]) -> None:
    job, _ = iris_job
    stored = sorted(p.relative_to(job).as_posix() for p in job.rglob("*") if p.is_file())
    assert stored == ["job.json", "nodes/node0.safetensors", "nodes/node1.safetensors", "nodes/node2.safetensors"]
    params, _ = decode_with_metadata((job / "nodes/node0.safetensors").read_bytes())
    assert all(k.startswith(("moments/", "by_class/")) for k in params)


def test_fit_logistic_writes_a_model_equal_to_sklearns(iris_job: tuple[Path, list[Path]], tmp_path: Path) -> None:
    out_file = tmp_path / "model.safetensors"
    code, out = _invoke("fit", iris_job[0], "--model", "logistic", "--out", out_file)
    assert code == 0, out
    assert "fitted logistic on 150 rows from 3 nodes" in out
    params, meta = decode_with_metadata(out_file.read_bytes())
    x, y = load("classification", "iris")
    ref = LogisticRegression(solver="newton-cholesky", tol=1e-14, max_iter=1000).fit(x, y)
    assert_close(params["coef_"], ref.coef_)
    assert meta["model"] == "logistic"


@pytest.mark.parametrize("model", ["gnb", "lda", "qda", "pca", "covariance", "describe", "linear", "ridge"])
def test_every_model_fits_from_the_command_line(iris_job: tuple[Path, list[Path]], model: str) -> None:
    code, out = _invoke("fit", iris_job[0], "--model", model)
    assert code == 0, out
    assert f"fitted {model} on 150 rows from 3 nodes" in out


def test_rejoining_adds_rows_and_remove_subtracts_them(tmp_path: Path) -> None:
    x, y = load("regression", "diabetes")
    header = [f"f{i}" for i in range(10)] + ["y"]
    job = tmp_path / "job"
    assert _invoke("create", job, "--columns", ",".join(header[:-1]), "--target", "y")[0] == 0
    first = _write(tmp_path / "a.csv", x[:300], y[:300], header)
    more = _write(tmp_path / "b.csv", x[300:], y[300:], header)
    assert _invoke("join", job, "--node", "a", "--csv", first)[0] == 0
    code, out = _invoke("join", job, "--node", "a", "--csv", more)
    assert (code, "added 142 rows; it now holds 442" in out) == (0, True)
    summary = JobDir(job).load("a").summary  # type: ignore[union-attr]
    from fedlearn.analytics import FederatedLinearRegression

    assert_close(FederatedLinearRegression().fit_summary(summary).coef_, LinearRegression().fit(x, y).coef_)
    code, out = _invoke("join", job, "--node", "a", "--remove", more)
    assert (code, "removed 142 rows; it now holds 300" in out) == (0, True)
    code, out = _invoke("fit", job, "--model", "linear", "--out", tmp_path / "m.safetensors")
    assert code == 0
    coef = decode_with_metadata((tmp_path / "m.safetensors").read_bytes())[0]["coef_"]
    assert_close(coef, LinearRegression().fit(x[:300], y[:300]).coef_)


def test_removing_the_row_holding_a_maximum_leaves_it_unknown_not_stale(tmp_path: Path) -> None:
    job = tmp_path / "job"
    _invoke("create", job, "--columns", "a", "--hist", "a=0:20:4")
    (tmp_path / "all.csv").write_text("a\n" + "".join(f"{i}\n" for i in range(1, 21)))
    (tmp_path / "top.csv").write_text("a\n" + "".join(f"{i}\n" for i in range(15, 21)))
    _invoke("join", job, "--node", "n", "--csv", tmp_path / "all.csv", "--release-extrema")
    assert _invoke("join", job, "--node", "n", "--remove", tmp_path / "top.csv", "--release-extrema")[0] == 0
    code, out = _invoke("fit", job, "--model", "describe")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("│ a "))
    cells = [cell.strip() for cell in row.split("│")[1:-1]]  # column, mean, std, min, max, sum
    assert cells[3:] == ["1", "unknown", "105"]  # min kept, max unknown (not stale), sum exact
    assert "histogram of a" in out
    assert "[15, 20]" in out


def test_join_below_the_privacy_threshold_exits_3_with_one_line(tmp_path: Path) -> None:
    x, y = load("classification", "iris")
    job = tmp_path / "job"
    _invoke("create", job, "--columns", ",".join(FEATURES), "--target", "species")
    small = _write(tmp_path / "small.csv", x[:5], y[:5], [*FEATURES, "species"])
    code, out = _invoke("join", job, "--node", "tiny", "--csv", small)
    assert code == 3
    assert "error: refusing to share a summary: it covers fewer than 9 rows, the privacy threshold" in out
    assert "Traceback" not in out
    assert not (job / "nodes" / "tiny.safetensors").exists()


def test_join_withholds_minima_and_maxima_unless_the_node_releases_them(tmp_path: Path) -> None:
    job = tmp_path / "job"
    _invoke("create", job, "--columns", "a")
    (tmp_path / "a.csv").write_text("a\n" + "".join(f"{i}\n" for i in range(1, 21)))
    _invoke("join", job, "--node", "n", "--csv", tmp_path / "a.csv")

    code, out = _invoke("fit", job, "--model", "describe")

    row = next(line for line in out.splitlines() if line.startswith("│ a "))
    assert code == 0 and [cell.strip() for cell in row.split("│")[4:6]] == ["unknown", "unknown"]


def test_join_refuses_more_histogram_bins_than_the_node_allows(tmp_path: Path) -> None:
    job = tmp_path / "job"
    _invoke("create", job, "--columns", "a", "--hist", "a=0:20:5000")
    (tmp_path / "a.csv").write_text("a\n" + "".join(f"{i}\n" for i in range(1, 21)))

    code, out = _invoke("join", job, "--node", "n", "--csv", tmp_path / "a.csv")

    assert code == 2
    assert "refusing 5000 histogram bins: this node allows at most 1000 per task" in out
    assert not (job / "nodes" / "n.safetensors").exists()


def test_inspect_flags_a_node_whose_column_types_differ(tmp_path: Path) -> None:
    job = tmp_path / "job"
    _invoke("create", job, "--columns", "a,b")
    (tmp_path / "x.csv").write_text("a,b\n" + "".join(f"{i}.5,{i}\n" for i in range(20)))
    (tmp_path / "z.csv").write_text("a,b,c\n" + "".join(f"{i},{i}.25,{i}\n" for i in range(20)))
    _invoke("join", job, "--node", "x", "--csv", tmp_path / "x.csv")
    _invoke("join", job, "--node", "z", "--csv", tmp_path / "z.csv")
    code, out = _invoke("inspect", job)
    assert code == 0
    assert "schema: DISAGREES" in out
    assert "column 'a' has different types across nodes (x: float; z: int)" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["fit", "{job}", "--model", "kmeans"], 2, "`--model` must be one of"),
        (["fit", "{job}", "--model", "lda"], 2, "needs a job created with `--task classification`"),
        (["join", "{job}", "--node", "a"], 2, "pass exactly one of `--csv`"),
        (["join", "{job}", "--node", "a", "--csv", "{missing}"], 2, "does not exist"),
        (["join", "{job}", "--node", "../evil", "--csv", "{csv}"], 2, "`node` must be 1-64 letters"),
        (["fit", "{missing}", "--model", "linear"], 2, "is not an analytics job"),
        (["create", "{job}", "--columns", "a"], 2, "already holds an analytics job"),
        (["create", "{tmp}/j2", "--columns", "a", "--hist", "a=1:0:3"], 2, "low < high"),
    ],
)
def test_bad_command_lines_exit_with_a_clear_message(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    job = tmp_path / "job"
    _invoke("create", job, "--columns", "a", "--target", "y")
    (tmp_path / "ok.csv").write_text("a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    _invoke("join", job, "--node", "a", "--csv", tmp_path / "ok.csv")
    names = {"job": job, "missing": tmp_path / "nope", "csv": tmp_path / "ok.csv", "tmp": tmp_path}
    got_code, out = _invoke(*(a.format(**names) for a in args))
    assert got_code == code
    assert message in out


def test_a_non_numeric_value_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    job = tmp_path / "job"
    _invoke("create", job, "--columns", "a")
    bad = tmp_path / "bad.csv"
    bad.write_text("a\n" + "".join(f"{i}\n" for i in range(1500)) + "oops\n")
    code, out = _invoke("join", job, "--node", "n", "--csv", bad)
    assert code == 2
    assert "bad.csv:1502: column 'a' holds 'oops', not a number" in out
