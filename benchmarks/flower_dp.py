"""Flower 1.42's central DP (server-side fixed clipping) on issue 12's privacy-utility workload.

Why: issue 12 asks for fedlearn's privacy-utility table "with Flower 1.42's DP wrappers, side by
side", both sides' ε through the same accountant. This is Flower's side. The workload (Synthetic-IID
over 1,000 nodes of 50 rows, softmax regression, 1 local epoch of batch-10 SGD, 100 nodes a round,
100 rounds, clipping norm 1) is ``dp_workload.py``'s, shared with ``dp_privacy_utility.py``.

What runs is Flower's own code: its Message-API ``FedAvg`` (``flwr.serverapp.strategy``) with
``fraction_train = 0.1``, wrapped in ``DifferentialPrivacyServerSideFixedClipping``, driven by
``Strategy.start``, and a ``ClientApp`` whose ``train`` function runs the local SGD. For ε = ∞ the
same FedAvg runs unwrapped. The grid is in process (``InProcessGrid`` below): it hands each message,
round-tripped through Flower's protobuf serde as a transport would, to the ``ClientApp`` of the
addressed node. Flower's only simulation backend is Ray, which at 1,000 nodes on 2 cores would
time Ray, not DP; the accuracy does not depend on the grid.

What the wrapper does (``flwr/serverapp/strategy/dp_fixed_clipping.py`` and
``flwr/supercore/differential_privacy.py``): each reply's update (model - global) is scaled to
L2 norm at most C (FlatClip), FedAvg takes the example-weighted mean, and Gaussian noise of std
``z * C / m`` (m = the configured ``num_sampled_clients``) is added to the mean, drawn from NumPy's
global legacy generator (``np.random.normal``), not a cryptographic source. Flower samples the m
nodes with ``random.sample`` (fixed size, without replacement). The wrapper accepts an optional
accountant, but only "no-amplification" accounting: it never credits the sampling, so its ε is the
ε of 100 full-population Gaussian releases. Both figures are reported: ``epsilon`` (the shared RDP
accountant of ``dp_workload``, with fixed-size sampling under replace-one, sensitivity 2C) and
``epsilon_flower`` (Flower's own ``RdpAccountant``, attached to the wrapper).

The noise multiplier is calibrated with ``dp_workload.calibrate`` for ε ∈ {1, 3, 8} at δ = 1e-5.
Each run seeds Python's ``random`` (Flower's sampler) and NumPy's global generator (Flower's noise).

Install Flower in its own venv (it is not a fedlearn dependency), then run from the repository root::

    python3 -m venv /work/flwr/venv && /work/flwr/venv/bin/pip install flwr==1.42.0 numpy dp-accounting
    /work/flwr/venv/bin/python -m benchmarks.flower_dp --seeds 0 1 > flower_dp.jsonl

One JSON line per run on stdout: eps_target, noise_multiplier, rounds, accuracy, epsilon, wall_s, ...
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.serverapp import Grid
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg
from flwr.supercore.privacy_accounting import NeighboringRelation, PrivacyConfig, SamplingMethod
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from benchmarks import dp_workload as workload

TARGETS = (1.0, 3.0, 8.0, math.inf)


def client_app(data: workload.Data, training: workload.Training, seed: int) -> ClientApp:
    """A ClientApp whose node ``partition-id`` trains on partition ``partition-id``."""
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        node = int(context.node_config["partition-id"])
        server_round = int(message.content["config"]["server-round"])
        params = message.content["arrays"].to_numpy_ndarrays()
        trained = workload.local_sgd(
            params, data.train_x[node], data.train_y[node], training, seed=node_seed(seed, server_round, node)
        )
        content = RecordDict(
            {
                "arrays": ArrayRecord([np.asarray(p) for p in trained]),
                "metrics": MetricRecord({"num-examples": workload.ROWS_PER_NODE}),
            }
        )
        return Message(content, reply_to=message)

    return app


def node_seed(seed: int, server_round: int, node: int) -> int:
    """A distinct local-SGD seed for each (run seed, round, node)."""
    return (seed * 1_000_003 + server_round) * 10_007 + node


class InProcessGrid(Grid):
    """Flower's Grid interface over ClientApps in this process, messages round-tripped through protobuf."""

    def __init__(self, app: ClientApp, nodes: int) -> None:
        self._app = app
        self._run = Run.create_empty(run_id=1)
        # A ServerApp process learns its identity from Flower's runtime; Message() reads it from here.
        TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
        self._contexts = {
            node + 1: Context(
                run_id=1, node_id=node + 1, node_config={"partition-id": node}, state=RecordDict(), run_config={}
            )
            for node in range(nodes)
        }
        self._replies: dict[str, Message] = {}

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            message_id = uuid.uuid4().hex
            message.metadata.__dict__["_message_id"] = message_id
            message.metadata.__dict__["_run_id"] = self._run.run_id
            received = message_from_proto(message_to_proto(message))
            TaskIdentity.node_id = message.metadata.dst_node_id  # the node's process, while it answers
            try:
                reply = self._app(received, self._contexts[message.metadata.dst_node_id])
            finally:
                TaskIdentity.node_id = SUPERLINK_NODE_ID
            self._replies[message_id] = message_from_proto(message_to_proto(reply))
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))


