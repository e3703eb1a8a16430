"""Registered model versions: their format, lineage and aliases; loading, serving and scoring them."""

from fedlearn.registry.local import Registry, simulation_package
from fedlearn.registry.package import ModelPackage
from fedlearn.registry.predictor import Predictor
from fedlearn.registry.predictors import RegisteredModel, load_package
from fedlearn.registry.scoring import ScoringJob, ScoringReport, score

__all__ = [
    "ModelPackage",
    "Predictor",
    "RegisteredModel",
    "Registry",
    "ScoringJob",
    "ScoringReport",
    "load_package",
    "score",
    "simulation_package",
]
