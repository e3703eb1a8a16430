"""The package file: it round-trips, describes itself, and refuses hostile files with one clear line."""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedlearn.client.learners import BUILTIN_LEARNERS, builtin_learner
from fedlearn.core.codec import decode_with_metadata, encode
from fedlearn.core.errors import CodecError, ConfigError
from fedlearn.core.params import ParamSet
from fedlearn.data.schema import InputSchema
from fedlearn.registry.package import METADATA_KEY, ModelPackage, learner_spec
from fedlearn.registry.predictors import load_package
from tests.registry.conftest import blobs, line

SCHEMA = InputSchema.numeric(["a", "b", "c"])


def _package(**changes: Any) -> ModelPackage:
    fields: dict[str, Any] = {
        "name": "churn",
        "version": 3,
        "kind": "learner",
        "model": "numpy.softmax",
        "options": {"learning_rate": 0.1},
        "task": "classification",
        "classes": ("stay", "leave"),
        "schema": SCHEMA,
        "params": ParamSet({"weight": np.ones((3, 2), np.float32), "bias": np.zeros(2, np.float32)}),
        "lineage": {"run_id": "r-1", "round": 5, "nodes": ["n1", "n2"], "metrics": {"accuracy": 0.9}},
        "created": 1_700_000_000.5,
    }
    return ModelPackage(**{**fields, **changes})


def _hostile(description_changes: dict[str, Any], params: dict[str, np.ndarray] | None = None) -> bytes:
    """A well-formed safetensors file whose description was edited by an attacker."""
    package = _package()
    description = {**package.description(), **description_changes}
    arrays = package.params.to_dict() if params is None else params
    return encode(arrays, {METADATA_KEY: json.dumps(description)})


def test_package_round_trips_through_a_file(tmp_path: Path) -> None:
    package = _package()

    read = ModelPackage.read(package.write(tmp_path / "churn.safetensors"))

    assert read.description() == package.description()
    assert read.params.bitwise_equal(package.params)
    assert read.ref == "churn/3"
    assert not list(tmp_path.glob(".*partial"))


def test_file_describes_itself_to_a_plain_safetensors_reader() -> None:
    from safetensors.numpy import load

    data = _package().to_bytes()
    header_length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + header_length])

    description = json.loads(json.loads(header["__metadata__"]["fedlearn"])[METADATA_KEY])
    assert description["format"] == "fedlearn.model"
    assert description["schema"] == [{"name": n, "type": "float"} for n in "abc"]
    assert description["lineage"]["nodes"] == ["n1", "n2"]
    assert sorted(load(data)) == ["bias", "weight"]


def test_equal_packages_give_equal_bytes() -> None:
    assert _package().to_bytes() == _package().to_bytes()


@pytest.mark.parametrize("model", BUILTIN_LEARNERS)
def test_learner_spec_matches_what_each_builtin_learner_initialises(model: str) -> None:
    if model.startswith("torch"):
        pytest.importorskip("torch")
    data = line() if model == "numpy.linear" else blobs(3)
    options = {} if model in ("numpy.softmax", "numpy.linear", "sklearn.sgd") else {"hidden": [5, 3]}

    expected = builtin_learner(model, data, **options).init_params(0).spec()

    assert learner_spec(model, options, n_features=4, n_classes=data.n_classes, task=data.task) == expected


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": "3"}, "`version` must be an integer"),
        ({"version": 0}, "`version` must be an integer >= 1"),
        ({"name": "../etc/passwd"}, "`model name` must be 1-64"),
        ({"kind": "shell"}, "`kind` must be one of"),
        ({"task": "clustering"}, "`task` must be classification or regression"),
        ({"model": "os.system; rm"}, "`model` must be a built-in learner"),
        ({"model": "numpy.linear"}, "learner 'numpy.linear' is a regression model"),
        ({"classes": ["only"]}, "at least 2 `classes`"),
        ({"classes": [["nested"], 1]}, "labels must be strings or numbers"),
        ({"classes": "ab"}, "`classes` must be a JSON list"),
        ({"options": [1]}, "`options` must be a JSON dict"),
        ({"lineage": {"round": "five"}}, "lineage `round` must be int"),
        ({"created": "yesterday"}, "`created` must be a Unix time"),
        ({"created": 1e300}, "`created` must be a Unix time"),
        ({"kind": "analytics", "model": ["linear"]}, "`model` must be a learner or analytics model name"),
        ({"schema": {"a": "float"}}, "an input schema is a list"),
        ({"options": {"hidden": [10**12]}, "model": "numpy.mlp"}, "do not match learner 'numpy.mlp'"),
    ],
)
def test_hostile_description_is_refused_with_one_line(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ModelPackage.from_bytes(_hostile(changes))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "pickle"}, "`format` must be 'fedlearn.model'"),
        ({"format_version": 99}, "`format_version` 99 is not supported"),
        ({"payload": "x"}, r"unexpected \['payload'\]"),
    ],
)
def test_foreign_or_future_file_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(CodecError, match=message):
        ModelPackage.from_bytes(_hostile(changes))


