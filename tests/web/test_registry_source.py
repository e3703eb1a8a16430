"""The model server's view of the coordinator's registry, over a real API on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fedlearn.core.errors import NotFoundError
from fedlearn.registry.catalog import register
from fedlearn.registry.serving import predict
from fedlearn.runtime.coordinator import Coordinator
from fedlearn.runtime.store import Store, open_store
from fedlearn.simulation.inprocess import InProcessFleet
from fedlearn.web.api import create_app
from fedlearn.web.client import CoordinatorClient
from fedlearn.web.registry_source import RegistrySource
from fedlearn.web.server import api_server
from tests.registry.linear import linear_package
from tests.web.serving import served_on_loopback
from tests.web.test_api import ADMIN, _no_node

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
    app = create_app(Coordinator(store, InProcessFleet([], _no_node)), admin_token=ADMIN)
    with (
        served_on_loopback(api_server(app, host="127.0.0.1", port=0)) as port,
        CoordinatorClient(f"http://127.0.0.1:{port}", admin_token=ADMIN) as opened,
    ):
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
