"""Statistics inside PostgreSQL against streaming the rows into the node: time and node memory.

The table (default 10 million rows x 20 float8 columns, ``bench_pushdown_10m``) is loaded once with
binary COPY from data generated chunk by chunk, and kept for reruns (drop it with ``--drop``). The
columns sit far from zero (means 1e2 to 1e6) and are correlated, as real measurements are.

* pushdown: :func:`fedlearn.analytics.summarize_in_database`, the aggregates run in PostgreSQL and
  only their results reach the node.
* stream: the existing chunked scan, :func:`fedlearn.analytics.accumulate` over the rows of the same
  query streamed to the node in chunks (:class:`fedlearn.analytics.SqlPushdownTable`).

Both summarise 19 features and a target, with a 50-bin histogram of one feature. Each measurement
runs in a fresh interpreter, so its peak RSS (``ru_maxrss``) is its own; a worker that only imports
the libraries and connects gives the baseline. Run from the repository root:

    .venv/bin/python benchmarks/bench_pushdown.py                          # the full run
    .venv/bin/python benchmarks/bench_pushdown.py --rows 200000 --repeats 1 # a quick look
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

URL = "postgresql://postgres@127.0.0.1:5432/test"
COLUMNS = 20
SEED = 0
CHUNK_ROWS = 100_000


def table_name(rows: int) -> str:
    return f"bench_pushdown_{rows // 1_000_000}m" if rows % 1_000_000 == 0 else f"bench_pushdown_{rows}"


def _names() -> list[str]:
    return [f"c{i:02d}" for i in range(COLUMNS)]


def _connect() -> Any:
    import psycopg

    return psycopg.connect(URL.replace("postgresql://", "postgresql://", 1), autocommit=True)


def ensure_table(rows: int) -> str:
    """Create and fill the table unless a complete one is already there; its name."""
    import numpy as np

    name = table_name(rows)
    with _connect() as conn:
        found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        if found and found[0]:
            (count,) = conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone() or (0,)
            if count == rows:
                return name
            conn.execute(f'DROP TABLE "{name}"')
        conn.execute(f'CREATE UNLOGGED TABLE "{name}" ({", ".join(f"{c} float8 NOT NULL" for c in _names())})')
        base = np.random.default_rng(SEED)
        mixing = base.standard_normal((COLUMNS, COLUMNS)) / np.sqrt(COLUMNS)
        offset = 10.0 ** base.uniform(2, 6, COLUMNS)
        layout = np.dtype(
            [("n", ">i2"), *[(f, t) for j in range(COLUMNS) for f, t in ((f"l{j}", ">i4"), (f"v{j}", ">f8"))]]
        )
        started = time.perf_counter()
        with conn.cursor().copy(f'COPY "{name}" FROM STDIN (FORMAT BINARY)') as copy:
            copy.write(b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8)
            for start in range(0, rows, CHUNK_ROWS):
                n = min(CHUNK_ROWS, rows - start)
                values = np.random.default_rng([SEED, start]).standard_normal((n, COLUMNS)) @ mixing + offset
                block = np.empty(n, dtype=layout)
                block["n"] = COLUMNS
                for j in range(COLUMNS):
                    block[f"l{j}"] = 8
                    block[f"v{j}"] = values[:, j]
                copy.write(block.tobytes())
            copy.write(b"\xff\xff")
        conn.execute(f'ANALYZE "{name}"')
        print(f"loaded {rows} rows into {name} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return name


def drop_table(rows: int) -> None:
    with _connect() as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{table_name(rows)}"')


def spec_json() -> str:
    from fedlearn.analytics import HistogramSpec, SummarySpec

    names = _names()
    histogram = HistogramSpec(column=names[0], low=490.0, high=495.0, bins=50)
    return SummarySpec(columns=tuple(names[:-1]), target=names[-1], histograms=(histogram,)).to_json()


def worker(mode: str, table: str) -> dict[str, Any]:
    """One measurement in this (fresh) interpreter: time, peak RSS and the summary's moments."""
    from fedlearn.analytics import SqlPushdownTable, SummarySpec, accumulate, summarize_in_database

    spec = SummarySpec.from_json(spec_json())
    source = SqlPushdownTable(URL, table=table, pushdown=mode == "pushdown")
    source.schema()  # connected, and the driver loaded, before the clock starts
    started = time.perf_counter()
    if mode == "pushdown":
        summary = summarize_in_database(source, spec)
    elif mode == "stream":
        summary = accumulate(source, spec)
    seconds = time.perf_counter() - started
    out: dict[str, Any] = {"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if mode != "baseline":
        out.update(
            count=summary.count,
            mean=summary.moments.mean.tolist(),
            comoment=summary.moments.comoment.tolist(),
            hist=summary.histograms[0].counts.tolist(),
        )
    source.close()
    return out


def measure(mode: str, table: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", mode, "--table", table], check=True, capture_output=True, text=True
    )
    return dict(json.loads(done.stdout))


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--drop", action="store_true", help="drop the table at the end")
    parser.add_argument("--worker", choices=["baseline", "pushdown", "stream"], help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.table)))
        return
    table = ensure_table(args.rows)
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "pushdown": [], "stream": []}
    for repeat in range(args.repeats):
        for mode, measured in runs.items():  # the modes take turns: drift in the machine's speed falls on all alike
            measured.append(measure(mode, table))
            print(f"repeat {repeat + 1} {mode}: {measured[-1]['seconds']:.1f} s", file=sys.stderr)
    push, stream = runs["pushdown"][0], runs["stream"][0]
    assert push["count"] == stream["count"] == args.rows and push["hist"] == stream["hist"]
    scale = np.max(np.abs(stream["comoment"]))
    agreement = {
        "mean": float(np.max(np.abs(np.subtract(push["mean"], stream["mean"])) / np.abs(stream["mean"]))),
        "comoment": float(np.max(np.abs(np.subtract(push["comoment"], stream["comoment"]))) / scale),
    }
    base_time = statistics.median(r["seconds"] for r in runs["pushdown"])
    base_rss = statistics.median(r["rss_mb"] for r in runs["baseline"])
    print(f"\n{args.rows:,} rows x {COLUMNS} float8 columns in PostgreSQL ({table}), median of {args.repeats}\n")
    print("| mode | time | ratio to pushdown | node peak RSS | above the baseline process |")
    print("|---|---|---|---|---|")
    for mode, measured in runs.items():
        seconds = statistics.median(r["seconds"] for r in measured)
        rss = statistics.median(r["rss_mb"] for r in measured)
        shown = "-" if mode == "baseline" else f"{seconds:.1f} s"
        ratio = "-" if mode == "baseline" else f"{seconds / base_time:.2f}x"
        print(f"| {mode} | {shown} | {ratio} | {rss:.0f} MB | {rss - base_rss:+.0f} MB |")
    print(
        f"\nagreement of pushdown with the scan: means to {agreement['mean']:.1e} (relative), "
        f"co-moments to {agreement['comoment']:.1e} of the largest entry, histogram counts equal"
    )
    if args.drop:
        drop_table(args.rows)


if __name__ == "__main__":
    main()
