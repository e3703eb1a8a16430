"""Virtual nodes on one machine behind the same ``Fleet`` interface a deployment uses.

``simulate`` runs a whole federation; ``InProcessFleet`` (sequential, the reference) and
``ProcessPoolFleet`` (forked workers, parameters shared through shared memory) are the executors.
The same seed gives bit-identical parameters whichever executor or worker count runs it.
"""

from fedlearn.simulation.from_config import SimulationPlan, plan_simulation
from fedlearn.simulation.inprocess import InProcessFleet
from fedlearn.simulation.nodes import NodeFactory, TaskHandler
from fedlearn.simulation.pool import ProcessPoolFleet
from fedlearn.simulation.run import SimulationResult, make_fleet, node_ids, simulate

__all__ = [
    "InProcessFleet",
    "NodeFactory",
    "ProcessPoolFleet",
    "SimulationPlan",
    "SimulationResult",
    "TaskHandler",
    "make_fleet",
    "node_ids",
    "plan_simulation",
    "simulate",
]
