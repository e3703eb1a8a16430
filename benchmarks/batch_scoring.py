"""Batch scoring with write-back: what idempotent, resumable chunks cost over a plain insert loop.

For each database (a SQLite file, PostgreSQL, MariaDB) a source table of ``--rows`` rows
``(id, x1, x2)`` is scored by a fixed linear model in chunks of ``--chunk-rows``, three ways:

- ``plain``: the baseline, a hand-written loop with none of the guarantees: it reads the whole
  source at once, predicts each chunk and INSERTs it into a fresh table, one commit per chunk.
  No key order, no upsert, no progress row, no duplicate check; a rerun would duplicate every row.
- ``score``: ``fedlearn.registry.scoring.score`` into a fresh table: key-ordered chunk queries,
  upserts, the progress row and the duplicate check, in one transaction per chunk.
- ``rescore``: the same job run again, so every upsert updates a row that exists.

The three modes take turns within each repeat; each measurement runs in a fresh interpreter,
which reports its own time and peak RSS. Every table is dropped afterwards.

    .venv/bin/python benchmarks/batch_scoring.py --rows 100000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from fedlearn.data.schema import InputSchema
from fedlearn.registry.databases import parse_url
from fedlearn.registry.scoring import ScoringJob, score

URLS = {
    "sqlite": "sqlite:///{tmp}/batch_scoring.db",
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql://root@127.0.0.1:3306/test",
}
MODES = ("plain", "score", "rescore")


@dataclass(frozen=True)
class Linear:
    """The benchmark's model: class 1 when x1 > x2."""

    version: str = "bench/1"
    task: str = "classification"

    @property
    def schema(self) -> InputSchema:
        return InputSchema.numeric(["x1", "x2"])

    def predict(self, features: NDArray[np.float32]) -> NDArray[Any]:
        return (features[:, 0] > features[:, 1]).astype(np.int64)

    def predict_proba(self, features: NDArray[np.float32]) -> NDArray[np.float64]:
        p = (features[:, 0] > features[:, 1]).astype(np.float64)
        return np.stack([1 - p, p], axis=1)


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(parse_url(url, what="url"))


def _plain(url: str, source: str, sink: str, chunk_rows: int) -> None:
    engine, model = _engine(url), Linear()
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {sink} (id BIGINT, prediction BIGINT, model_version VARCHAR(255))"))
        rows = conn.execute(sa.text(f"SELECT id, x1, x2 FROM {source}")).all()
    insert = sa.text(f"INSERT INTO {sink} VALUES (:id, :prediction, :model_version)")
    for start in range(0, len(rows), chunk_rows):
        chunk = rows[start : start + chunk_rows]
        features = model.schema.encode({"x1": [r[1] for r in chunk], "x2": [r[2] for r in chunk]})
        predictions = model.predict(features).tolist()
        values = [
            {"id": r[0], "prediction": p, "model_version": model.version}
            for r, p in zip(chunk, predictions, strict=True)
        ]
        with engine.begin() as conn:
            for batch in range(0, len(values), 1000):
                conn.execute(insert, values[batch : batch + 1000])
    engine.dispose()


def _score(url: str, source: str, sink: str, chunk_rows: int) -> None:
    job = ScoringJob(source=url, table=source, keys=("id",), write=sink, chunk_rows=chunk_rows,
                     progress_table=f"{sink}_progress")  # fmt: skip
    report = score(Linear(), job)  # type: ignore[arg-type]
    assert report.rows_skipped == 0


def worker(mode: str, url: str, source: str, sink: str, chunk_rows: int) -> None:
    started = time.perf_counter()
    (_plain if mode == "plain" else _score)(url, source, sink, chunk_rows)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _measure(mode: str, url: str, source: str, sink: str, chunk_rows: int) -> dict[str, float]:
    args = [sys.executable, __file__, "--worker", mode, url, source, sink, str(chunk_rows)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _fill(engine: sa.Engine, table: str, rows: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 2)).round(3)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, x1 FLOAT, x2 FLOAT)"))
        for start in range(0, rows, 5000):
            conn.execute(
                sa.text(f"INSERT INTO {table} VALUES (:id, :x1, :x2)"),
                [
                    {"id": i + 1, "x1": float(x[i, 0]), "x2": float(x[i, 1])}
                    for i in range(start, min(rows, start + 5000))
                ],
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=list(URLS))
    parser.add_argument("--tmp", default="/tmp")
    args = parser.parse_args()
    print(f"| database | mode | seconds (median of {args.repeats}) | rows/s | ratio to plain | peak RSS |")
    print("|---|---|---|---|---|---|")
    for backend in args.backends:
        url = URLS[backend].format(tmp=args.tmp)
        engine = _engine(url)
        tag = uuid.uuid4().hex[:8]
        source = f"bench_source_{tag}"
        tables = [source]
        _fill(engine, source, args.rows)
        results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        try:
            for repeat in range(args.repeats):
                sinks = {"plain": f"bench_plain_{tag}_{repeat}", "score": f"bench_scores_{tag}_{repeat}"}
                tables += [sinks["plain"], sinks["score"], f"{sinks['score']}_progress"]
                for mode in MODES:
                    sink = sinks["plain" if mode == "plain" else "score"]
                    results[mode].append(_measure(mode, url, source, sink, args.chunk_rows))
        finally:
            with engine.begin() as conn:
                for table in tables:
                    conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
            engine.dispose()
        base = statistics.median(r["seconds"] for r in results["plain"])
        for mode in MODES:
            seconds = statistics.median(r["seconds"] for r in results[mode])
            rss = max(r["rss_mb"] for r in results[mode])
            print(f"| {backend} | {mode} | {seconds:.2f} | {args.rows / seconds:,.0f} | {seconds / base:.2f} "
                  f"| {rss:.0f} MB |")  # fmt: skip
        if backend == "sqlite":
            Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    else:
        main()
