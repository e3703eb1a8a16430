"""``simulate``: a federated run of virtual nodes on one machine, through the real engine.

Each partition becomes a node (``node-000``, ``node-001``, ...). The engine, strategy and
validation are the same objects a deployment uses; only the fleet differs, so a simulation is a
faithful rehearsal, and the same seed gives bit-identical parameters whichever executor runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from fedlearn.client.allocator import retain_freed_memory
from fedlearn.client.contract import DataContract
from fedlearn.client.node_app import NodeApp
from fedlearn.client.secure_aggregation import SecureAggregationNode
from fedlearn.client.trainer import Learner
from fedlearn.core.errors import ConfigError
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import Dataset
from fedlearn.engine.engine import Checkpoint, Engine, EngineConfig, RoundCallback, RunState
from fedlearn.engine.faults import FaultPlan, FaultyFleet
from fedlearn.engine.fleet import Fleet
from fedlearn.engine.history import RoundRecord
from fedlearn.privacy.keys import generate_identity, identity_key
from fedlearn.simulation.attacks import AttackPlan, byzantine_nodes
from fedlearn.simulation.inprocess import InProcessFleet
from fedlearn.simulation.nodes import NodeFactory
from fedlearn.simulation.pool import ProcessPoolFleet
from fedlearn.strategies.strategy import Strategy

Executor = Literal["inprocess", "pool"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationResult:
    params: ParamSet
    history: tuple[RoundRecord, ...]
    state: RunState


def node_ids(count: int) -> list[str]:
    width = max(3, len(str(count - 1)))
    return [f"node-{i:0{width}d}" for i in range(count)]


def make_fleet(
    ids: Sequence[str], factory: NodeFactory, *, executor: Executor, workers: int, blas_threads: int | None = 1
) -> Fleet:
    """Build the fleet for an executor name; the pool forks now, before any training."""
    if executor == "inprocess":
        return InProcessFleet(ids, factory, blas_threads=blas_threads)
    if executor == "pool":
        return ProcessPoolFleet(ids, factory, workers=workers, blas_threads=blas_threads)
    raise ConfigError(f"`executor` must be 'inprocess' or 'pool'; got {executor!r}")


def learner_nodes(
    learner: Learner, partitions: Sequence[Dataset], evaluation_data: Sequence[Dataset] | None = None
) -> tuple[list[str], NodeFactory]:
    """Node ids and a factory that binds node ``i`` to a trainer on partition ``i``.

    With ``evaluation_data``, node ``i`` evaluates on ``evaluation_data[i]``, rows it never trains on.
    """
    if evaluation_data is not None and len(evaluation_data) != len(partitions):
        raise ConfigError(
            f"`evaluation_data` must hold one dataset per partition ({len(partitions)}); got {len(evaluation_data)}"
        )
    ids = node_ids(len(partitions))
    index = {node: i for i, node in enumerate(ids)}
    spec = learner.init_params(0).spec()  # every node's learner builds the same shapes

    def factory(node_id: str) -> NodeApp:
        i = index[node_id]
        evaluator = learner.trainer(evaluation_data[i]) if evaluation_data is not None else None
        contract = DataContract(param_spec=spec, feature_names=partitions[i].feature_names)
        return NodeApp(node_id=node_id, trainer=learner.trainer(partitions[i]), evaluator=evaluator, contract=contract)

    return ids, factory


def secure_nodes(ids: Sequence[str], factory: NodeFactory) -> tuple[NodeFactory, dict[str, bytes]]:
    """Nodes built for a secure run, and the registry of their identity keys.

    Each simulated node gets a fresh Ed25519 identity key, made here, in the coordinator's
    process, before the pool forks, and mounts the secure-aggregation handlers; its plain fit is
    refused, as a node that requires secure aggregation would. A deployed node keeps its own key in
    a file, and the coordinator binds its public half at enrollment (``fedlearn.runtime.identity``).
    """
    identities = {node: generate_identity() for node in ids}
    registry = {node: identity_key(key) for node, key in identities.items()}

    def build(node_id: str) -> NodeApp:
        app = factory(node_id)
        if not isinstance(app, NodeApp):
            raise ConfigError(f"secure aggregation needs NodeApp nodes; the factory built {type(app).__name__}")
        handlers = {**app.handlers, **SecureAggregationNode(identities[node_id], registry).handlers()}
        return replace(app, handlers=handlers, require_secure_aggregation=True)

    return build, registry


def central_evaluator(
    learner: Learner, test_data: Dataset, config: Mapping[str, bool | int | float | str]
) -> Callable[[ParamSet], dict[str, float]]:
    """Evaluate the global model on held-out data at the coordinator."""
    trainer = learner.trainer(test_data)

    def evaluate(params: ParamSet) -> dict[str, float]:
        result = trainer.evaluate(params, config)
        return {"loss": float(result.loss), **{k: float(v) for k, v in result.metrics.items()}}

    return evaluate


def simulate(
    learner: Learner,
    partitions: Sequence[Dataset],
    strategy: Strategy,
    config: EngineConfig,
    *,
    test_data: Dataset | None = None,
    evaluation_data: Sequence[Dataset] | None = None,
    executor: Executor = "inprocess",
    workers: int = 2,
    blas_threads: int | None = 1,
    faults: FaultPlan | None = None,
    attack: AttackPlan | None = None,
    initial: RunState | ParamSet | None = None,
    checkpoint: Checkpoint | None = None,
    on_round: RoundCallback | None = None,
    tune_allocator: bool = False,
) -> SimulationResult:
    """Run ``config.rounds`` rounds of ``strategy`` over one node per partition.

    ``initial`` may be a saved :class:`RunState` (to resume) or starting parameters; by default
    the learner initialises them from ``config.seed``. ``test_data`` is evaluated centrally after
    every round; ``evaluation_data`` gives each node rows of its own, held out from its partition,
    for federated evaluation (without it nodes evaluate on the rows they train on, and say so).
    Nodes compute with ``blas_threads`` BLAS threads (see ``threads``) so that the result does not
    depend on the executor or the machine.

    ``tune_allocator`` keeps freed model-sized buffers in this process for reuse (see
    ``fedlearn.client.allocator``): faster in-process rounds, at the price of up to 256 MiB kept
    after the run, for the rest of the process's life. It is off by default because it changes
    the calling process, a notebook's for example; ``fedlearn simulate`` turns it on. The pool's
    workers always apply it, since they are processes of their own.

    ``attack`` makes some nodes Byzantine (see :mod:`fedlearn.simulation.attacks`); they attack
    under secure aggregation too, where no robust reducer can see their updates.

    When ``strategy`` holds a secure-aggregation piece, it is checked for the number of nodes up
    front, and every node is built by :func:`secure_nodes`: the coordinator sees only sums.
    """
    if not partitions:
        raise ConfigError("`partitions` must hold at least one dataset; got none")
    if tune_allocator:
        retain_freed_memory()
    ids, factory = learner_nodes(learner, partitions, evaluation_data)
    if attack is not None and attack.attackers:
        factory = byzantine_nodes(learner, partitions, ids, factory, attack, run_seed=config.seed)
    identity_keys: dict[str, bytes] = {}
    if strategy.secure_aggregation is not None:
        strategy.secure_aggregation.check(len(ids))
        factory, identity_keys = secure_nodes(ids, factory)
    fleet = make_fleet(ids, factory, executor=executor, workers=workers, blas_threads=blas_threads)
    if faults is not None and faults.active:
        fleet = FaultyFleet(fleet, faults)
    try:
        engine = Engine(
            fleet,
            strategy,
            config,
            central_evaluate=central_evaluator(learner, test_data, config.client_config) if test_data else None,
            checkpoint=checkpoint,
            on_round=on_round,
            identity_keys=identity_keys,
            dp_noise="seeded",  # a simulation's noise is reproducible from its seed; a deployment's comes from the OS
        )
        if isinstance(initial, RunState):
            state = initial
        else:
            state = engine.initial_state(initial if initial is not None else learner.init_params(config.seed))
        final = engine.run(state)
    finally:
        fleet.close()
    return SimulationResult(params=final.params, history=final.history, state=final)
