"""The public names are a promise: changing them must be a deliberate edit of this file."""

from __future__ import annotations

import subprocess
import sys

import fedlearn
import fedlearn.engine
import fedlearn.simulation


def test_top_level_api_is_pinned() -> None:
    assert sorted(fedlearn.__all__) == [
        "ConfigError", "Engine", "EngineConfig", "FaultPlan", "FedlearnError", "ParamSet", "Registry", "Reply",
        "RunState", "ScoringJob", "Strategy", "Task", "__version__", "build_strategy", "builtin_learner", "decode",
        "encode", "load_model", "score", "serving", "simulate",
    ]  # fmt: skip


def test_engine_api_is_pinned() -> None:
    assert sorted(fedlearn.engine.__all__) == [
        "Engine", "EngineConfig", "FaultPlan", "FaultyFleet", "Fleet", "Gather", "RoundRecord", "RunState",
        "StageReport", "history_from_json", "history_to_csv", "history_to_json", "quorum_for",
    ]  # fmt: skip


def test_simulation_api_is_pinned() -> None:
    assert sorted(fedlearn.simulation.__all__) == [
        "InProcessFleet", "NodeFactory", "ProcessPoolFleet", "SimulationPlan", "SimulationResult", "TaskHandler",
        "make_fleet", "node_ids", "plan_simulation", "simulate",
    ]  # fmt: skip


def test_import_stays_light() -> None:
    heavy = "('sklearn', 'torch', 'matplotlib', 'ray')"
    code = f"import sys, fedlearn; print(sorted(m for m in {heavy} if m in sys.modules))"

    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert loaded.strip() == "[]"


def test_runtime_api_is_pinned() -> None:
    import fedlearn.runtime

    assert sorted(fedlearn.runtime.__all__) == [
        "ClientTLS", "Coordinator", "GrpcFleet", "NodeAgent", "ServerTLS", "TransferStats", "load_client_tls",
        "load_server_tls", "serve",
    ]  # fmt: skip


def test_lazy_top_level_names_resolve_to_their_home_modules() -> None:
    from fedlearn.registry import Registry, ScoringJob, score
    from fedlearn.web.model_server import serving

    assert (fedlearn.Registry, fedlearn.ScoringJob, fedlearn.score, fedlearn.serving) == (
        Registry, ScoringJob, score, serving,
    )  # fmt: skip
