"""Scoring on a node whose data lives in PostgreSQL or MariaDB: predictions land in that database, once per key."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from fedlearn.data.sql import driver_url
from tests.registry.federated.models import FEATURES, rows, softmax_package
from tests.registry.federated.node import dataset_toml, node, score

SERVERS = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """A server's URL with a fresh data table (region, id, f0.., label) and the name for a prediction table."""
    url = SERVERS[request.param]
    suffix = uuid.uuid4().hex[:10]
    data, predictions = f"fedscore_rows_{suffix}", f"fedscore_pred_{suffix}"
    engine = create_engine(driver_url(url))
    x, y = rows(50, seed=9)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE {data} (region VARCHAR(10), id INTEGER, "
                              f"{', '.join(f'{f} FLOAT' for f in FEATURES)}, label INTEGER)"))  # fmt: skip
            conn.execute(
                text(f"INSERT INTO {data} VALUES (:region, :id, :f0, :f1, :f2, :label)"),
                [{"region": "north" if i % 2 else "south", "id": i // 2, "f0": float(r[0]), "f1": float(r[1]),
                  "f2": float(r[2]), "label": int(label)} for i, (r, label) in enumerate(zip(x, y, strict=True))],
            )  # fmt: skip
        yield url, data, predictions
    finally:
        with engine.begin() as conn:
            for table in (data, predictions):
                conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_predictions_land_in_the_nodes_own_server_once_per_composite_key(tmp_path: Path, server) -> None:
    url, data, predictions = server
    app = node(tmp_path, "[scoring]\nallow = true\n" + dataset_toml("customers", url, f"SELECT * FROM {data}"))
    for _ in range(2):  # the second run replaces the first's rows
        reply = score(app, softmax_package(), write=predictions, keys=("region", "id"))
        assert reply.ok, reply.error
        assert reply.metrics["rows_scored"] == 50
    engine = create_engine(driver_url(url))
    try:
        with engine.connect() as conn:
            written = conn.execute(text(f"SELECT region, id, model_version FROM {predictions}")).fetchall()
    finally:
        engine.dispose()
    assert len(written) == 50 and len({(r[0], r[1]) for r in written}) == 50
    assert {r[2] for r in written} == {"churn/1"}
