"""fedlearn: federated learning and exact federated analytics over data that never moves.

The names here are the everyday API; each part's own package (``fedlearn.strategies``,
``fedlearn.engine``, ...) exports the rest.
"""

from fedlearn.core import ConfigError, FedlearnError, ParamSet, Reply, Task, decode, encode
from fedlearn.engine import Engine, EngineConfig, FaultPlan, RunState
from fedlearn.simulation import simulate
from fedlearn.strategies import Strategy, build_strategy

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Engine",
    "EngineConfig",
    "FaultPlan",
    "FedlearnError",
    "ParamSet",
    "Reply",
    "RunState",
    "Strategy",
    "Task",
    "__version__",
    "build_strategy",
    "decode",
    "encode",
    "simulate",
]
