"""The round engine: it samples nodes, sends tasks, gathers replies under deadlines, aggregates
and checkpoints, without knowing which transport carries the tasks."""

from fedlearn.engine.engine import Engine, EngineConfig, RunState
from fedlearn.engine.faults import FaultPlan, FaultyFleet
from fedlearn.engine.fleet import Fleet
from fedlearn.engine.history import RoundRecord, history_from_json, history_to_csv, history_to_json
from fedlearn.engine.stage import Gather, StageReport, quorum_for

__all__ = [
    "Engine",
    "EngineConfig",
    "FaultPlan",
    "FaultyFleet",
    "Fleet",
    "Gather",
    "RoundRecord",
    "RunState",
    "StageReport",
    "history_from_json",
    "history_to_csv",
    "history_to_json",
    "quorum_for",
]
