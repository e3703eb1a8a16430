"""The networked runtime on loopback: 10 node processes x 10M float32 parameters.

Starts a real coordinator and real node processes through the CLI, runs FedAvg rounds of a
learner that barely computes (``runtime_learner``), and reports time per round, parameter
throughput (bytes of parameters moved per second, both directions), the peak RSS of the
coordinator and of the largest node (also as multiples of the model's size), and the same run
through ``simulate`` in process. ``--size`` and ``--nodes`` change the case;
``--size 550000000 --nodes 1`` is the > 2 GB model. Run from the repository root:

    .venv/bin/python benchmarks/runtime_throughput.py                 # 10 nodes x 10M, 3 repeats
    .venv/bin/python benchmarks/runtime_throughput.py --nodes 1 --size 550000000 --rounds 2 --repeats 1
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

ROOT = Path(__file__).resolve().parents[1]
LEARNER = "benchmarks.runtime_learner:make"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from fedlearn.cli import main; main()", *args],
        cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT, env={**os.environ, **env},
    )  # fmt: skip


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def run_config(nodes: int, size: int, rounds: int, extra: str = "") -> str:
    return f"""
[run]
name = "throughput"
rounds = {rounds}
seed = 0
[model]
learner = "{LEARNER}"
n_features = 4
n_classes = 3
size = {size}
[strategy]
name = "fedavg"
[engine]
min_available_nodes = {nodes}
wait_for_nodes_timeout = 120
round_timeout = 3600
min_reply_fraction = 1.0
max_message_bytes = {2 * 4 * size + 2**20}
{extra}"""


def deployed(nodes: int, size: int, rounds: int, work: Path, extra: str = "") -> dict[str, float]:
    """Median round time, throughput, bytes per round and peak RSS of a deployed run; ``extra`` joins its config."""
    from fedlearn.runtime.store import open_store
    from fedlearn.web.client import CoordinatorClient

    admin = secrets.token_urlsafe(24)
    store = f"sqlite:///{work / 'bench.db'}"
    with open_store(store) as state:
        tokens = {f"node-{i:03d}": state.add_node(f"node-{i:03d}") for i in range(nodes)}
    grpc_port, http_port = _port(), _port()
    limit = str(2 * 4 * size + 2**20)
    coordinator = _spawn(
        ["coordinator", "--listen", f"127.0.0.1:{grpc_port}", "--http", f"127.0.0.1:{http_port}", "--store", store,
         "--allow-learner", LEARNER, "--max-message-bytes", limit],
        work / "coordinator.log", {"FEDLEARN_ADMIN_TOKEN": admin},
    )  # fmt: skip
    processes = [coordinator]
    try:
        for i, (name, token) in enumerate(tokens.items()):
            config = work / f"{name}.toml"
            config.write_text(
                f'[node]\nlearner = "{LEARNER}"\nlearner_options = {{ size = {size} }}\n'
                f'[datasets.iris]\nsource = "builtin"\nname = "iris"\nnodes = {max(nodes, 2)}\nindex = {i}\n'
            )
            processes.append(_spawn(
                ["node", "--coordinator", f"127.0.0.1:{grpc_port}", "--name", name, "--config", str(config),
                 "--max-message-bytes", limit],
                work / f"{name}.log", {"FEDLEARN_NODE_TOKEN": token},
            ))  # fmt: skip
        time.sleep(2)
        with CoordinatorClient(f"http://127.0.0.1:{http_port}", admin_token=admin, timeout=600) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if sum(n.status == "online" for n in client.nodes()) >= nodes:
                        break
                except Exception:  # the API is not up yet
                    pass
                time.sleep(0.5)
            run_id = client.submit(run_config(nodes, size, rounds, extra)).id
            while (run := client.run(run_id)).status not in ("completed", "failed", "stopped"):
                time.sleep(0.5)
        if run.status != "completed":
            raise SystemExit(f"run ended {run.status}: {run.message}")
        durations = [r.duration_s for r in run.history]
        moved = [r.bytes_sent + r.bytes_received for r in run.history]
        later = durations[1:] or durations  # round 1 includes connection warm-up
        print("round times:", ", ".join(f"{d:.1f} s" for d in durations), file=sys.stderr)
        return {
            "round_s": statistics.median(later),
            "mb_per_s": statistics.median(m / d for m, d in zip(moved[1:] or moved, later, strict=True)) / 1e6,
            "bytes_sent": statistics.median(r.bytes_sent for r in run.history),
            "bytes_received": statistics.median(r.bytes_received for r in run.history),
            "coordinator_rss_mb": _peak_rss_mb(coordinator.pid),
            "node_rss_mb": max(_peak_rss_mb(p.pid) for p in processes[1:]),
        }
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()


def simulated(nodes: int, size: int, rounds: int) -> float:
    from benchmarks.runtime_learner import make
    from fedlearn.data import load_dataset, partition
    from fedlearn.engine import EngineConfig
    from fedlearn.simulation import simulate
    from fedlearn.strategies import fedavg

    data = load_dataset("iris")
    parts = [data.subset(ix) for ix in partition("iid", data, max(nodes, 2), seed=0)][:nodes]
    result = simulate(make(data, size=size), parts, fedavg(), EngineConfig(rounds=rounds, seed=0))
    durations = [r.duration_s for r in result.history]
    return statistics.median(durations[1:] or durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--size", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # the in-process run imports benchmarks.runtime_learner, as the nodes do
    runs = []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(deployed(args.nodes, args.size, args.rounds, Path(tmp)))
    sim = statistics.median(simulated(args.nodes, args.size, args.rounds) for _ in range(args.repeats))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    model_mb = args.size * 4 / 1e6
    coordinator_mb, node_mb = med["coordinator_rss_mb"], med["node_rss_mb"]
    print(
        "| nodes | model | round (deployed) | round (simulate) | ratio | throughput | coordinator peak RSS "
        "| node peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.nodes} | {model_mb:,.0f} MB | {med['round_s']:.2f} s | {sim:.2f} s | {med['round_s'] / sim:.1f}x "
        f"| {med['mb_per_s']:,.0f} MB/s | {coordinator_mb:,.0f} MB ({coordinator_mb / model_mb:.1f}x) "
        f"| {node_mb:,.0f} MB ({node_mb / model_mb:.1f}x) |"
    )


if __name__ == "__main__":
    main()
