"""A fresh, uniquely named table in a real database server, for tests that read one, dropped afterwards.

Unique names keep tests that run in parallel, or again, from seeing each other's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, text

from fedlearn.data.sql import driver_url


@contextmanager
def scratch_table(
    url: str, stem: str, columns: str, rows: Sequence[Sequence[Any]], *, also_drop: Sequence[str] = ()
) -> Iterator[str]:
    """The name of a new table ``stem_<hex>`` of ``columns`` (SQL) holding ``rows``; then it and ``also_drop`` go."""
    name = f"{stem}_{uuid.uuid4().hex[:10]}"
    engine = create_engine(driver_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE {name} ({columns})"))
            if rows:
                marks = ", ".join(f":c{i}" for i in range(len(rows[0])))
                conn.execute(
                    text(f"INSERT INTO {name} VALUES ({marks})"),
                    [{f"c{i}": value for i, value in enumerate(row)} for row in rows],
                )
        yield name
    finally:
        with engine.begin() as conn:
            for table in (name, *also_drop):
                conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()
