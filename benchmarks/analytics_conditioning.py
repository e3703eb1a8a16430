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
chunks of 65,536 rows, from memory (no I/O, so the ratio is the worst case): moments only (the
summary before), and moments plus R factor (now). Modes alternate within each repeat. Run from
the repository root:

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


def cost(rows: int, features: int, repeats: int) -> dict[str, float]:
    import numpy as np

    from fedlearn.analytics import Moments, Summary, SummarySpec, accumulate
    from fedlearn.analytics.scan import chunks_of
    from fedlearn.core import encode

    rng = np.random.default_rng(0)
    data = rng.standard_normal((rows, features + 1)) @ rng.standard_normal((features + 1, features + 1))
    data += rng.uniform(-100, 100, features + 1)
    spec = SummarySpec(columns=tuple(f"x{i}" for i in range(features)), target="y")
    chunks = [data[start : start + CHUNK_ROWS] for start in range(0, rows, CHUNK_ROWS)]

    def moments_only() -> Moments:  # what accumulate did before: checked chunks, their moments, merged
        total = Moments.empty(features + 1)
        for chunk in chunks_of(chunks, spec):
            total = total.merge(Moments.of(chunk))
        return total

    def with_factor() -> Summary:  # what it does now
        return accumulate(chunks, spec)

    moments_only(), with_factor()  # warm up: first calls pay for imports and BLAS start-up
    times: dict[str, list[tuple[float, float]]] = {"moments": [], "summary": []}
    for _ in range(repeats):
        times["moments"].append(_timed(moments_only))
        times["summary"].append(_timed(with_factor))
    summary = with_factor()
    return {
        "moments_s": statistics.median(wall for wall, _ in times["moments"]),
        "summary_s": statistics.median(wall for wall, _ in times["summary"]),
        "moments_cpu_s": statistics.median(cpu for _, cpu in times["moments"]),
        "summary_cpu_s": statistics.median(cpu for _, cpu in times["summary"]),
        "moments_bytes": len(encode(summary.moments.to_params())),
        "summary_bytes": len(encode(summary.to_params())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1000, help="rows of each ill-conditioned design")
    parser.add_argument("--features", type=int, default=6)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--cost-rows", type=int, default=1_000_000)
    parser.add_argument("--cost-features", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
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

    c = cost(args.cost_rows, args.cost_features, args.repeats)
    print(
        f"summarising {args.cost_rows:,} rows x {args.cost_features} features + target in memory, "
        f"chunks of {CHUNK_ROWS:,}; median of {args.repeats}"
    )
    print()
    print("| summary | node wall time | node CPU time | bytes on the wire |")
    print("|---|---|---|---|")
    print(f"| moments only (before) | {c['moments_s']:.3f} s | {c['moments_cpu_s']:.3f} s | {c['moments_bytes']:,} |")
    print(
        f"| moments and R factor (now) | {c['summary_s']:.3f} s | {c['summary_cpu_s']:.3f} s | {c['summary_bytes']:,} |"
    )
    print(
        f"| ratio | {c['summary_s'] / c['moments_s']:.2f}x | {c['summary_cpu_s'] / c['moments_cpu_s']:.2f}x "
        f"| {c['summary_bytes'] / c['moments_bytes']:.2f}x |"
    )


if __name__ == "__main__":
    main()
