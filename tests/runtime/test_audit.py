"""A node's audit log: one bounded JSON line per answered task, names and shapes but never values."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedlearn.analytics import SCHEMA, SUMMARIZE, DisclosurePolicy, SummarySpec, analytics_handlers
from fedlearn.analytics.handlers import audit_fields
from fedlearn.client.node_app import NodeApp
from fedlearn.core import ConfigError, Task
from fedlearn.runtime.audit import AuditLog

ROWS = {"age": np.arange(40.0) + 20.5, "income": np.arange(40.0) * 1000 + 17.25, "y": np.arange(40) % 2}
KINDS = (SCHEMA, SUMMARIZE)
ALLOWED = DisclosurePolicy(columns=["age", "y"])


def _audited_node(path: Path, policy: DisclosurePolicy = ALLOWED) -> NodeApp:
    log = AuditLog(path, node="clinic", describe=dict.fromkeys(KINDS, audit_fields), clock=lambda: "T")
    return NodeApp(node_id="clinic", handlers=analytics_handlers({"visits": ROWS}, policy=policy), audit=log)


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _summarise(spec: SummarySpec, **config: str) -> Task:
    return Task(kind=SUMMARIZE, round=2, run_id="run-1", config={"dataset": "visits", "spec": spec.to_json(), **config})


def test_a_released_summary_is_recorded_with_its_scope_rows_and_array_shapes(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"

    _audited_node(log).handle(_summarise(SummarySpec(columns=("age",), target="y")))

    (record,) = _records(log)
    assert {k: record[k] for k in ("time", "event", "node", "run_id", "kind", "round")} == {
        "time": "T", "event": "task", "node": "clinic", "run_id": "run-1", "kind": SUMMARIZE, "round": 2,
    }  # fmt: skip
    assert (record["dataset"], record["columns"], record["rows"]) == ("visits", ["age", "y"], 40)
    assert (record["outcome"], record["extrema"], record["metrics"]) == ("released", "withheld", [])
    assert record["released"]["moments/comoment"] == [2, 2] and record["released"]["moments/count"] == []


def test_a_record_holds_no_value_of_the_data(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"

    _audited_node(log, DisclosurePolicy(release_extrema=True)).handle(_summarise(SummarySpec(columns=("income",))))

    text = log.read_text()
    assert "17.25" not in text and "17250" not in text and "20.5" not in text


def test_a_refused_task_is_recorded_with_the_reason_it_was_given(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"

    reply = _audited_node(log).handle(_summarise(SummarySpec(columns=("ssn",))))

    (record,) = _records(log)
    assert record["outcome"] == "refused" and record["reason"] == reply.error
    assert record["reason"] == "ConfigError: column 'ssn' is not available on this node"
    assert record["columns"] == ["ssn"] and record["rows"] == 0


def test_records_are_appended_one_line_a_task_to_a_file_only_its_owner_reads(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    node = _audited_node(log)

    node.handle(Task(kind=SCHEMA, round=1, config={"dataset": "visits", "columns": '["age", "ssn"]'}))
    node.handle(_summarise(SummarySpec(columns=("age",))))
    _audited_node(log).handle(_summarise(SummarySpec(columns=("age",))))  # a restarted node appends

    assert [r["kind"] for r in _records(log)] == [SCHEMA, SUMMARIZE, SUMMARIZE]
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_a_hostile_task_cannot_make_its_record_large(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    columns = [f"guess_{i}_" + "x" * 1000 for i in range(100_000)]
    task = Task(
        kind=SCHEMA, round=1, run_id="r" * 10**6, config={"dataset": "d" * 10**6, "columns": json.dumps(columns)}
    )

    _audited_node(log).handle(task)

    (record,) = _records(log)
    assert len(log.read_bytes()) < 64_000
    assert record["columns"][-1] == "… 99900 more"
    assert record["run_id"].endswith("… (999500 more characters)")


def test_an_audit_log_that_cannot_be_opened_fails_at_start_up_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"^\[policy\] audit_log: cannot open '.*/missing/audit.jsonl' for appending: "
    ):
        AuditLog(tmp_path / "missing" / "audit.jsonl", node="clinic")
