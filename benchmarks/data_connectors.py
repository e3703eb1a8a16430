"""How fast a node reads its data: the connectors against the readers they replace, in one run.

The same rows (``--rows`` × 10 float columns, a 3-category text column and an integer label) are
written as CSV, as Parquet and into a PostgreSQL table; each is then read into a ``Dataset``:

* CSV: ``load_csv`` (pyarrow's parser, in blocks) against the stdlib ``csv`` reader with a
  ``float()`` per value, which ``load_csv`` used before (baseline);
* Parquet: ``load_parquet`` (record batches), against the same baseline;
* SQL: ``load_sql`` (server-side cursor, column-wise conversion) against ``pandas.read_sql`` on
  the same query (baseline for this row).

Each is the median of ``--repeats`` runs. Run from the repository root (PostgreSQL at
postgresql://postgres@127.0.0.1:5432/test):

    .venv/bin/python benchmarks/data_connectors.py                 # 300,000 rows
    .venv/bin/python benchmarks/data_connectors.py --rows 20000    # a quick look
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
FEATURES = [f"f{i}" for i in range(10)]
COLORS = ["red", "green", "blue"]


def _write(directory: Path, rows: int) -> tuple[Path, Path, dict[str, np.ndarray]]:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    columns = {name: rng.normal(size=rows) for name in FEATURES}
    columns["color"] = np.array(COLORS, dtype=object)[rng.integers(0, 3, rows)]
    columns["label"] = rng.integers(0, 2, rows)
    table = pa.table(columns)
    pcsv.write_csv(table, directory / "rows.csv")
    pq.write_table(table, directory / "rows.parquet")
    return directory / "rows.csv", directory / "rows.parquet", columns


def _stdlib_csv(path: Path) -> np.ndarray:
    """The reader ``load_csv`` used before: stdlib csv, one ``float()`` per value (numeric columns only)."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        picks = [header.index(name) for name in FEATURES]
        rows = [[float(row[i]) for i in picks] for row in reader]
    return np.asarray(rows, dtype=np.float32)


def _median(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import pandas as pd
    from sqlalchemy import create_engine, text

    from fedlearn.data import load_csv, load_parquet, load_sql
    from fedlearn.data.sql import driver_url

    declared = {"color": COLORS}
    with tempfile.TemporaryDirectory() as tmp:
        csv_path, parquet_path, columns = _write(Path(tmp), args.rows)
        table = f"bench_{uuid.uuid4().hex[:10]}"
        engine = create_engine(driver_url(PG_URL))
        pd.DataFrame(columns).to_sql(table, engine, index=False, chunksize=50_000)
        try:
            query = f"SELECT {', '.join(FEATURES)}, color, label FROM {table}"
            results = {
                "stdlib csv reader, float() per value (baseline, numeric columns only)": _median(
                    lambda: _stdlib_csv(csv_path), args.repeats
                ),
                "load_csv (pyarrow, with the category column)": _median(
                    lambda: load_csv(csv_path, target="label", columns=declared, n_classes=2), args.repeats
                ),
                "load_parquet (with the category column)": _median(
                    lambda: load_parquet(parquet_path, target="label", columns=declared, n_classes=2), args.repeats
                ),
                "pandas.read_sql (baseline for SQL)": _median(
                    lambda: pd.read_sql(text(query), engine).to_numpy(), args.repeats
                ),
                "load_sql, PostgreSQL (with the category column)": _median(
                    lambda: load_sql(PG_URL, query, target="label", columns=declared, n_classes=2), args.repeats
                ),
            }
        finally:
            with engine.begin() as conn:
                conn.execute(text(f"DROP TABLE {table}"))
            engine.dispose()
    baseline = next(iter(results.values()))
    sql_baseline = results["pandas.read_sql (baseline for SQL)"]
    print(f"| reader ({args.rows:,} rows × 12 columns) | median of {args.repeats} | vs baseline |")
    print("|---|---|---|")
    for name, seconds in results.items():
        base = sql_baseline if "sql" in name.lower() else baseline
        print(f"| {name} | {seconds:.3f} s | {seconds / base:.2f}× |")


if __name__ == "__main__":
    main()
