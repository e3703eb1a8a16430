"""``fedlearn models`` through the CLI runner, against the coordinator's API served on loopback over a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import fedlearn
from fedlearn.analytics import FederatedLogisticRegression
from fedlearn.analytics.catalog import learned_arrays
from fedlearn.cli.root import app
from fedlearn.runtime.store import Store
from tests.registry.conftest import blobs, completed_run
from tests.web.serving import coordinator_on_loopback
from tests.web.test_api import ADMIN

runner = CliRunner()


@pytest.fixture
def url(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The coordinator's API on a loopback port; the CLI finds it, and its token, in the environment."""
    with coordinator_on_loopback(store) as api:
        monkeypatch.setenv("FEDLEARN_COORDINATOR", api)
        monkeypatch.setenv("FEDLEARN_ADMIN_TOKEN", ADMIN)
        yield api


def _fedlearn(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, ["models", *(str(a) for a in args)], env={"COLUMNS": "160"})
    return result.exit_code, result.output


def test_register_alias_list_and_show_a_run(url: str, store: Store) -> None:
    run_id = completed_run(store)

    assert _fedlearn("register", "churn", "--run", run_id) == (0, "registered churn@1\n")
    assert _fedlearn("register", "churn", "--run", run_id)[0] == 0
    assert _fedlearn("alias", "churn", "champion", "1") == (0, "churn@champion -> version 1\n")
    code, listed = _fedlearn("list")
    code_show, shown = _fedlearn("show", "churn@champion")

    assert (code, code_show) == (0, 0)
    assert "churn" in listed and "champion→1" in listed
    assert shown.startswith(f"churn@1 [champion]: numpy.softmax (classification) from run {run_id}")
    assert "  input: f0:float, f1:float, f2:float, f3:float" in shown


def test_exported_package_loads_anywhere(url: str, store: Store, tmp_path: Path) -> None:
    _fedlearn("register", "churn", "--run", completed_run(store), "--classes", "a,b,c")

    code, exported = _fedlearn("export", "churn@latest", "--out", tmp_path / "churn.safetensors")
    model = fedlearn.load_model(tmp_path / "churn.safetensors")

    assert (code, exported) == (0, f"churn/1 written to {tmp_path / 'churn.safetensors'}\n")
    assert model.classes == ("a", "b", "c")
    assert model.predict(blobs(3).x).shape == (90,)


def test_export_as_an_mlflow_model_loads_in_mlflow(url: str, store: Store, tmp_path: Path) -> None:
    mlflow_pyfunc = pytest.importorskip("mlflow.pyfunc")
    _fedlearn("register", "churn", "--run", completed_run(store))

    code, output = _fedlearn("export", "churn", "--format", "mlflow", "--out", tmp_path / "churn")
    loaded = mlflow_pyfunc.load_model(str(tmp_path / "churn"))

    assert (code, output) == (0, f"churn/1 written to {tmp_path / 'churn'}\n")
    expected = fedlearn.load_model("churn").predict(blobs(3).x)
    assert np.array_equal(loaded.predict(blobs(3).x), expected)


def test_show_json_is_the_api_answer(url: str, store: Store) -> None:
    _fedlearn("register", "churn", "--run", completed_run(store))

    code, output = _fedlearn("show", "churn", "--json")

    assert code == 0
    assert [v["version"] for v in json.loads(output)["versions"]] == [1]


def test_register_an_analytics_answer_from_a_file(url: str, store: Store, tmp_path: Path) -> None:
    data = blobs(2)
    estimator = FederatedLogisticRegression(C=0.5).fit(data.x.astype(np.float64), data.y)
    answer = {"model": "logistic", "columns": list(data.feature_names), "task": "classification", "rows": 90,
              "members": [], "attributes": {k: v.tolist() for k, v in learned_arrays(estimator).items()}}  # fmt: skip
    (tmp_path / "answer.json").write_text(json.dumps(answer))

    code, output = _fedlearn("register", "risk", "--analytics", tmp_path / "answer.json", "--options", '{"C": 0.5}')
    loaded = fedlearn.load_model("risk@latest", coordinator=url, token=ADMIN)

    assert (code, output) == (0, "registered risk@1\n")
    assert np.array_equal(loaded.predict_proba(data.x), estimator.predict_proba(data.x))


