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
from tests.sql_tables import scratch_table

SERVERS = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """A server's URL with a fresh data table (region, id, f0.., label) and the name for a prediction table."""
    url = SERVERS[request.param]
    predictions = f"fedscore_pred_{uuid.uuid4().hex[:10]}"
    x, y = rows(50, seed=9)
    columns = f"region VARCHAR(10), id INTEGER, {', '.join(f'{f} FLOAT' for f in FEATURES)}, label INTEGER"
    values = [("north" if i % 2 else "south", i // 2, *map(float, r), int(label))
              for i, (r, label) in enumerate(zip(x, y, strict=True))]  # fmt: skip
    with scratch_table(url, "fedscore_rows", columns, values, also_drop=(predictions,)) as data:
        yield url, data, predictions


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
