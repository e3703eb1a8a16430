"""The networked runtime while one node tries to starve the coordinator.

Starts a real coordinator and three honest node processes through the CLI (SQLite store, no
TLS), and runs FedAvg rounds of the built-in softmax model on digits. Once the honest nodes are
connected, up to two more registered nodes, real processes from
``tests/runtime/deploy/hostile_streams.py``, attack it. ``mallory`` keeps 1,000 streams open that
never send a byte (half Uploads, half Sessions, each reopened a second after it ends). ``eve``
joins the run and answers every task with 8 concurrent uploads of the same ``--size`` bytes
(200 MiB by default). The cases are: quiet, mallory alone, eve alone, and both. The table gives the round
latency (median over rounds 2 to the last, over all repeats; with eve in the run it includes
waiting for her reply), how many honest nodes replied per round, and the coordinator's peak RSS
and its RSS two seconds after the run ended.

Run from the repository root; ``PYTHONPATH`` picks the code under test:

    PYTHONPATH=src .venv/bin/python benchmarks/runtime_under_attack.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HONEST = ("node-000", "node-001", "node-002")
MB = 1e6


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(args: list[str], log: Path, token: str = "", admin: str = "") -> subprocess.Popen[bytes]:
    env = {**os.environ, "FEDLEARN_NODE_TOKEN": token, "FEDLEARN_ADMIN_TOKEN": admin}
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)


def _rss_mb(pid: int, field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024 / MB
    return float("nan")


def _run_config(nodes: int, rounds: int) -> str:
    return f"""
[run]
name = "under-attack"
rounds = {rounds}
seed = 0
[model]
learner = "numpy.softmax"
n_features = 64
n_classes = 10
[strategy]
name = "fedavg"
[engine]
min_available_nodes = {nodes}
wait_for_nodes_timeout = 60
round_timeout = 60
min_reply_fraction = 0.5
"""


def _node_config(index: int) -> str:
    return (
        '[node]\nlearner = "numpy.softmax"\n'
        f'[datasets.digits]\nsource = "builtin"\nname = "digits"\nnodes = 3\nindex = {index}\nseed = 7\n'
    )


CASES = {
    "quiet": (),
    "silent streams": ("mallory",),
    "duplicate uploads": ("eve",),
    "both": ("mallory", "eve"),
}


def one_run(*, hostile: tuple[str, ...], rounds: int, size: int, work: Path) -> dict[str, Any]:
    from fedlearn.runtime.store import open_store
    from fedlearn.web.client import CoordinatorClient

    admin = secrets.token_urlsafe(24)
    store = f"sqlite:///{work / 'bench.db'}"
    with open_store(store) as state:
        tokens = {name: state.add_node(name) for name in (*HONEST, *hostile)}
    grpc_port, http_port = _port(), _port()
    cli = ["-c", "from fedlearn.cli import main; main()"]
    listen = ["--listen", f"127.0.0.1:{grpc_port}", "--http", f"127.0.0.1:{http_port}", "--store", store]
    coordinator = _spawn([*cli, "coordinator", *listen], work / "coordinator.log", admin=admin)
    processes = [coordinator]
    try:
        for i, name in enumerate(HONEST):
            config = work / f"{name}.toml"
            config.write_text(_node_config(i))
            args = ["node", "--coordinator", f"127.0.0.1:{grpc_port}", "--name", name, "--config", str(config)]
            processes.append(_spawn([*cli, *args], work / f"{name}.log", tokens[name]))
        nodes = len(HONEST) + ("eve" in hostile)  # eve takes part in the run; mallory only holds streams
        with CoordinatorClient(f"http://127.0.0.1:{http_port}", admin_token=admin, timeout=60) as client:
            online = lambda: sum(n["status"] == "online" for n in client.nodes())  # noqa: E731
            if not _wait(lambda: online() >= len(HONEST)):
                raise SystemExit("the honest nodes did not connect")
            attack = {"mallory": ["--silent", "1000"], "eve": ["--duplicates", "8", "--size", str(size)]}
            for name in hostile:  # the attack starts once the honest nodes are in, as in the issue
                processes.append(_spawn(["-m", "tests.runtime.deploy.hostile_streams", "--coordinator",
                                         f"127.0.0.1:{grpc_port}", "--name", name, *attack[name]],
                                        work / f"{name}.log", tokens[name]))  # fmt: skip
            if not _wait(lambda: online() >= nodes and ("mallory" not in hostile or _silent_started(work))):
                return _measured(coordinator.pid, "failed: eve could not connect", [])
            run_id = client.submit(_run_config(nodes, rounds))["id"]
            if not _wait(lambda: client.run(run_id)["status"] in ("completed", "failed", "stopped"), timeout=600):
                raise SystemExit(f"run {run_id} did not end")
            run = client.run(run_id)
        time.sleep(2.0)  # let the last transfers end before reading the RSS that stays
        status = run["status"] if run["status"] == "completed" else f"{run['status']}: {run['message']}"
        return _measured(coordinator.pid, status, run["history"])
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()


def _measured(pid: int, status: str, history: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's row: round times after the first, honest replies per round, and coordinator memory."""
    return {
        "status": status,
        "rounds_s": [r["duration_s"] for r in history[1:]],
        "honest_replies": [len([n for n in HONEST if n not in r["failures"]]) for r in history],
        "peak_mb": _rss_mb(pid, "VmHWM"),
        "after_mb": _rss_mb(pid, "VmRSS"),
    }


def _silent_started(work: Path) -> bool:
    """Whether mallory has reported on her streams, which she does once they have been open 2 s."""
    return "silent" in (work / "mallory.log").read_text()


def _wait(condition: Any, timeout: float = 60) -> bool:
    """Whether ``condition`` came true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except Exception:  # the API is not up yet
            pass
        time.sleep(0.3)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=200 << 20, help="bytes of each duplicate upload")
    parser.add_argument("--label", default="this tree", help="what the table's rows are called")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    print("| code | case | honest round (median) | honest replies per round | coordinator peak RSS "
          "| coordinator RSS after | runs |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for case, hostile in CASES.items():
        runs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(one_run(hostile=hostile, rounds=args.rounds, size=args.size, work=Path(tmp)))
            print(case, runs[-1], file=sys.stderr)
        rounds = [s for r in runs for s in r["rounds_s"]]
        latency = f"{statistics.median(rounds) * 1000:,.0f} ms" if rounds else "-"
        replies = "/".join(str(n) for n in sorted({n for r in runs for n in r["honest_replies"]}))
        peak, after = (statistics.median(r[k] for r in runs) for k in ("peak_mb", "after_mb"))
        statuses = ", ".join(sorted({r["status"] for r in runs}))
        print(
            f"| {args.label} | {case} | {latency} | {replies or 0} of 3 | {peak:,.0f} MB | {after:,.0f} MB "
            f"| {statuses} |"
        )


if __name__ == "__main__":
    main()
