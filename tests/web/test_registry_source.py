"""The model server's view of the coordinator's registry, over a real API on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fedlearn.core.errors import NotFoundError
from fedlearn.registry.catalog import register
from fedlearn.registry.serving import predict
from fedlearn.runtime.store import Store, open_store
from fedlearn.web.client import CoordinatorClient
from fedlearn.web.registry_source import RegistrySource
from tests.registry.linear import linear_package
from tests.web.serving import client_over_loopback

ROW = {"age": [30.0], "visits": [2.0], "plan": ["a"]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as opened:
        register(opened, linear_package(1))
        register(opened, linear_package(1, bias=1000.0))  # registered as version 2
        opened.set_model_alias("churn", "champion", 1)
        yield opened


@pytest.fixture
def client(store: Store) -> Iterator[CoordinatorClient]:
    with client_over_loopback(store) as opened:
        yield opened


def test_alias_resolves_to_its_version_and_follows_it_when_it_moves(client: CoordinatorClient, store: Store) -> None:
    source = RegistrySource(client, "churn@champion")
    before = source.resolve()

    store.set_model_alias("churn", "champion", 2)

    assert (before, source.resolve()) == ("1", "2")


def test_loaded_version_predicts_and_names_itself(client: CoordinatorClient) -> None:
    model = RegistrySource(client, "churn@champion").load("2")

    assert predict(model, ROW).values == [1050.0]
    assert model.version == "churn/2"


@pytest.mark.parametrize(("ref", "version"), [("churn", "2"), ("churn@latest", "2"), ("churn@1", "1")])
def test_name_and_number_resolve_to_the_newest_and_to_themselves(
    client: CoordinatorClient, ref: str, version: str
) -> None:
    assert RegistrySource(client, ref).resolve() == version


@pytest.mark.parametrize(
    ("ref", "message"),
    [("churn@staging", "model 'churn' has no alias 'staging'"), ("nothing@champion", "nothing")],
)
def test_unknown_alias_or_model_is_a_not_found_naming_it(client: CoordinatorClient, ref: str, message: str) -> None:
    with pytest.raises(NotFoundError, match=message):
        RegistrySource(client, ref).resolve()
