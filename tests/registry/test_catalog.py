"""Registering runs and analytics models in a real store, and finding them again by reference."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fedlearn.analytics import FederatedGaussianNB, FederatedRidge
from fedlearn.analytics.catalog import learned_arrays
from fedlearn.core.errors import ConfigError, NotFoundError
from fedlearn.data.schema import InputSchema
from fedlearn.registry.catalog import (
    package_bytes,
    parse_ref,
    register_analytics,
    register_estimator,
    register_run,
    resolve,
)
from fedlearn.registry.package import ModelPackage
from fedlearn.registry.predictors import load_package
from fedlearn.runtime.store import Store, open_store
from tests.registry.conftest import blobs, completed_run, line


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        yield opened


def test_completed_run_registers_with_its_lineage(store: Store) -> None:
    store.add_node("node-a")
    run_id = completed_run(store)

    record = register_run(store, run_id, name="churn")
    package = ModelPackage.from_bytes(package_bytes(store, record))

    assert (record.name, record.version, record.run_id, package.ref) == ("churn", 1, run_id, "churn/1")
    assert package.params.bitwise_equal(store.load_checkpoint(run_id).params)  # type: ignore[union-attr]
    assert package.schema.names == ("f0", "f1", "f2", "f3")
    lineage = package.lineage
    assert (lineage["run_id"], lineage["round"], lineage["strategy"]) == (run_id, 2, {"name": "fedavg"})
    assert lineage["config"]["model"]["learner"] == "numpy.softmax"
    assert lineage["nodes"]["enrolled"] == ["node-a"]
    assert lineage["nodes"]["replies_per_round"] == [3, 3]
    assert lineage["nodes"]["contributed"] == ["node-000", "node-001", "node-002"]  # who trained it, not who enrolled
    assert lineage["privacy"] == {"secure_aggregation": False, "differential_privacy": None, "epsilon": None}
    assert "loss" in lineage["metrics"]["fit"]
    assert record.lineage == dict(lineage)


def test_registered_run_predicts_with_its_trained_params(store: Store) -> None:
    record = register_run(store, completed_run(store), name="churn")
    data = blobs(3)

    model = load_package(ModelPackage.from_bytes(package_bytes(store, record)))
    z = data.x @ store.load_checkpoint(record.run_id).params["weight"]  # type: ignore[arg-type, union-attr]

    assert np.array_equal(model.predict(data.x), (z + model.package.params["bias"]).argmax(axis=1))


def test_registering_the_same_run_twice_makes_a_new_version(store: Store) -> None:
    run_id = completed_run(store)
    schema = InputSchema.numeric(["age", "income", "tenure", "calls"])

    first = register_run(store, run_id, name="churn")
    second = register_run(store, run_id, name="churn", schema=schema, classes=("stay", "leave", "unsure"))

    assert (first.version, second.version) == (1, 2)
    assert ModelPackage.from_bytes(package_bytes(store, second)).classes == ("stay", "leave", "unsure")
    assert [c["name"] for c in second.input_schema] == ["age", "income", "tenure", "calls"]


@pytest.mark.parametrize("status", ["running", "failed", "stopped", "pending"])
def test_a_run_that_did_not_complete_is_refused(store: Store, status: str) -> None:
    run_id = completed_run(store, status=status)  # type: ignore[arg-type]

    with pytest.raises(ConfigError, match=f"run {run_id} is {status}; only a completed run can be registered"):
        register_run(store, run_id, name="churn")
    assert store.list_models() == []


def test_schema_of_the_wrong_width_is_refused(store: Store) -> None:
    with pytest.raises(ConfigError, match=r"makes 2 features; run .* was trained on 4"):
        register_run(store, completed_run(store), name="churn", schema=InputSchema.numeric(["a", "b"]))


def test_unknown_run_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no run with id 'nope'"):
        register_run(store, "nope", name="churn")


def test_fitted_estimator_registers_and_predicts_as_fitted(store: Store) -> None:
    data = blobs(3)
    estimator = FederatedGaussianNB().fit(data.x.astype(np.float64), data.y)

    record = register_estimator(store, estimator, name="nb", schema=InputSchema.numeric(data.feature_names))
    model = load_package(ModelPackage.from_bytes(package_bytes(store, record)))

    assert (record.kind, record.model, record.task) == ("analytics", "gnb", "classification")
    assert np.array_equal(model.predict_proba(data.x), estimator.predict_proba(data.x))


def test_analytics_answer_registers_with_its_members_as_lineage(store: Store) -> None:
    data = line()
    estimator = FederatedRidge(alpha=0.5).fit(data.x.astype(np.float64), data.y)
    answer = {
        "model": "ridge", "columns": list(data.feature_names), "target": "y", "task": "regression", "rows": 90,
        "members": [{"node": "n2", "dataset": "d", "rows": 40, "types": {}}, {"node": "n1", "dataset": "d"}],
        "secure": False, "privacy": None,
        "attributes": {k: v.tolist() for k, v in learned_arrays(estimator).items()},
    }  # fmt: skip

    record = register_analytics(store, answer, name="prices", options={"alpha": 0.5})
    model = load_package(ModelPackage.from_bytes(package_bytes(store, record)))

    assert np.allclose(model.predict(data.x), estimator.predict(data.x), rtol=0, atol=1e-12)
    assert record.lineage["nodes"] == ["n1", "n2"]
    assert record.lineage["analytics"]["rows"] == 90


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "pca"}, "only analytics models that predict"),
        ({"attributes": {}}, "has no fitted `attributes`"),
        ({"attributes": {"coef_": [1.0, None], "intercept_": 0.0, "n_features_in_": 2}}, "must hold finite numbers"),
        ({"attributes": {"coef_": [[1.0], [1.0, 2.0]]}}, "is not a regular array"),
        ({"columns": "abc"}, "`columns` must be a list"),
    ],
)
def test_bad_analytics_answer_is_refused(store: Store, change: dict[str, object], message: str) -> None:
    answer = {"model": "linear", "columns": ["a", "b"], "rows": 3, "members": [],
              "attributes": {"coef_": [1.0, 2.0], "intercept_": 0.5, "n_features_in_": 2}, **change}  # fmt: skip

    with pytest.raises(ConfigError, match=message):
        register_analytics(store, answer, name="m")
    assert store.list_models() == []


def test_references_resolve_to_versions(store: Store) -> None:
    run_id = completed_run(store)
    for _ in range(3):
        register_run(store, run_id, name="churn")
    store.set_model_alias("churn", "champion", 2)

    assert [resolve(store, ref).version for ref in ("churn", "churn@latest", "churn@1", "churn@champion")] == [
        3,
        3,
        1,
        2,
    ]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("churn@", "ends in '@'"),
        ("../x@1", "`model name` must be"),
        ("churn@-x", "`alias` must be"),
        ("", "model name"),
    ],
)
def test_bad_references_are_refused(ref: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_ref(ref)
