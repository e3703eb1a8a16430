"""Core types: named parameter sets, the wire codec, tasks and replies, validation, errors."""

from fedlearn.core.codec import decode, decode_with_metadata, encode
from fedlearn.core.errors import (
    CodecError,
    ConfigError,
    CoordinatorUnavailable,
    DeadlineExceeded,
    FedlearnError,
    FleetBusy,
    NotFoundError,
    PrivacyError,
    QuorumError,
    RunStopped,
    StoreError,
    TrainerError,
    ValidationError,
)
from fedlearn.core.messages import EVALUATE, FIT, Config, Reply, Scalar, Task
from fedlearn.core.params import ParamSet, Spec
from fedlearn.core.validation import Limits, validate_metrics, validate_num_examples, validate_params

__all__ = [
    "EVALUATE",
    "FIT",
    "CodecError",
    "Config",
    "ConfigError",
    "CoordinatorUnavailable",
    "DeadlineExceeded",
    "FedlearnError",
    "FleetBusy",
    "Limits",
    "NotFoundError",
    "ParamSet",
    "PrivacyError",
    "QuorumError",
    "Reply",
    "RunStopped",
    "Scalar",
    "Spec",
    "StoreError",
    "Task",
    "TrainerError",
    "ValidationError",
    "decode",
    "decode_with_metadata",
    "encode",
    "validate_metrics",
    "validate_num_examples",
    "validate_params",
]
