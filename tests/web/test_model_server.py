"""The model server's HTTP app: MLflow's endpoints and formats, its refusals, and a hot swap under load on loopback."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fedlearn.core.errors import ConfigError
from fedlearn.core.limits import DEFAULT_MAX_INVOCATION_ROWS
from fedlearn.registry.predictor import Predictor
from fedlearn.registry.serving import AliasWatcher, ServedModel
from fedlearn.web.model_server import VERSION_HEADER, create_model_app
from fedlearn.web.server import api_server
from tests.registry.linear import Linear, linear
from tests.web.serving import served_on_loopback

TOKEN = "serving-token-0123456789"
ROWS = [[30, 2, "a"], [41.5, 0, "b"]]
PREDICTIONS = [50.0, 141.5]  # age + 10 visits + 100 [plan = b]


def _app(model: Predictor | None = None, **options: Any) -> FastAPI:
    return create_model_app(ServedModel(model or linear("churn/1")), fedlearn_version="0.1.0", **options)


@pytest.fixture
def api() -> TestClient:
    return TestClient(_app())


@pytest.mark.parametrize(
    "document",
    [
        {"dataframe_split": {"columns": ["age", "visits", "plan"], "data": ROWS}},
        {"dataframe_records": [{"age": 30, "visits": 2, "plan": "a"}, {"age": 41.5, "visits": 0, "plan": "b"}]},
        {"inputs": ROWS},
        {"inputs": {"age": [30, 41.5], "visits": [2, 0], "plan": ["a", "b"]}},
        {"instances": ROWS},
    ],
    ids=["split", "records", "inputs-rows", "inputs-columns", "instances"],
)
def test_invocations_answers_mlflows_shape_with_the_version_header(api: TestClient, document: Any) -> None:
    response = api.post("/invocations", json=document)

    assert response.status_code == 200
    assert response.json() == {"predictions": PREDICTIONS}
    assert response.headers[VERSION_HEADER] == "churn/1"


def test_invocations_takes_csv(api: TestClient) -> None:
    body = "age,visits,plan\n30,2,a\n41.5,0,b\n"

    response = api.post("/invocations", content=body, headers={"Content-Type": "text/csv"})

    assert response.json() == {"predictions": PREDICTIONS}


@pytest.mark.parametrize(
    ("rows", "column"),
    [
        ([[math.nan, 2, "a"]], "age"),
        ([["thirty", 2, "a"]], "age"),
        ([[30, 2.5, "a"]], "visits"),
        ([[30, 2, "c"]], "plan"),
        ([[30, None, "a"]], "visits"),
        ([[30, 2, 7]], "plan"),
    ],
    ids=["nan", "text-for-a-number", "fraction-for-an-int", "unknown-category", "null", "number-for-a-category"],
)
def test_row_off_the_schema_is_a_422_naming_the_column(api: TestClient, rows: list[Any], column: str) -> None:
    response = api.post(
        "/invocations", content=json.dumps({"inputs": rows}), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["column"] == column
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert repr(column) in response.json()["message"]


def test_missing_column_is_a_422_naming_it(api: TestClient) -> None:
    document = {"dataframe_split": {"columns": ["age", "plan"], "data": [[30, "a"]]}}

    response = api.post("/invocations", json=document)

    assert (response.status_code, response.json()["column"]) == (422, "visits")


def test_body_off_the_protocol_is_a_422_in_one_line(api: TestClient) -> None:
    response = api.post("/invocations", json={"data": ROWS})

    assert response.status_code == 422
    assert "must hold exactly one of" in response.json()["message"]
    assert "column" not in response.json()


def test_non_finite_prediction_is_a_500_naming_the_version() -> None:
    broken = Linear(version="churn/9", weights=linear("x").weights, bias=math.inf)
    api = TestClient(_app(broken))

    response = api.post("/invocations", json={"inputs": ROWS})

    assert (response.status_code, response.json()["error_code"]) == (500, "INTERNAL_ERROR")
    assert response.json()["message"] == "model churn/9 made a non-finite prediction, which JSON cannot carry"


def test_model_that_raises_is_a_500_in_mlflows_shape_and_the_server_goes_on() -> None:
    class Broken(Linear):
        def predict(self, features: Any) -> Any:
            raise RuntimeError("weights and features disagree")

    api = TestClient(_app(Broken(version="churn/9", weights=linear("x").weights)), raise_server_exceptions=False)

    failed = api.post("/invocations", json={"inputs": ROWS})

    assert (failed.status_code, failed.json()["error_code"]) == (500, "INTERNAL_ERROR")
    assert "RuntimeError: weights and features disagree" in failed.json()["message"]
    assert api.get("/health").status_code == 200


def test_other_media_type_is_a_415(api: TestClient) -> None:
    response = api.post("/invocations", content=b"<rows/>", headers={"Content-Type": "application/xml"})

    assert response.status_code == 415
    assert "'application/xml'" in response.json()["message"]


def test_rows_over_the_limit_are_a_413() -> None:
    api = TestClient(_app(max_rows=3))

    response = api.post("/invocations", json={"inputs": ROWS * 2})

    assert response.status_code == 413
    assert response.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert "holds 4 rows, over this server's limit of 3" in response.json()["message"]


def test_body_longer_than_the_limit_is_a_413_naming_the_option() -> None:
    api = TestClient(_app(max_body_bytes=100))

    response = api.post("/invocations", json={"inputs": ROWS * 10})

    assert response.status_code == 413
    assert response.json()["message"] == (
        "the request body is larger than this model server's limit of 100 bytes; send less, "
        "or start `fedlearn serve` with a larger --max-body-bytes"
    )


def test_with_a_token_invocations_need_it_and_health_does_not() -> None:
    api = TestClient(_app(bearer_token=TOKEN))

    refused = api.post("/invocations", json={"inputs": ROWS})
    admitted = api.post("/invocations", json={"inputs": ROWS}, headers={"Authorization": f"Bearer {TOKEN}"})

    assert (refused.status_code, refused.json()["error_code"]) == (401, "UNAUTHENTICATED")
    assert admitted.status_code == 200
    assert api.get("/health").status_code == 200


def test_short_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16 characters"):
        _app(bearer_token="short")


def test_health_is_503_until_a_model_is_loaded_then_200() -> None:
    served = ServedModel()
    api = TestClient(create_model_app(served, fedlearn_version="0.1.0"))
    before = api.get("/health")
    refused = api.post("/invocations", json={"inputs": ROWS})

    served.swap(linear("churn/1"))

    assert (before.status_code, refused.status_code) == (503, 503)
    assert api.get("/health").json() == {"status": "ok", "model_version": "churn/1"}
    assert api.get("/ping").status_code == 200


def test_version_names_the_model_and_fedlearn(api: TestClient) -> None:
    assert api.get("/version").json() == {"model_version": "churn/1", "fedlearn_version": "0.1.0"}


def test_unknown_path_is_a_404_in_mlflows_shape(api: TestClient) -> None:
    response = api.get("/nowhere")

    assert (response.status_code, response.json()["error_code"]) == (404, "ENDPOINT_NOT_FOUND")


# -- over a real socket ------------------------------------------------------------------------------


@pytest.fixture
def loopback() -> Iterator[tuple[str, ServedModel]]:
    served = ServedModel(linear("churn/1"))
    app = create_model_app(served, fedlearn_version="0.1.0", body_timeout=1.0)
    with served_on_loopback(api_server(app, host="127.0.0.1", port=0, header_timeout=1.0)) as port:
        yield f"http://127.0.0.1:{port}", served


def test_endless_chunked_body_is_a_413_after_the_limit_is_read(loopback: tuple[str, ServedModel]) -> None:
    url, _ = loopback
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        chunk = b"[" * 65536
        while sent < 2**30:
            sent += len(chunk)
            yield chunk

    with httpx.Client(timeout=10) as client:
        response = client.post(f"{url}/invocations", content=endless(), headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    assert sent < 2**24  # the server closed the connection at the 4 MiB limit, not a GiB later


def test_a_million_rows_are_a_413_in_bounded_time(loopback: tuple[str, ServedModel]) -> None:
    url, _ = loopback
    body = b'{"inputs": {"age": [' + b",".join([b"1"] * 1_000_000) + b"]}}"  # 2 MB, under the byte limit
    started = time.monotonic()

    response = httpx.post(f"{url}/invocations", content=body, headers={"Content-Type": "application/json"}, timeout=10)

    assert response.status_code == 413
    assert (
        f"holds 1000000 rows, over this server's limit of {DEFAULT_MAX_INVOCATION_ROWS}" in response.json()["message"]
    )
    assert time.monotonic() - started < 5  # parsing 2 MB takes well under a second; the rest is the machine's load


def test_body_that_stops_arriving_is_a_408_and_the_server_keeps_answering(loopback: tuple[str, ServedModel]) -> None:
    url, _ = loopback
    host, port = url.removeprefix("http://").split(":")
    import socket

    with socket.create_connection((host, int(port))) as stalled:
        stalled.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        stalled.settimeout(5)
        answer = stalled.recv(4096)

        assert answer.startswith(b"HTTP/1.1 408")
        assert httpx.get(f"{url}/health").status_code == 200


def test_request_in_flight_during_a_swap_finishes_on_the_version_it_started_with(
    loopback: tuple[str, ServedModel],
) -> None:
    url, served = loopback
    entered, release = threading.Event(), threading.Event()

    class Slow(Linear):
        def predict(self, features: Any) -> Any:
            entered.set()
            release.wait(5)
            return super().predict(features)

    old = linear("churn/1")
    served.swap(Slow(version="churn/1", weights=old.weights))
    answer: list[httpx.Response] = []
    request = threading.Thread(target=lambda: answer.append(httpx.post(f"{url}/invocations", json={"inputs": ROWS})))
    request.start()
    assert entered.wait(5)

    served.swap(linear("churn/2", bias=1000))
    after = httpx.post(f"{url}/invocations", json={"inputs": ROWS})
    release.set()
    request.join()

    assert (answer[0].headers[VERSION_HEADER], answer[0].json()["predictions"]) == ("churn/1", PREDICTIONS)
    assert (after.headers[VERSION_HEADER], after.json()["predictions"]) == ("churn/2", [1050.0, 1141.5])


def test_alias_move_under_concurrent_load_drops_no_request(loopback: tuple[str, ServedModel]) -> None:
    url, served = loopback
    alias = {"version": "1"}

    def load(version: str) -> Predictor:
        time.sleep(0.3)  # a slow load, while the old version goes on answering
        return linear(f"churn/{version}", bias=1000.0 * (int(version) - 1))

    watcher = AliasWatcher(served, resolve=lambda: alias["version"], load=load, poll_seconds=0.05)
    watcher.version = "1"
    answers: list[tuple[float, int, str, float]] = []  # (time sent, status, version header, prediction)
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            while not stop.is_set():
                sent = time.monotonic()
                response = http.post("/invocations", json={"inputs": [ROWS[0]]})
                prediction = response.json()["predictions"][0] if response.status_code == 200 else math.nan
                answers.append((sent, response.status_code, response.headers.get(VERSION_HEADER, ""), prediction))

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    watcher.start()
    time.sleep(0.2)
    alias["version"] = "2"
    deadline = time.monotonic() + 5
    while (served.current is None or served.current.version != "churn/2") and time.monotonic() < deadline:
        time.sleep(0.01)
    swapped_at = time.monotonic()
    time.sleep(0.3)
    stop.set()
    for thread in clients:
        thread.join()
    watcher.stop()

    assert {status for _, status, _, _ in answers} == {200}
    versions = [version for _, _, version, _ in answers]
    assert "churn/1" in versions and "churn/2" in versions
    assert all({"churn/1": 50.0, "churn/2": 1050.0}[version] == value for _, _, version, value in answers)
    late = [version for sent, _, version, _ in answers if sent > swapped_at]  # sent after the swap
    assert late and set(late) == {"churn/2"}