@pytest.mark.parametrize(
    "params",
    [
        {"weight": np.ones((3, 3), np.float32), "bias": np.zeros(2, np.float32)},
        {"weight": np.ones((3, 2), np.float64), "bias": np.zeros(2, np.float32)},
        {"weight": np.ones((3, 2), np.float32)},
        {"weight": np.ones((3, 2), np.float32), "bias": np.zeros(2, np.float32), "extra": np.zeros(1, np.float32)},
    ],
    ids=["shape", "dtype", "missing", "extra"],
)
def test_params_that_do_not_fit_the_learner_are_refused(params: dict[str, np.ndarray]) -> None:
    with pytest.raises(ConfigError, match=r"do not match learner 'numpy\.softmax'"):
        ModelPackage.from_bytes(_hostile({}, params))


def test_bytes_that_are_not_a_package_are_refused() -> None:
    with pytest.raises(CodecError):
        ModelPackage.from_bytes(b"\x80\x04\x95pickle")
    with pytest.raises(CodecError, match=r"no 'fedlearn\.model' entry"):
        ModelPackage.from_bytes(encode({"w": np.zeros(2)}))
    with pytest.raises(CodecError, match="header claims"):
        ModelPackage.from_bytes(struct.pack("<Q", 2**62) + b"{}")


def test_oversized_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = _package().write(tmp_path / "big.safetensors")

    with pytest.raises(CodecError, match="the limit is 100"):
        ModelPackage.read(path, max_bytes=100)


def test_oversized_description_is_refused() -> None:
    with pytest.raises(CodecError, match="package description is"):
        ModelPackage.from_bytes(_hostile({"lineage": {"config": {"pad": "x" * (17 * 2**20)}}}))


def test_description_with_endless_columns_is_refused_in_bounded_time() -> None:
    columns = [{"name": f"c{i}", "type": "float"} for i in range(100_001)]
    data = _hostile({"schema": columns})

    started = time.perf_counter()
    with pytest.raises(CodecError, match="100001 input columns; the limit is 100000"):
        ModelPackage.from_bytes(data)
    assert time.perf_counter() - started < 5.0  # parsing the JSON only: no column is built


def test_long_schema_of_repeated_names_is_checked_in_linear_time() -> None:
    data = _hostile({"schema": [{"name": "same", "type": "float"}] * 30_000})

    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"names column\(s\) \['same'\] more than once"):
        ModelPackage.from_bytes(data)
    assert time.perf_counter() - started < 5.0  # a quadratic check took about 30 s here


def test_user_learner_named_by_a_file_is_never_imported_without_trust() -> None:
    module = "tests.registry.never_imported_module"
    data = _hostile({"model": f"{module}:make"})

    package = ModelPackage.from_bytes(data)
    with pytest.raises(ConfigError, match="pass trust_code=True"):
        load_package(package)

    assert package.trusted_code
    assert module not in sys.modules


def test_user_learner_loads_with_trust_code() -> None:
    package = _package(model="tests.registry.user_learner:make", options={"scale": 2.0})

    loaded = load_package(package, trust_code=True)

    assert loaded.predict(np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])).tolist() == [1, 0]
    assert loaded.predict_proba(np.zeros((1, 3))).shape == (1, 2)


def test_analytics_package_with_broken_arrays_is_refused_when_loaded() -> None:
    arrays = {"coef_": np.ones(5), "intercept_": np.array(0.5), "n_features_in_": np.array(3)}
    package = _package(kind="analytics", model="linear", options={}, task="regression", classes=(), params=arrays)

    with pytest.raises(ConfigError, match="do not make a working FederatedLinearRegression"):
        load_package(package)


def test_analytics_package_must_declare_its_feature_count() -> None:
    arrays = {"coef_": np.ones(3), "intercept_": np.array(0.5), "n_features_in_": np.array(7)}

    with pytest.raises(ConfigError, match="`n_features_in_` must be 3"):
        _package(kind="analytics", model="linear", options={}, task="regression", classes=(), params=arrays)


def test_lineage_and_options_must_be_json() -> None:
    with pytest.raises(ConfigError, match="only JSON values"):
        _package(lineage={"metrics": {"loss": float("nan")}})
    with pytest.raises(ConfigError, match="only JSON values"):
        _package(options={"fn": print})


def test_decoded_package_arrays_are_read_only() -> None:
    package = ModelPackage.from_bytes(_package().to_bytes())

    assert not package.params["weight"].flags.writeable
    assert decode_with_metadata(package.to_bytes())[0].bitwise_equal(package.params)
