"""Accuracy of least squares and PCA on ill-conditioned data, and what the R factor costs a node.

Accuracy. For each condition number, a design whose centred columns have exactly that condition
number (``tests/analytics/exact.py``: singular values spread geometrically, column means up to
50, a linear target with noise 1e-6) is split over nodes sorted by its first column, so the
nodes' means differ. Each solver is compared with the exact answer for the stored data, computed
in rational arithmetic:

* normal equations: what fedlearn solved before, from the merged co-moments (``solve_psd`` of
  the co-moment matrix for regression, ``eigh`` of the covariance for PCA);
* R factor: what fedlearn solves now, from the merged R factors;
* scikit-learn on the pooled rows: ``LinearRegression``; ``PCA`` with its default solver (here
  ``covariance_eigh``) and with ``svd_solver="full"``.

Errors are relative: ``|w - w*| / |w*|`` for the coefficients, the largest ``|λ - λ*| / λ*``
over all explained variances, and the largest distance between a component and the exact unit
eigenvector (sign aligned).

Cost. A node summarises ``--cost-rows`` rows of ``--cost-features`` features and a target in
chunks of 65,536 rows, from memory (no I/O, so the ratio is the worst case), and ``--csv-rows``
of them from a CSV file (``CsvTable``): moments only (the summary before), and moments plus R
factor (now). Modes alternate within each repeat. BLAS runs
``--blas-threads`` threads (default 1, as simulated nodes do): multithreaded BLAS on a busy
machine varies several-fold from run to run. Run from the repository root:

    .venv/bin/python benchmarks/analytics_conditioning.py
    .venv/bin/python benchmarks/analytics_conditioning.py --rows 300 --cost-rows 100000 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the exact references live with the tests that use them

CONDITION_NUMBERS = (1e2, 1e4, 2.5e5, 1e6, 1e8)
CHUNK_ROWS = 65_536


def _federated_summary(columns: Any, order: Any, nodes: int, target: bool) -> Any:
    import numpy as np

    from fedlearn.analytics import SummarySpec, merge_all, summarize

    width = columns.shape[1] - int(target)
    spec = SummarySpec(columns=tuple(f"x{i}" for i in range(width)), target="y" if target else None)
    return merge_all([summarize(columns[p], spec, min_rows=0) for p in np.array_split(order, nodes)])


def accuracy(rows: int, features: int, nodes: int, cond: float, offset: float) -> dict[str, float]:
    import numpy as np
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression
    from tests.analytics import exact

    from fedlearn.analytics import FederatedLinearRegression, FederatedPCA
    from fedlearn.analytics._base import solve_psd

    x, y = exact.ill_conditioned(rows, features, cond, offset=offset)
    order = np.argsort(x[:, 0], kind="stable")
    coef, _ = exact.least_squares(x, y)
    comoment, _ = exact.comoment(x)
    variance = exact.eigenvalues(comoment) / (rows - 1)
    vectors = np.array([exact.eigenvector(comoment, v) for v in variance * (rows - 1)])

    def coef_error(w: Any) -> float:
        return float(np.linalg.norm(w - coef) / np.linalg.norm(coef))

    def variance_error(v: Any) -> float:
        return float(np.max(np.abs(v - variance) / variance))

    def component_error(components: Any) -> float:
        return float(
            max(min(np.linalg.norm(a - b), np.linalg.norm(a + b)) for a, b in zip(components, vectors, strict=True))
        )

    regression = _federated_summary(np.column_stack([x, y]), order, nodes, target=True)
    moments = regression.moments
    features_only = _federated_summary(x, order, nodes, target=False)
    values, eigenvectors = np.linalg.eigh(features_only.moments.covariance())
    old_components = eigenvectors[:, ::-1].T
    ours = FederatedPCA().fit_summary(features_only)
    default, full = PCA().fit(x), PCA(svd_solver="full").fit(x)
    return {
        "linear_old": coef_error(solve_psd(moments.comoment[:features, :features], moments.comoment[:features, -1])),
        "linear_new": coef_error(FederatedLinearRegression().fit_summary(regression).coef_),
        "linear_sklearn": coef_error(LinearRegression().fit(x, y).coef_),
        "variance_old": variance_error(np.maximum(values[::-1], 0.0)),
        "variance_new": variance_error(ours.explained_variance_),
        "variance_sklearn": variance_error(default.explained_variance_),
        "variance_sklearn_full": variance_error(full.explained_variance_),
        "components_old": component_error(old_components),
        "components_new": component_error(ours.components_),
        "components_sklearn": component_error(default.components_),
        "components_sklearn_full": component_error(full.components_),
    }


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall time and CPU time (all threads) of one call: on a shared machine the CPU time is steadier."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _compare(source: Any, spec: Any, repeats: int) -> dict[str, float]:
    """Median wall and CPU seconds of summarising ``source`` before (moments only) and now."""
    from fedlearn.analytics import Moments, Summary, accumulate
    from fedlearn.analytics.scan import chunks_of

    def moments_only() -> Moments:  # what accumulate did before: checked chunks, their moments, merged
        total = Moments.empty(len(spec.all_columns))
        for chunk in chunks_of(source, spec, chunk_rows=CHUNK_ROWS):
            total = total.merge(Moments.of(chunk))
        return total

    def with_factor() -> Summary:  # what it does now
        return accumulate(source, spec, chunk_rows=CHUNK_ROWS)

    moments_only(), with_factor()  # warm up: first calls pay for imports and BLAS start-up
    times: dict[str, list[tuple[float, float]]] = {"before": [], "now": []}
    for _ in range(repeats):
        times["before"].append(_timed(moments_only))
        times["now"].append(_timed(with_factor))
    out = {}
    for mode, runs in times.items():
        out[f"{mode}_s"] = statistics.median(wall for wall, _ in runs)
        out[f"{mode}_cpu_s"] = statistics.median(cpu for _, cpu in runs)
    return out


def cost(rows: int, csv_rows: int, features: int, repeats: int) -> dict[str, dict[str, float]]:
    """Summarising from memory (the worst case: no I/O) and from a CSV file, before and now."""
    import csv
    import tempfile

    import numpy as np

    from fedlearn.analytics import CsvTable, SummarySpec, accumulate
    from fedlearn.core import encode

    rng = np.random.default_rng(0)
    data = rng.standard_normal((rows, features + 1)) @ rng.standard_normal((features + 1, features + 1))
    data += rng.uniform(-100, 100, features + 1)
    spec = SummarySpec(columns=tuple(f"x{i}" for i in range(features)), target="y")
    chunks = [data[start : start + CHUNK_ROWS] for start in range(0, rows, CHUNK_ROWS)]
    summary = accumulate(chunks, spec)
    results = {
        "memory": _compare(chunks, spec, repeats),
        "bytes": {
            "before": len(encode(summary.moments.to_params())),
            "now": len(encode(summary.to_params())),
        },
    }
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "node.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(spec.all_columns)
            writer.writerows(data[:csv_rows].tolist())
        results["csv"] = _compare(CsvTable(path), spec, max(1, repeats // 2))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000, help="rows of each ill-conditioned design")
    parser.add_argument("--features", type=int, default=6)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--cost-rows", type=int, default=1_000_000)
    parser.add_argument("--csv-rows", type=int, default=100_000)
    parser.add_argument("--cost-features", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--blas-threads", type=int, default=1)
    args = parser.parse_args()

    cases = [(cond, 50.0) for cond in CONDITION_NUMBERS] + [(2.5e5, 1e6), (1e6, 1e6)]
    results = [(cond, offset, accuracy(args.rows, args.features, args.nodes, cond, offset)) for cond, offset in cases]
    print(
        f"{args.rows} rows x {args.features} features over {args.nodes} nodes; relative errors against the exact answer"
    )
    print()
    print(
        "| condition number | column means | linear: normal equations (before) | linear: R factor (now) "
        "| linear: scikit-learn |"
    )
    print("|---|---|---|---|---|")
    for cond, offset, r in results:
        print(
            f"| {cond:.2g} | {offset:.0e} | {r['linear_old']:.1e} | {r['linear_new']:.1e} | {r['linear_sklearn']:.1e} |"
        )
    print()
    print(
        "| condition number | column means | PCA variances: covariance eigh (before) | R factor (now) "
        "| scikit-learn default | scikit-learn full SVD | PCA components: before | now | sklearn default "
        "| sklearn full |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for cond, offset, r in results:
        cells = [r[f"{k}_{m}"] for k in ("variance", "components") for m in ("old", "new", "sklearn", "sklearn_full")]
        print(f"| {cond:.2g} | {offset:.0e} | " + " | ".join(f"{c:.1e}" for c in cells) + " |")
    print()

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        c = cost(args.cost_rows, args.csv_rows, args.cost_features, args.repeats)
    print(
        f"summarising {args.cost_features} features + target in chunks of {CHUNK_ROWS:,} rows, "
        f"{args.blas_threads} BLAS thread(s); median of {args.repeats} runs ({max(1, args.repeats // 2)} from CSV)"
    )
    print()
    print("| node's data | summary | wall time | CPU time |")
    print("|---|---|---|---|")
    for source, label in (("memory", f"{args.cost_rows:,} rows in memory"), ("csv", f"{args.csv_rows:,} rows of CSV")):
        t = c[source]
        print(f"| {label} | moments only (before) | {t['before_s']:.3f} s | {t['before_cpu_s']:.3f} s |")
        print(f"| {label} | moments and R factor (now) | {t['now_s']:.3f} s | {t['now_cpu_s']:.3f} s |")
        print(f"| {label} | ratio | {t['now_s'] / t['before_s']:.2f}x | {t['now_cpu_s'] / t['before_cpu_s']:.2f}x |")
    size = c["bytes"]
    print()
    print(
        f"summary on the wire: {size['before']:,} bytes before, {size['now']:,} now "
        f"({size['now'] / size['before']:.2f}x), whatever the row count"
    )


if __name__ == "__main__":
    main()
