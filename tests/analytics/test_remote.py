"""Analytics requests as the coordinator runs them, over an in-process fleet of real node apps."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.linear_model import LinearRegression

from fedlearn.analytics import DisclosurePolicy, analytics_handlers
from fedlearn.analytics.catalog import MODELS, build_estimator
from fedlearn.analytics.remote import AnalyticsRequest, check_connected, run_request
from fedlearn.client.node_app import NodeApp
from fedlearn.core.errors import QuorumError
from fedlearn.simulation.inprocess import InProcessFleet
from tests.analytics.conftest import OPEN, assert_close, load, random_split

NAMES = [f"f{i}" for i in range(10)]


def _fleet(tables: dict[str, dict[str, np.ndarray]], *, policy: DisclosurePolicy = OPEN) -> InProcessFleet:
    return InProcessFleet(
        list(tables),
        lambda node: NodeApp(node_id=node, handlers=analytics_handlers({"rows": tables[node]}, policy=policy)),
    )


@pytest.fixture
def diabetes() -> Iterator[tuple[InProcessFleet, np.ndarray, np.ndarray]]:
    x, y = load("regression", "diabetes")
    tables = {
        f"node-{i}": {**{n: x[p, j] for j, n in enumerate(NAMES)}, "y": y[p]}
        for i, p in enumerate(random_split(len(x), 3, 0))
    }
    fleet = _fleet(tables, policy=DisclosurePolicy())
    yield fleet, x, y
    fleet.close()


def _request(**fields: object) -> AnalyticsRequest:
    base: dict[str, object] = {"columns": NAMES, "target": "y", "members": {f"node-{i}": "rows" for i in range(3)}}
    return AnalyticsRequest.model_validate({**base, **fields})


def test_linear_request_answers_the_pooled_fit_as_strict_json(
    diabetes: tuple[InProcessFleet, np.ndarray, np.ndarray],
) -> None:
    fleet, x, y = diabetes

    result = run_request(_request(model="linear"), fleet)

    decoded = json.loads(json.dumps(result, allow_nan=False))
    assert_close(decoded["attributes"]["coef_"], LinearRegression().fit(x, y).coef_)
    assert decoded["rows"] == len(x) and decoded["description"] is None


def test_describe_of_statistics_that_are_not_finite_answers_null() -> None:
    fleet = _fleet({"solo": {"a": np.array([2.0]), "y": np.array([1.0])}})

    result = run_request(_request(columns=["a"], members={"solo": "rows"}, model="describe"), fleet)
    fleet.close()

    assert [row["std"] for row in result["description"]] == [None, None]
    assert [row["mean"] for row in result["description"]] == [2.0, 1.0]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": "lda"}, "`model` 'lda' needs `task` = 'classification'"),
        ({"model": "ridge", "target": None}, "`model` 'ridge' needs a `target` column"),
        ({"model": "pca", "columns": ["f0", "f0"]}, "f0"),
        ({"model": "pca", "options": {"alpha": 1, "beta": 2}}, "beta"),
        ({"model": "tree"}, "tree"),
    ],
)
def test_inconsistent_requests_are_refused_before_any_node_is_asked(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _request(**fields)


def test_members_that_are_not_connected_are_named() -> None:
    with pytest.raises(QuorumError, match=r"nodes 'b', 'c' are not connected to the coordinator; connected: a \("):
        check_connected(["a", "b", "c"], ["a"])


@pytest.mark.parametrize("model", [m for m in MODELS if m != "describe"])
def test_every_model_name_builds_an_unfitted_estimator(model: str) -> None:
    estimator = build_estimator(model)

    assert not [name for name in vars(estimator) if name.endswith("_") and not name.startswith("_")]
