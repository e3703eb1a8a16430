"""Scratch databases for the scoring tests: a SQLite file, the real PostgreSQL and the real MariaDB.

Every table a test makes (its source, its predictions table, its progress table) has a unique name
and is dropped afterwards, so tests running in parallel, or again, never see each other's rows.
Set ``FEDLEARN_TEST_POSTGRES_URL`` or ``FEDLEARN_TEST_MARIADB_URL`` to point at other servers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from fedlearn.registry.scoring import ScoringJob

POSTGRES_URL = os.environ.get("FEDLEARN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("FEDLEARN_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")


@dataclass
class ScratchDatabase:
    """A database URL and the tables a test made in it."""

    url: str
    engine: sa.Engine
    tables: list[str] = field(default_factory=list)

    def name(self, stem: str) -> str:
        """A fresh table name, dropped when the test ends."""
        table = f"{stem}_{uuid.uuid4().hex[:10]}"
        self.tables.append(table)
        return table

    def sql(self, statement: str, **params: Any) -> list[sa.Row[Any]]:
        with self.engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return list(result.all()) if result.returns_rows else []

    def source(self, rows: Sequence[tuple[Any, ...]], *, columns: str = "id BIGINT, x1 FLOAT, x2 FLOAT") -> str:
        """A source table of ``rows`` (``id, x1, x2`` unless ``columns`` says otherwise)."""
        table = self.name("source")
        self.sql(f"CREATE TABLE {table} ({columns})")
        if rows:
            marks = ", ".join(f":c{i}" for i in range(len(rows[0])))
            with self.engine.begin() as conn:
                conn.execute(
                    sa.text(f"INSERT INTO {table} VALUES ({marks})"),
                    [{f"c{i}": value for i, value in enumerate(row)} for row in rows],
                )
        return table

    def job(self, table: str, /, **options: object) -> ScoringJob:
        """A job scoring ``table`` into fresh ``scores`` and ``progress`` tables here, by ``id``, 8 rows a chunk."""
        settings: dict[str, object] = {
            "source": self.url, "table": table, "keys": ("id",), "write": self.name("scores"),
            "progress_table": self.name("progress"), "chunk_rows": 8,
        }  # fmt: skip
        return ScoringJob(**(settings | options))  # type: ignore[arg-type]

    def drop(self) -> None:
        for table in self.tables:
            self.sql(f"DROP TABLE IF EXISTS {table}")
        self.engine.dispose()


def rows_of(n: int) -> list[tuple[int, float, float]]:
    """``n`` source rows ``(id, x1, x2)`` with ids 1..n, half of them of each class."""
    return [(i, float(i % 7), float(i % 5) + 0.5) for i in range(1, n + 1)]
