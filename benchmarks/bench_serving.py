"""Model serving on loopback: latency (p50, p99) and throughput of ``POST /invocations``.

A server process answers, on one core's worth of uvicorn, and this process is the load generator:
``--clients`` concurrent keep-alive connections, each sending its next request as soon as the last
one is answered, for ``--seconds`` after a second of warm-up. Two servers take turns within each repeat:

- ``baseline``: a bare FastAPI route on the same uvicorn server (``web.server.api_server``) that
  reads the body and answers a constant ``{"predictions": [0]}``: HTTP and the framework, nothing else;
- ``json``: the baseline, but it also parses the body with ``json.loads`` first, the floor for
  any Python server that takes JSON (MLflow's parses with ``json`` too, then builds a DataFrame);
- ``mlflow``: MLflow's own scoring server (``mlflow.pyfunc.scoring_server``, FastAPI, from the
  ``mlflow`` extra's mlflow-skinny) on the same uvicorn server, serving the same package exported
  as an MLflow model (``fedlearn models export --format mlflow``): it parses the body into a pandas
  DataFrame and calls the same predictor. Skipped when MLflow is not installed;
- ``fedlearn``: ``fedlearn.web.model_server`` serving a registered ``numpy.linear`` package over
  10 float columns, loaded as the registry loads it (a scikit-learn ``LinearRegression``): the
  guard, MLflow-format parsing, the schema's encoder, the prediction and the answer.

Each runs two cases, single rows and batches of 1,000 rows, both in ``dataframe_split`` form.
The load generator speaks HTTP/1.1 over asyncio streams itself, so that its own cost per
request (a few tens of microseconds) stays small next to the server's. ``--pieces`` instead
times, in this process, each step a request takes through the model server (median of many calls).
Run from the repository root:

    .venv/bin/python benchmarks/bench_serving.py              # 3 repeats, 4 s per measurement
    .venv/bin/python benchmarks/bench_serving.py --pieces     # where a request's time goes
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response

if TYPE_CHECKING:
    from fedlearn.registry.package import ModelPackage
    from fedlearn.registry.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = [f"x{i}" for i in range(10)]
CASES = {"single": 1, "batch": 1000}
MODES = ("baseline", "json", "mlflow", "fedlearn")


# -- the servers ------------------------------------------------------------------------------------


def _app(mode: str, mlflow_model: str | None) -> FastAPI:
    if mode == "mlflow":
        import mlflow.pyfunc
        from mlflow.pyfunc import scoring_server

        return scoring_server.init(mlflow.pyfunc.load_model(mlflow_model))
    if mode in ("baseline", "json"):
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

        @app.post("/invocations")
        async def constant(request: Request) -> Response:
            body = await request.body()
            if mode == "json":
                json.loads(body)
            return Response(b'{"predictions": [0]}', media_type="application/json")

        return app

    from fedlearn import __version__
    from fedlearn.registry.serving import ServedModel
    from fedlearn.web.model_server import create_model_app

    return create_model_app(ServedModel(_model()), fedlearn_version=__version__)


def _package() -> ModelPackage:
    """A ``numpy.linear`` package over :data:`COLUMNS`."""
    import numpy as np

    from fedlearn.core.params import ParamSet
    from fedlearn.data.schema import InputSchema
    from fedlearn.registry.package import ModelPackage

    weights = np.linspace(-1, 1, len(COLUMNS)).astype(np.float32)
    return ModelPackage(
        name="bench", version=1, kind="learner", model="numpy.linear", task="regression",
        schema=InputSchema.numeric(COLUMNS), params=ParamSet({"weight": weights, "bias": np.zeros(1, np.float32)}),
    )  # fmt: skip


def _model() -> Predictor:
    """The package loaded as the registry loads it."""
    from fedlearn.registry.predictors import load_package

    return load_package(_package())


def pieces(repeats: int = 15) -> None:
    """Microseconds per call of each step of ``/invocations``, median of ``repeats`` timings of many calls.

    The steps and sizes take turns within each repeat, so drift in the machine's speed falls on all alike.
    """
    from fedlearn.registry.invocations import JSON, parse_body

    model = _model()
    calls: dict[tuple[str, int], Callable[[], object]] = {}
    for rows in CASES.values():
        body = _body(rows)
        columns = parse_body(body, JSON, model.schema, max_rows=rows)
        features = model.schema.encode(columns)
        answer = {"predictions": model.predict(features).tolist()}
        calls |= {
            ("json.loads (the floor)", rows): partial(json.loads, body),
            ("parse_body (json.loads and the protocol's checks)", rows): partial(
                parse_body, body, JSON, model.schema, max_rows=rows
            ),
            ("InputSchema.encode", rows): partial(model.schema.encode, columns),
            ("predict (scikit-learn LinearRegression)", rows): partial(model.predict, features),
            ("answer (json.dumps of the predictions)", rows): partial(json.dumps, answer),
        }
    timings: dict[tuple[str, int], list[float]] = {key: [] for key in calls}
    for _ in range(repeats):
        for (name, rows), call in calls.items():
            number = 1000 if rows == 1 else 10
            started = time.perf_counter()
            for _ in range(number):
                call()
            timings[(name, rows)].append((time.perf_counter() - started) / number * 1e6)
    print("| step | 1 row | 1,000 rows |")
    print("|---|---|---|")
    for name in dict.fromkeys(name for name, _ in calls):
        single, batch = (statistics.median(timings[(name, rows)]) for rows in CASES.values())
        print(f"| {name} | {single:,.0f} µs | {batch:,.0f} µs |")


def serve(mode: str, port: int, mlflow_model: str | None) -> None:
    from fedlearn.web.server import api_server

    api_server(_app(mode, mlflow_model), host="127.0.0.1", port=port).run()


# -- the load generator -----------------------------------------------------------------------------


def _body(rows: int) -> bytes:
    data = [[round(0.1 * (row + column), 3) for column in range(len(COLUMNS))] for row in range(rows)]
    return json.dumps({"dataframe_split": {"columns": COLUMNS, "data": data}}).encode()


async def _client(port: int, request: bytes, until: float, warm: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (started := time.perf_counter()) < until:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12]
            fields = (line.split(b":", 1) for line in head.split(b"\r\n")[1:])
            length = next(int(value) for name, value in fields if name.lower() == b"content-length")
            answer = await reader.readexactly(length)
            if status != b"200":
                raise RuntimeError(f"the server answered {status.decode()}: {answer.decode()}")
            if started >= warm:
                latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


def load(port: int, rows: int, clients: int, seconds: float) -> dict[str, float]:
    body = _body(rows)
    request = (
        b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    latencies: list[float] = []
    warm = time.perf_counter() + 1.0
    until = warm + seconds

    async def run() -> None:
        await asyncio.gather(*(_client(port, request, until, warm, latencies) for _ in range(clients)))

    asyncio.run(run())
    latencies.sort()
    return {
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "requests_per_s": len(latencies) / seconds,
        "rows_per_s": rows * len(latencies) / seconds,
    }


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not listen within 30 s")


def measure(mode: str, rows: int, clients: int, seconds: float, mlflow_model: Path) -> dict[str, float]:
    """One measurement against a fresh server process of ``mode``."""
    port = _port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode, "--port", str(port), "--mlflow-model", str(mlflow_model)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    try:
        _wait_until_listening(port, process)
        return load(port, rows, clients, seconds)
    finally:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--pieces", action="store_true", help="Time each step of a request in this process.")
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mlflow-model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.mlflow_model)
        return
    if args.pieces:
        pieces()
        return

    modes = [mode for mode in MODES if mode != "mlflow" or importlib.util.find_spec("mlflow") is not None]
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        mlflow_model = Path(scratch) / "mlflow-model"
        if "mlflow" in modes:
            from fedlearn.registry.mlflow_model import write_mlflow_model

            write_mlflow_model(_package(), mlflow_model)
        for repeat in range(args.repeats):
            for case in args.cases:
                for mode in modes:  # the servers take turns, so drift in the machine's speed falls on all alike
                    result = measure(mode, CASES[case], args.clients, args.seconds, mlflow_model)
                    results.setdefault((case, mode), []).append(result)
                    said = " ".join(f"{k}={v:.2f}" for k, v in result.items())
                    print(f"repeat {repeat + 1} {case:6} {mode:8} {said}", flush=True)

    print(f"\n{args.clients} clients, {args.seconds:g} s per measurement, median of {args.repeats}\n")
    print("| case | server | p50 | p99 | requests/s | rows/s | p50 ratio | throughput ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        median = {mode: {k: statistics.median(r[k] for r in results[(case, mode)]) for k in results[(case, mode)][0]}
                  for mode in modes}  # fmt: skip
        base = median["baseline"]
        for mode in modes:
            m = median[mode]
            print(
                f"| {case} | {mode} | {m['p50_ms']:.2f} ms | {m['p99_ms']:.2f} ms | {m['requests_per_s']:,.0f} "
                f"| {m['rows_per_s']:,.0f} | {m['p50_ms'] / base['p50_ms']:.2f}x "
                f"| {m['requests_per_s'] / base['requests_per_s']:.2f}x |"
            )


if __name__ == "__main__":
    main()
