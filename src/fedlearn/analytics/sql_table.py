"""A database query or table as an analytics ``Table``, read in chunks through a server-side cursor.

The rows are summarised on the node, chunk by chunk; nothing but the summary leaves it. The
column types come from a ``LIMIT``-ed run of the query (:class:`~fedlearn.data.sql.SqlReader`).
"""

from __future__ import annotations

from fedlearn.analytics.sources import ReaderTable
from fedlearn.data.sql import SqlReader


class SqlTable(ReaderTable):
    """The result of ``query``, or all of ``table``, in the database at ``url`` (any SQLAlchemy URL)."""

    def __init__(self, url: str, query: str | None = None, *, table: str | None = None) -> None:
        super().__init__(SqlReader(url, query, table=table))
        self.url = url
        self.query = self.reader.query if isinstance(self.reader, SqlReader) else ""
