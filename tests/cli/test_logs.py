"""Logs of the long-running processes: timestamped lines or JSON objects, start and stop included."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedlearn.cli.logs import JsonFormatter, LogFormat, LogLevel, configure_logging
from tests.runtime.deploy.conftest import ROOT, free_port, node_toml


def test_json_formatter_writes_one_object_with_time_level_logger_and_message() -> None:
    record = logging.LogRecord("fedlearn.x", logging.WARNING, __file__, 1, "run %s: failed", ("r1",), None)

    entry = json.loads(JsonFormatter().format(record))

    assert (entry["level"], entry["logger"], entry["message"]) == ("warning", "fedlearn.x", "run r1: failed")
    assert entry["time"].endswith("+00:00")


def test_configure_logging_sets_the_level_of_every_logger() -> None:
    configure_logging(LogLevel.warning, LogFormat.text)  # conftest puts the root logger back afterwards

    assert not logging.getLogger("fedlearn.anything").isEnabledFor(logging.INFO)
    assert logging.getLogger("fedlearn.anything").isEnabledFor(logging.WARNING)
    assert logging.getLogger().level == logging.WARNING


@pytest.mark.slow
def test_a_node_logs_its_start_and_its_stop_on_sigterm_as_json(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(node_toml(0, 2))
    node = subprocess.Popen(
        [sys.executable, "-c", "from fedlearn.cli import main; main()", "node", "--coordinator",
         f"127.0.0.1:{free_port()}", "--name", "node-000", "--config", str(config), "--log-format", "json"],
        cwd=ROOT, stderr=subprocess.PIPE, text=True, env={**os.environ, "FEDLEARN_NODE_TOKEN": "t" * 32},
    )  # fmt: skip
    assert node.stderr is not None
    said = [json.loads(node.stderr.readline()) for _ in range(2)]  # its identity key, then its start
    time.sleep(0.5)

    node.send_signal(signal.SIGTERM)
    _, rest = node.communicate(timeout=30)

    assert said[0]["message"].startswith("node node-000: identity key ")
    assert said[1]["message"].startswith("node node-000: starting, connecting to 127.0.0.1:")
    entries = [json.loads(line) for line in rest.splitlines() if line.startswith("{")]
    assert entries[-1]["message"] == "node node-000: stopped on a signal"
    assert node.returncode == 0