def test_load_model_reads_the_coordinator_and_token_from_the_environment(url: str, store: Store) -> None:
    _fedlearn("register", "churn", "--run", completed_run(store))

    assert fedlearn.load_model("churn").version == "churn/1"


def test_alias_removed_then_unknown_exits_with_the_not_found_code(url: str, store: Store, tmp_path: Path) -> None:
    _fedlearn("register", "churn", "--run", completed_run(store))
    _fedlearn("alias", "churn", "champion", "1")

    assert _fedlearn("alias", "churn", "champion", "--delete") == (0, "alias churn@champion removed\n")
    code, output = _fedlearn("export", "churn@champion", "--out", tmp_path / "never.safetensors")
    assert code == 6
    assert output.strip() == "error: model 'churn' has no alias 'champion'; `fedlearn models show churn` lists them"
    assert not (tmp_path / "never.safetensors").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["register", "churn"], "give exactly one of `run_id`"),
        (["register", "churn", "--run", "r", "--options", "{"], "--options: not valid JSON"),
        (["register", "churn", "--analytics", "missing.json"], "--analytics: cannot read missing.json"),
        (["alias", "churn", "champion"], "give the VERSION the alias should name, or --delete"),
        (["show", "a/b"], "`model name` must be 1-64"),
        (["register", "churn", "--run", "nope"], "no run with id 'nope'"),
    ],
)
def test_bad_command_lines_exit_with_one_clear_line(url: str, args: list[str], message: str) -> None:
    code, output = _fedlearn(*args)

    assert code != 0
    assert message in output
    assert "Traceback" not in output


def test_load_model_without_a_file_or_coordinator_says_how(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEDLEARN_COORDINATOR", raising=False)

    with pytest.raises(fedlearn.ConfigError, match="pass coordinator=URL"):
        fedlearn.load_model("churn@champion")


@pytest.mark.slow
def test_a_deployed_run_is_registered_exported_and_predicts_like_its_model(tmp_path: Path) -> None:
    """The whole path on real processes: a coordinator and a node train, the CLI registers and exports."""
    from fedlearn.core.codec import decode
    from fedlearn.data.datasets import load_dataset
    from tests.runtime.deploy.conftest import ADMIN as DEPLOY_ADMIN
    from tests.runtime.deploy.conftest import ROOT, Deployment, node_toml, run_toml

    deployment = Deployment(tmp=tmp_path, store_url=f"sqlite:///{tmp_path / 'coordinator.db'}")
    try:
        deployment.register("node-000")
        deployment.start_coordinator()
        deployment.start_node("node-000", node_toml(0, 1))
        deployment.wait_for_nodes(1)
        run_id = deployment.submit(run_toml(rounds=2, nodes=1))
        assert deployment.wait_for_run(run_id).status == "completed"

        def fedlearn_cli(*args: object) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-c", "from fedlearn.cli import main; main()", "models", *map(str, args),
                 "--coordinator", deployment.api],
                cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
                env={**os.environ, "FEDLEARN_ADMIN_TOKEN": DEPLOY_ADMIN},
            )  # fmt: skip

        registered = fedlearn_cli("register", "digits", "--run", run_id)
        aliased = fedlearn_cli("alias", "digits", "champion", "1")
        exported = fedlearn_cli("export", "digits@champion", "--out", tmp_path / "digits.safetensors")
        with deployment.client() as client:
            trained = decode(client.model(run_id))
    finally:
        deployment.close()

    assert [p.returncode for p in (registered, aliased, exported)] == [0, 0, 0], registered.stderr + exported.stderr
    model = fedlearn.load_model(tmp_path / "digits.safetensors")
    digits = load_dataset("digits")
    logits = digits.x.astype(np.float32) @ trained["weight"] + trained["bias"]
    assert np.array_equal(model.predict(digits.x), logits.argmax(axis=1))
    assert model.lineage["run_id"] == run_id and model.lineage["nodes"]["enrolled"] == ["node-000"]
