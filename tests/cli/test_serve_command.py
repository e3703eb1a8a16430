"""``fedlearn serve``: a real server process on loopback, serving a package file or an alias, and its refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from fedlearn.cli.root import app
from fedlearn.registry.catalog import register
from fedlearn.runtime.store import open_store
from fedlearn.web.model_server import VERSION_HEADER
from tests.registry.linear import linear_package
from tests.runtime.deploy.conftest import ROOT, free_port
from tests.web.serving import coordinator_on_loopback
from tests.web.test_api import ADMIN

ROWS = {"inputs": [[30, 2, "a"]]}
runner = CliRunner()


@contextmanager
def _serving(*args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``fedlearn serve ARGS`` in its own process on a free port, until it answers /health; SIGKILLed after."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "from fedlearn.cli import main; main()", "serve", *args,
         "--http", f"127.0.0.1:{port}", "--poll", "0.1"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True, env={**os.environ, "FEDLEARN_ADMIN_TOKEN": ADMIN},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url, process
    finally:
        process.kill()
        process.wait()


def _version_after_move(url: str, expected: str) -> list[str]:
    """The versions that answered, one request every 20 ms, until ``expected`` answers (10 s at most)."""
    seen: list[str] = []
    deadline = time.monotonic() + 10
    while (not seen or seen[-1] != expected) and time.monotonic() < deadline:
        response = httpx.post(f"{url}/invocations", json=ROWS, timeout=5)
        assert response.status_code == 200, response.text
        seen.append(response.headers[VERSION_HEADER])
        time.sleep(0.02)
    return seen


@pytest.mark.slow
def test_serves_a_package_file_and_the_file_written_anew_then_stops_on_sigterm(tmp_path: Path) -> None:
    path = linear_package(1).write(tmp_path / "churn.fedmodel")

    with _serving(str(path)) as (url, process):
        first = httpx.post(f"{url}/invocations", json=ROWS)
        linear_package(2, bias=1000.0).write(tmp_path / "next.fedmodel").replace(path)
        seen = _version_after_move(url, "churn/2")
        after = httpx.post(f"{url}/invocations", json=ROWS)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=10)  # uvicorn shuts down gracefully, then lets the signal end the process

    assert (first.headers[VERSION_HEADER], first.json()) == ("churn/1", {"predictions": [50.0]})
    assert set(seen) <= {"churn/1", "churn/2"} and seen[-1] == "churn/2"
    assert (after.headers[VERSION_HEADER], after.json()) == ("churn/2", {"predictions": [1050.0]})
    assert code == -signal.SIGTERM


@pytest.mark.slow
def test_serves_an_alias_on_the_coordinator_and_follows_it(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        register(store, linear_package(1))
        register(store, linear_package(1, bias=1000.0))
        store.set_model_alias("churn", "champion", 1)
        with (
            coordinator_on_loopback(store) as api,
            _serving("churn@champion", "--coordinator", api) as (url, _),
        ):
            before = httpx.get(f"{url}/version").json()
            store.set_model_alias("churn", "champion", 2)
            seen = _version_after_move(url, "churn/2")

    assert before["model_version"] == "churn/1"
    assert seen[-1] == "churn/2"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["nowhere.fedmodel"], 6, "no model package file 'nowhere.fedmodel'; to serve a registered model"),
        (["churn@champion", "--coordinator", "http://127.0.0.1:9"], 7, "127.0.0.1:9"),
        (["x.fedmodel", "--http", "5000"], 2, "--http must be HOST:PORT; got '5000'"),
    ],
    ids=["missing-file", "unreachable-coordinator", "bad-http"],
)
def test_refusal_before_serving_is_one_line_with_its_exit_code(args: list[str], code: int, message: str) -> None:
    result = runner.invoke(app, ["serve", *args], env={"FEDLEARN_ADMIN_TOKEN": ADMIN})

    assert result.exit_code == code
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_damaged_package_file_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "churn.fedmodel"
    path.write_bytes(b"not a package")

    result = runner.invoke(app, ["serve", str(path)])

    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
