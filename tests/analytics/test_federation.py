"""Standing federations in process: a real store and coordinator over in-process nodes, for the fast checks.

The deployed path (node processes, HTTP, restarts) is in ``tests/runtime/deploy/test_federation_deployment.py``;
here every model the federation keeps is compared with the same estimator fitted on the pooled rows,
through the JSON answer and back into an estimator, and removal and the schedule are checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.datasets import load_iris

from fedlearn.analytics.catalog import build_estimator
from fedlearn.analytics.federation import BatchRequest, FederationRequest, Federations
from fedlearn.analytics.federation_schedule import FederationScheduler
from fedlearn.analytics.handlers import analytics_handlers
from fedlearn.analytics.policy import DisclosurePolicy
from fedlearn.analytics.summary import Summary, SummarySpec
from fedlearn.client.node_app import NodeApp
from fedlearn.core.codec import decode
from fedlearn.core.errors import ConfigError, NotFoundError, PrivacyError
from fedlearn.runtime.coordinator import Coordinator
from fedlearn.runtime.store import Store, open_store
from fedlearn.simulation.inprocess import InProcessFleet
from fedlearn.web.contract import FederationModel
from tests.analytics.conftest import assert_close

FEATURES = ["f0", "f1", "f2", "f3"]
MODELS = ["gnb", "lda", "qda", "pca", "covariance"]


def _parts() -> list[dict[str, np.ndarray]]:
    x, y = load_iris(return_X_y=True)
    order = np.random.default_rng(3).permutation(len(y))
    return [
        {**{f: x[p, i] for i, f in enumerate(FEATURES)}, "y": y[p].astype(np.float64)} for p in np.array_split(order, 3)
    ]


PARTS = _parts()
DATA = {"a": {"p0": PARTS[0], "p2": PARTS[2]}, "b": {"p1": PARTS[1]}, "strict": {"p1": PARTS[1]}}
POLICIES = {"strict": DisclosurePolicy(min_rows=1000)}


def _node(name: str) -> NodeApp:
    return NodeApp(node_id=name, handlers=analytics_handlers(DATA[name], policy=POLICIES.get(name, DisclosurePolicy())))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        for name in DATA:
            opened.add_node(name)
        yield opened


@pytest.fixture
def federations(store: Store) -> Iterator[Federations]:
    fleet = InProcessFleet(list(DATA), _node)
    yield Federations(Coordinator(store, fleet))
    fleet.close()


def _create(federations: Federations, name: str = "iris", **extra: Any) -> None:
    federations.create(FederationRequest(name=name, columns=FEATURES, target="y", task="classification",
                                         models=MODELS, members={"a": "p0", "b": "p1"}, **extra))  # fmt: skip


def federations_spec() -> SummarySpec:
    return SummarySpec(columns=tuple(FEATURES), target="y", by_class=True)


def _pooled(*parts: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    x = np.column_stack([np.concatenate([p[f] for p in parts]) for f in FEATURES])
    return x, np.concatenate([p["y"] for p in parts]).astype(np.int64)


def _fetched(federations: Federations, name: str, model: str) -> Any:
    from fedlearn.web.federation_client import estimator_of

    return estimator_of(FederationModel.model_validate(federations.model(name, model)))


@pytest.mark.parametrize("model", MODELS)
def test_every_kept_model_fetched_through_json_equals_the_model_of_the_pooled_rows(
    federations: Federations, model: str
) -> None:
    _create(federations)
    federations.refresh("iris")
    federations.add_batch("iris", "a", BatchRequest(dataset="p2"))
    x, y = _pooled(*PARTS)

    fetched = _fetched(federations, "iris", model)
    local = build_estimator(model).fit(x, y) if model not in ("pca", "covariance") else build_estimator(model).fit(x)

    use = "transform" if model == "pca" else "mahalanobis" if model == "covariance" else "predict_proba"
    assert_close(getattr(fetched, use)(x), getattr(local, use)(x), rtol=1e-7)


def test_removing_a_batch_gives_the_models_of_the_rows_left_with_their_r_factor_known(
    federations: Federations, store: Store
) -> None:
    _create(federations)
    federations.refresh("iris")
    before = federations.model("iris", "lda")["attributes"]
    batch = federations.add_batch("iris", "a", BatchRequest(dataset="p2"))

    federations.remove_batch("iris", "a", batch["id"])

    assert_close(federations.model("iris", "lda")["attributes"]["coef_"], before["coef_"], rtol=1e-10)
    assert [b["dataset"] for b in federations.show("iris")["batches"]] == ["p0", "p1"]
    member = next(m for m in store.federation_state("iris").members if m.node == "a")
    assert member.summary_digest is not None
    kept = Summary.from_params(decode(store.get_blob(member.summary_digest)), federations_spec())
    assert kept.factor.known and kept.count == len(PARTS[0]["y"])
    with pytest.raises(NotFoundError, match="no batch"):
        federations.remove_batch("iris", "a", batch["id"])


def test_removing_a_members_last_batch_drops_the_member(federations: Federations) -> None:
    _create(federations)
    federations.refresh("iris")
    [batch] = [b for b in federations.show("iris")["batches"] if b["node"] == "b"]

    federations.remove_batch("iris", "b", batch["id"])

    shown = federations.show("iris")
    assert [m["node"] for m in shown["members"]] == ["a"] and shown["rows"] == len(PARTS[0]["y"])


def test_a_nodes_privacy_refusal_of_a_batch_reaches_the_caller_and_stores_nothing(federations: Federations) -> None:
    _create(federations)

    with pytest.raises(PrivacyError, match="'strict'"):
        federations.add_batch("iris", "strict", BatchRequest(dataset="p1"))

    assert {b["node"] for b in federations.show("iris")["batches"]} == {"a", "b"}


def test_a_dataset_a_member_already_contributes_is_refused_so_no_row_counts_twice(federations: Federations) -> None:
    _create(federations)

    with pytest.raises(ConfigError, match="`dataset` 'p0' of node 'a' is already batch"):
        federations.add_batch("iris", "a", BatchRequest(dataset="p0"))

    assert len(federations.show("iris")["batches"]) == 2


def test_a_refresh_with_no_member_reachable_records_each_one_stale(store: Store) -> None:
    fleet = InProcessFleet([], _node)
    federations = Federations(Coordinator(store, fleet))
    _create(federations)

    shown = federations.refresh("iris")

    stale = {m["node"]: m["stale"] for m in shown["members"]}
    assert stale == dict.fromkeys(["a", "b"], "not connected to the coordinator")
    assert {f["model"]: f["rows"] for f in shown["fitted"]} == dict.fromkeys(MODELS, 0)
    fleet.close()


def test_the_scheduler_refreshes_a_due_federation_once_until_it_is_due_again(federations: Federations) -> None:
    _create(federations, refresh_seconds=3600)
    _create(federations, name="on-demand")
    scheduler = FederationScheduler(federations)

    first, second = scheduler.run_due(), scheduler.run_due()

    assert (first, second) == (["iris"], [])
    assert federations.show("iris")["report"] == {"scheduled": True, "stale": {}}
    assert federations.show("on-demand")["refreshed_at"] is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"columns": [f"c{i}" for i in range(1001)]}, "columns"),
        ({"histograms": [{"column": "f0", "low": 0, "high": 1, "bins": 10**9}]}, "histograms.0.bins"),
        ({"models": ["logistic"]}, "models.0"),
    ],
)
def test_definitions_the_coordinator_could_not_hold_or_keep_are_refused_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    body = {"name": "big", "columns": FEATURES, "target": "y", "task": "classification", "models": ["lda"],
            "members": {"a": "p0"}, **change}  # fmt: skip

    with pytest.raises(ValidationError) as caught:
        FederationRequest.model_validate(body)

    assert ".".join(map(str, caught.value.errors()[0]["loc"])) == field
