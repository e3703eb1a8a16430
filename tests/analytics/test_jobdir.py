"""A job directory's node summaries: what a removal does to the R factor, which cannot be subtracted.

A node that removes rows through a job directory has only the removed rows' CSV, not its
remaining rows, so it cannot factor them again: its R becomes unknown and least squares and PCA
fall back to the moments, with a warning when that would cost accuracy.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from fedlearn.analytics import FederatedLinearRegression, FederatedPCA, JobDir, SummarySpec
from fedlearn.core import ParamSet, decode_with_metadata, encode
from tests.analytics import exact
from tests.analytics.conftest import OPEN, assert_close, load


def _write(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*(f"x{i}" for i in range(x.shape[1])), "y"])
        writer.writerows([[*map(repr, row), repr(target)] for row, target in zip(x.tolist(), y.tolist(), strict=True)])
    return path


def _joined_then_removed(tmp_path: Path, x: np.ndarray, y: np.ndarray, removed: int) -> JobDir:
    spec = SummarySpec(columns=tuple(f"x{i}" for i in range(x.shape[1])), target="y")
    job = JobDir.create(tmp_path / "job", spec)
    job.update("a", _write(tmp_path / "all.csv", x, y), policy=OPEN)
    job.update("a", _write(tmp_path / "gone.csv", x[:removed], y[:removed]), remove=True)
    return job


def test_a_removal_in_a_job_directory_leaves_the_r_factor_unknown(tmp_path: Path) -> None:
    x, y = load("regression", "diabetes")
    record = _joined_then_removed(tmp_path, x, y, 100).load("a")
    assert record is not None
    assert not record.summary.factor.known
    assert record.summary.count == len(x) - 100


def test_well_conditioned_data_fall_back_to_the_moments_silently_and_exactly(tmp_path: Path) -> None:
    x, y = load("regression", "diabetes")
    record = _joined_then_removed(tmp_path, x, y, 100).load("a")
    assert record is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = FederatedLinearRegression().fit_summary(record.summary)
    assert_close(model.coef_, LinearRegression().fit(x[100:], y[100:]).coef_)


@pytest.mark.parametrize("estimator", [FederatedLinearRegression(), FederatedPCA()], ids=lambda e: type(e).__name__)
def test_ill_conditioned_data_warn_that_the_fallback_costs_accuracy(tmp_path: Path, estimator: object) -> None:
    x, y = exact.ill_conditioned(300, 5, 1e6)
    record = _joined_then_removed(tmp_path, x, y, 50).load("a")
    assert record is not None
    with pytest.warns(UserWarning, match=r"the remaining rows is unknown; with condition number 1\.\d+e\+06"):
        estimator.fit_summary(record.summary)  # type: ignore[attr-defined]


def test_a_summary_written_before_summaries_carried_r_loads_with_r_unknown(tmp_path: Path) -> None:
    x, y = load("regression", "diabetes")
    spec = SummarySpec(columns=tuple(f"x{i}" for i in range(x.shape[1])), target="y")
    job = JobDir.create(tmp_path / "job", spec)
    job.update("a", _write(tmp_path / "all.csv", x, y))
    file = tmp_path / "job" / "nodes" / "a.safetensors"
    params, meta = decode_with_metadata(file.read_bytes())
    file.write_bytes(encode(ParamSet({k: v for k, v in params.items() if "/factor/" not in k}), meta))

    record = job.load("a")

    assert record is not None and not record.summary.factor.known
    assert_close(FederatedLinearRegression().fit_summary(record.summary).coef_, LinearRegression().fit(x, y).coef_)
