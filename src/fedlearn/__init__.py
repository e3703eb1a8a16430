"""fedlearn: federated learning and exact federated analytics over data that never moves."""

from fedlearn.core import ConfigError, FedlearnError, ParamSet, Reply, Task

__version__ = "0.1.0"

__all__ = ["ConfigError", "FedlearnError", "ParamSet", "Reply", "Task", "__version__"]
