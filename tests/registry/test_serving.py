"""The served model and its alias watcher: a moved alias is loaded off the request path, then swapped in whole."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from fedlearn.core.errors import ConfigError, NotFoundError, SchemaError
from fedlearn.registry.predictor import Predictor
from fedlearn.registry.serving import AliasWatcher, FileSource, ServedModel, predict
from tests.registry.linear import linear

ROW = {"age": [1.0], "visits": [2.0], "plan": ["b"]}


class Registry:
    """An alias and the versions it may point at, as the watcher sees them through its two callables."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.broken: set[str] = set()
        self.loads: list[str] = []

    def resolve(self) -> str:
        return self.alias

    def load(self, version: str) -> Predictor:
        self.loads.append(version)
        if version in self.broken:
            raise NotFoundError(f"version {version} has no package")
        return linear(f"churn/{version}", bias=float(version) * 1000)


def test_predict_names_the_version_that_answered() -> None:
    prediction = predict(linear("churn/1"), ROW)

    assert (prediction.version, prediction.values) == ("churn/1", [121.0])


def test_predict_refuses_a_row_off_the_schema_naming_the_column() -> None:
    with pytest.raises(SchemaError) as caught:
        predict(linear("churn/1"), {**ROW, "plan": ["c"]})

    assert caught.value.column == "plan"


def test_first_check_loads_the_version_the_alias_points_at() -> None:
    served, registry = ServedModel(), Registry("1")

    swapped = AliasWatcher(served, resolve=registry.resolve, load=registry.load).check()

    assert swapped and served.current is not None and served.current.version == "churn/1"


def test_check_without_a_move_loads_nothing() -> None:
    served, registry = ServedModel(), Registry("1")
    watcher = AliasWatcher(served, resolve=registry.resolve, load=registry.load)
    watcher.check()

    assert not watcher.check()
    assert registry.loads == ["1"]


def test_request_that_read_the_old_version_finishes_on_it_after_a_swap() -> None:
    served = ServedModel(linear("churn/1"))
    model = served.current
    assert model is not None

    served.swap(linear("churn/2", bias=1000))

    assert predict(model, ROW).version == "churn/1"
    assert served.current is not None and predict(served.current, ROW).version == "churn/2"


def test_version_that_fails_to_load_keeps_the_old_one_serving_and_logs_why(caplog: pytest.LogCaptureFixture) -> None:
    served, registry = ServedModel(), Registry("1")
    watcher = AliasWatcher(served, resolve=registry.resolve, load=registry.load, poll_seconds=0.01)
    watcher.check()
    registry.alias, registry.broken = "2", {"2"}

    with caplog.at_level(logging.WARNING, logger="fedlearn.registry.serving"):
        watcher.start()
        deadline = time.monotonic() + 5
        while registry.loads.count("2") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        watcher.stop()

    assert served.current is not None and served.current.version == "churn/1"
    assert watcher.version == "1"
    assert "(version 2 has no package); still serving 1" in caplog.text


def test_polling_thread_moves_to_the_new_version_once_it_loads() -> None:
    served, registry = ServedModel(), Registry("1")
    watcher = AliasWatcher(served, resolve=registry.resolve, load=registry.load, poll_seconds=0.01)
    watcher.check()
    moved = threading.Event()
    registry.alias = "2"

    watcher.start()
    deadline = time.monotonic() + 5
    while not moved.is_set() and time.monotonic() < deadline:
        if served.current is not None and served.current.version == "churn/2":
            moved.set()
        time.sleep(0.01)
    watcher.stop()

    assert moved.is_set()
    assert registry.loads == ["1", "2"]


def test_poll_interval_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="poll_seconds"):
        AliasWatcher(ServedModel(), resolve=lambda: "1", load=linear, poll_seconds=0)


def test_file_source_sees_a_file_written_anew_as_a_new_version(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "churn.fedmodel"
    path.write_text("1")
    source = FileSource(path, read=lambda p: linear(f"churn/{p.read_text()}"))
    served = ServedModel()
    watcher = AliasWatcher(served, resolve=source.resolve, load=source.load)
    watcher.check()

    path.write_text("22")

    assert watcher.check()
    assert served.current is not None and served.current.version == "churn/22"


def test_file_source_of_a_missing_file_names_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = FileSource(tmp_path / "gone.fedmodel", read=lambda p: linear("x"))

    with pytest.raises(ConfigError, match=r"cannot read model package .*gone\.fedmodel"):
        source.resolve()
