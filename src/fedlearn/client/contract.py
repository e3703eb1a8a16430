"""What a node's data can take part in: the model shape its learner builds for it, and its columns.

A run declares its model's shape (``[model] n_features``, ``n_classes``) and may declare the
feature names it expects, in order (``[model] features``). A node checks both against its own
data before it trains or evaluates, and refuses with one line that names the difference: a model
for 65 features sent to a node with 64, or a node whose CSV names its columns differently (or in
another order) than the run assumes. Without the check the first fails deep in NumPy with a long
message, and the second trains silently on the wrong columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from fedlearn.core.checks import name_mismatch
from fedlearn.core.messages import EVALUATE, FEATURES_KEY, FIT, Task
from fedlearn.core.params import Spec


@dataclass(frozen=True, slots=True, kw_only=True)
class DataContract:
    """The parameter spec a node's learner builds for its data, and the data's feature names."""

    param_spec: Spec
    feature_names: tuple[str, ...] = ()

    def refusal(self, task: Task) -> str | None:
        """Why this node cannot take ``task``, in one line, or None when it can."""
        if task.kind not in (FIT, EVALUATE):
            return None
        return self._model_refusal(task.params.spec()) or self._features_refusal(task.config.get(FEATURES_KEY))

    def _model_refusal(self, spec: Spec) -> str | None:
        if spec == self.param_spec:
            return None
        mismatch = name_mismatch(spec, self.param_spec)
        if mismatch:
            return f"the run's model does not fit this node's data: its parameter names differ ({mismatch})"
        for name, (shape, dtype) in spec.items():
            want_shape, want_dtype = self.param_spec[name]
            if tuple(shape) != tuple(want_shape) or dtype != want_dtype:
                return (
                    f"the run's model does not fit this node's data: parameter {name!r} is {tuple(shape)} "
                    f"{np.dtype(dtype)}, this node's data needs {tuple(want_shape)} {np.dtype(want_dtype)} "
                    "(check [model] n_features and n_classes)"
                )
        return None

    def _features_refusal(self, declared_json: object) -> str | None:
        if declared_json is None:
            return None
        try:
            declared = json.loads(str(declared_json))
        except json.JSONDecodeError:
            return f"the task's `{FEATURES_KEY}` is not a JSON list of names: {str(declared_json)[:80]!r}"
        if not isinstance(declared, list) or not all(isinstance(name, str) for name in declared):
            return f"the task's `{FEATURES_KEY}` must be a JSON list of names; got {str(declared_json)[:80]!r}"
        if not self.feature_names:
            return "the run declares its features, but this node's data has no column names to check them against"
        if tuple(declared) == self.feature_names:
            return None
        mismatch = name_mismatch(self.feature_names, declared)
        if mismatch:
            return f"this node's columns are not the run's features: {mismatch}"
        first = next(i for i, (a, b) in enumerate(zip(declared, self.feature_names, strict=True)) if a != b)
        return (
            f"this node's columns are in another order than the run's features: position {first} is "
            f"{self.feature_names[first]!r} here and {declared[first]!r} in the run"
        )