def run(target: float, seed: int, data: workload.Data, training: workload.Training) -> dict[str, Any]:
    """One Flower run at ε = ``target`` (∞: FedAvg without DP); the JSON record of it."""
    random.seed(seed)
    np.random.seed(seed)  # Flower draws its DP noise from NumPy's global generator
    noise_multiplier = workload.calibrate(target, "fixed", training)
    fedavg = FedAvg(
        fraction_train=training.sample / workload.NODES,
        fraction_evaluate=0.0,
        min_train_nodes=training.sample,
        min_available_nodes=workload.NODES,
    )
    strategy: Any = fedavg
    accountant = None
    if noise_multiplier > 0:
        accountant = RdpAccountant(
            PrivacyConfig(
                target_delta=workload.DELTA,
                population_size=workload.NODES,
                neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                sampling_method=SamplingMethod.NO_AMPLIFICATION,
            )
        )
        strategy = DifferentialPrivacyServerSideFixedClipping(
            fedavg, noise_multiplier, training.clip, training.sample, accountant=accountant
        )
    grid = InProcessGrid(client_app(data, training, seed), workload.NODES)
    start = time.perf_counter()
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(workload.init_params(seed)),
        num_rounds=training.rounds,
        train_config=ConfigRecord({}),
    )
    wall = time.perf_counter() - start
    params = result.arrays.to_numpy_ndarrays()
    return {
        "framework": "flower",
        "version": "1.42.0",
        "eps_target": target,
        "seed": seed,
        "sampling": "fixed",
        "noise_multiplier": noise_multiplier,
        "noise_std_on_mean": noise_multiplier * training.clip / training.sample,
        "rounds": training.rounds,
        "accuracy": workload.accuracy(params, data.test_x, data.test_y),
        "epsilon": workload.epsilon(noise_multiplier, "fixed", training),
        "epsilon_sensitivity_c": workload.epsilon_sensitivity_c(noise_multiplier, training) if accountant else None,
        "epsilon_flower": accountant.get_privacy_spent().epsilon if accountant else None,
        "wall_s": wall,
        **{f"training.{k}": v for k, v in asdict(training).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--targets", type=float, nargs="+", default=list(TARGETS), help="ε targets; inf = no DP")
    parser.add_argument("--rounds", type=int, default=workload.Training().rounds)
    args = parser.parse_args()
    logging.getLogger("flwr").setLevel(logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)
    training = workload.Training(rounds=args.rounds)
    for seed in args.seeds:
        data = workload.make_data(seed)
        for target in args.targets:
            record = run(target, seed, data, training)
            print(json.dumps(record), flush=True)
            print(
                f"seed {seed} ε target {target:g}: z = {record['noise_multiplier']:.3f}, "
                f"accuracy {record['accuracy']:.4f}, ε {record['epsilon']:.3f} (Flower's own accountant: "
                f"{record['epsilon_flower']}), {record['wall_s']:.1f} s",
                file=sys.stderr,
                flush=True,
            )


if __name__ == "__main__":
    main()
