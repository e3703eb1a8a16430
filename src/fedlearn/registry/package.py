"""A registered model version as one self-describing file: safetensors arrays plus JSON metadata.

A package must be readable anywhere, years later, by someone who knows nothing but the file: a
laptop scoring a CSV, a serving container, an MLflow model. So it is one safetensors file (the
wire codec's own format, :mod:`fedlearn.core.codec`) and holds no pickle and no code.

Layout::

    8 bytes       little-endian length of the header
    header        JSON: one entry per tensor (dtype, shape, offsets) and "__metadata__", whose one
                  key "fedlearn" holds a JSON object of strings; the package uses its key
                  "fedlearn.model", a JSON document:
                    format          "fedlearn.model"
                    format_version  1
                    name, version   "churn", 3
                    kind            "learner" (federated training) or "analytics" (exact fit)
                    model           built-in learner ("numpy.softmax", ...), a user learner
                                    ("pkg.mod:fn"), or analytics model ("logistic", ...)
                    options         the model's constructor options (JSON)
                    task            "classification" or "regression"
                    classes         class labels in index order ([] for regression)
                    schema          the input columns (InputSchema.to_json)
                    lineage         where the model came from (see LINEAGE_FIELDS)
                    created         Unix time in seconds
    data          the parameters: a learner's global params by their training names, or an
                  analytics estimator's learned arrays (``coef_``, ``classes_``, ...)

Reading treats the file as hostile (:meth:`ModelPackage.from_bytes`): a size limit before parsing,
every field's type and range checked, and a built-in learner's arrays checked against the names,
shapes and dtypes that learner trains, computed from the options without allocating them. Reading
never imports anything the file names; whether a user learner's code may be imported is decided
when the package is loaded (:func:`fedlearn.registry.predictors.load_package`, ``trust_code``).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

import numpy as np

from fedlearn.client.learners import BUILTIN_LEARNERS
from fedlearn.client.sklearn_trainer import MLPLearner, SGDLearner
from fedlearn.core.checks import check_int, check_ints, check_name, name_mismatch
from fedlearn.core.codec import decode_with_metadata, encode
from fedlearn.core.errors import CodecError, ConfigError
from fedlearn.core.params import ParamSet, Spec
from fedlearn.data.dataset import TaskType
from fedlearn.data.schema import InputSchema

FORMAT = "fedlearn.model"
FORMAT_VERSION = 1
METADATA_KEY = "fedlearn.model"
DEFAULT_MAX_PACKAGE_BYTES = 2**32
"""Largest package read by default: 4 GiB, far past any model the built-in learners train."""
MAX_DESCRIPTION_CHARS = 16 * 2**20
"""The JSON description is names, options and lineage; megabytes of it mean a hostile file."""
MAX_COLUMNS = 100_000
"""Input columns a package may declare; checked before any column is built."""

Kind = Literal["learner", "analytics"]
KINDS: tuple[str, ...] = get_args(Kind)
ANALYTICS_MODELS: dict[str, TaskType] = {
    "linear": "regression",
    "ridge": "regression",
    "logistic": "classification",
    "gnb": "classification",
    "lda": "classification",
    "qda": "classification",
}
"""Analytics models that predict, and their task; PCA, covariance and describe do not predict."""
LINEAGE_FIELDS: dict[str, tuple[type, ...]] = {
    "run_id": (str,),
    "round": (int,),
    "config": (dict,),
    "strategy": (str, dict),
    "nodes": (list, dict),
    "privacy": (dict,),
    "metrics": (dict,),
}
"""The lineage fields the registry fills in and their JSON types; others are kept as given."""

_USER_LEARNER = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_LEARNER_TASK: dict[str, TaskType | None] = {
    "numpy.softmax": "classification",
    "numpy.linear": "regression",
    "numpy.mlp": "classification",
    "sklearn.sgd": None,
    "sklearn.mlp": "classification",
    "torch.mlp": "classification",
}
_LAST_TIME = 32_503_680_000  # 3000-01-01: a later `created` is a corrupt or hostile file
_DESCRIPTION_KEYS = frozenset(
    {"format", "format_version", "name", "version", "kind", "model", "options", "task", "classes", "schema"}
    | {"lineage", "created"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelPackage:
    """One model version: what it is, what it takes, what it learned and where it came from."""

    name: str
    version: int
    kind: Kind
    model: str
    options: Mapping[str, Any] = field(default_factory=dict)
    task: TaskType
    classes: tuple[str | int | float, ...] = ()
    schema: InputSchema
    params: ParamSet
    lineage: Mapping[str, Any] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        check_name("model name", self.name)
        check_int("version", self.version, low=1)
        if self.kind not in KINDS:
            raise ConfigError(f"`kind` must be one of {list(KINDS)}; got {self.kind!r}")
        if self.format_version != FORMAT_VERSION:
            raise ConfigError(f"`format_version` must be {FORMAT_VERSION}; got {self.format_version!r}")
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"`model` must be a learner or analytics model name; got {self.model!r}")
        if (
            not isinstance(self.created, int | float)
            or isinstance(self.created, bool)
            or not 0 <= self.created < _LAST_TIME
        ):
            raise ConfigError(f"`created` must be a Unix time in seconds; got {self.created!r}")
        if not isinstance(self.schema, InputSchema):
            raise ConfigError(f"`schema` must be an InputSchema; got {type(self.schema).__name__}")
        if not isinstance(self.params, ParamSet):
            object.__setattr__(self, "params", ParamSet(self.params))
        object.__setattr__(self, "options", _frozen_json("options", self.options))
        object.__setattr__(self, "lineage", _frozen_json("lineage", self.lineage))
        object.__setattr__(self, "classes", _classes(self.classes))
        _check_lineage(self.lineage)
        self._check_model()

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_features(self) -> int:
        return self.schema.n_features

    @property
    def ref(self) -> str:
        """``NAME/VERSION``: how a prediction names the model that made it."""
        return f"{self.name}/{self.version}"

    @property
    def trusted_code(self) -> bool:
        """Whether loading needs a user's module imported (a ``pkg.mod:fn`` learner)."""
        return self.kind == "learner" and ":" in self.model

    def description(self) -> dict[str, Any]:
        """The JSON description stored in the file's metadata (everything but the arrays)."""
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "kind": self.kind,
            "model": self.model,
            "options": dict(self.options),
            "task": self.task,
            "classes": list(self.classes),
            "schema": self.schema.to_json(),
            "lineage": dict(self.lineage),
            "created": self.created,
        }

    def to_bytes(self) -> bytes:
        return encode(self.params, {METADATA_KEY: json.dumps(self.description(), sort_keys=True)})

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, *, max_bytes: int = DEFAULT_MAX_PACKAGE_BYTES
    ) -> ModelPackage:
        """Parse and check a package; any fault is one ``CodecError`` or ``ConfigError`` line."""
        params, metadata = decode_with_metadata(data, max_bytes=max_bytes)
        text = metadata.get(METADATA_KEY)
        if text is None:
            raise CodecError(f"not a fedlearn model package: the safetensors metadata has no {METADATA_KEY!r} entry")
        return cls.from_json(text, params)

    @classmethod
    def from_json(cls, text: str, params: ParamSet) -> ModelPackage:
        """A package from its description as JSON text (bounded in size before it is parsed) and its arrays."""
        if len(text) > MAX_DESCRIPTION_CHARS:
            raise CodecError(f"package description is {len(text)} characters; the limit is {MAX_DESCRIPTION_CHARS}")
        try:
            description = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise CodecError(f"package description is not valid JSON: {exc}") from exc
        return cls.from_description(description, params)

    @classmethod
    def from_description(cls, description: object, params: ParamSet) -> ModelPackage:
        """A package from its JSON description and arrays, every field checked."""
        if not isinstance(description, dict):
            raise CodecError("package description must be a JSON object")
        if description.get("format") != FORMAT:
            raise CodecError(f"package `format` must be {FORMAT!r}; got {description.get('format')!r}")
        if description.get("format_version") != FORMAT_VERSION:
            raise CodecError(
                f"package `format_version` {description.get('format_version')!r} is not supported; "
                f"this fedlearn reads version {FORMAT_VERSION}"
            )
        found = name_mismatch(description, _DESCRIPTION_KEYS)
        if found:
            raise CodecError(f"package description: missing {list(found.missing)}, unexpected {list(found.unexpected)}")
        options, lineage, classes = description["options"], description["lineage"], description["classes"]
        schema = description["schema"]
        if isinstance(schema, list) and len(schema) > MAX_COLUMNS:
            raise CodecError(f"package declares {len(schema)} input columns; the limit is {MAX_COLUMNS}")
        for key, value, kind in (("options", options, dict), ("lineage", lineage, dict), ("classes", classes, list)):
            if not isinstance(value, kind):
                raise ConfigError(f"package `{key}` must be a JSON {kind.__name__}; got {type(value).__name__}")
        return cls(
            name=description["name"],
            version=description["version"],
            kind=description["kind"],
            model=description["model"],
            options=options,
            task=description["task"],
            classes=tuple(classes),
            schema=InputSchema.from_json(schema),
            params=params,
            lineage=lineage,
            created=description["created"],
        )

    def write(self, path: str | Path) -> Path:
        """Write the package to ``path`` (whole or not at all: through a temporary file and a rename)."""
        target = Path(path)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(self.to_bytes())
        partial.replace(target)
        return target

    @classmethod
    def read(cls, path: str | Path, *, max_bytes: int = DEFAULT_MAX_PACKAGE_BYTES) -> ModelPackage:
        target = Path(path)
        try:
            size = target.stat().st_size
        except OSError as exc:
            raise ConfigError(f"cannot read model package {str(target)!r}: {exc.strerror}") from exc
        if size > max_bytes:
            raise CodecError(f"model package {str(target)!r} is {size} bytes; the limit is {max_bytes}")
        return cls.from_bytes(target.read_bytes(), max_bytes=max_bytes)

    def _check_model(self) -> None:
        if self.task not in ("classification", "regression"):
            raise ConfigError(f"`task` must be classification or regression; got {self.task!r}")
        if self.task == "classification" and self.n_classes < 2:
            raise ConfigError(f"a classifier needs at least 2 `classes`; got {list(self.classes)}")
        if self.task == "regression" and self.classes:
            raise ConfigError(f"a regression model takes no `classes`; got {list(self.classes)}")
        for array_name, array in self.params.items():
            if array.dtype.kind not in "biuf":
                raise ConfigError(f"package array {array_name!r} has dtype {array.dtype}; expected a number type")
        if self.kind == "analytics":
            self._check_analytics()
        elif self.model in BUILTIN_LEARNERS:
            self._check_learner()
        elif not isinstance(self.model, str) or not _USER_LEARNER.fullmatch(self.model):
            raise ConfigError(
                f"`model` must be a built-in learner {list(BUILTIN_LEARNERS)} or 'package.module:function'; "
                f"got {self.model!r}"
            )

    def _check_learner(self) -> None:
        wanted = _LEARNER_TASK[self.model]
        if wanted is not None and self.task != wanted:
            raise ConfigError(f"learner {self.model!r} is a {wanted} model; the package says {self.task}")
        expected = learner_spec(self.model, self.options, n_features=self.n_features, n_classes=self.n_classes,
                                task=self.task)  # fmt: skip
        if self.params.spec() != expected:
            raise ConfigError(
                f"package arrays {_spec_text(self.params.spec())} do not match learner {self.model!r} with "
                f"{self.n_features} features and {self.n_classes} classes, which trains {_spec_text(expected)}"
            )

    def _check_analytics(self) -> None:
        if self.model not in ANALYTICS_MODELS:
            raise ConfigError(f"analytics model must be one of {sorted(ANALYTICS_MODELS)}; got {self.model!r}")
        if self.task != ANALYTICS_MODELS[self.model]:
            raise ConfigError(f"analytics model {self.model!r} is {ANALYTICS_MODELS[self.model]}; got {self.task}")
        bad = [name for name in self.params if not (name.isidentifier() and name.endswith("_") and name[0] != "_")]
        if bad:
            raise ConfigError(f"analytics arrays must be learned attributes such as 'coef_'; got {bad}")
        seen = self.params.get("n_features_in_")
        if seen is None or seen.shape != () or int(seen) != self.n_features:
            raise ConfigError(
                f"analytics array `n_features_in_` must be {self.n_features}, the schema's feature count; got "
                f"{None if seen is None else seen.tolist()}"
            )


def learner_spec(model: str, options: Mapping[str, Any], *, n_features: int, n_classes: int, task: TaskType) -> Spec:
    """The arrays built-in learner ``model`` trains, computed from its options without building any."""
    hidden_default = (32,) if model == "numpy.mlp" else (64,)
    hidden = check_ints("hidden", options.get("hidden", hidden_default), low=1)
    if model == "numpy.softmax":
        return {"weight": ((n_features, n_classes), "<f4"), "bias": ((n_classes,), "<f4")}
    if model == "numpy.linear":
        return {"weight": ((n_features,), "<f4"), "bias": ((1,), "<f4")}
    units = (n_features, *hidden, n_classes)
    if model == "numpy.mlp":
        return {
            name: spec
            for i, (a, b) in enumerate(itertools.pairwise(units))
            for name, spec in ((f"weight_{i}", ((a, b), "<f4")), (f"bias_{i}", ((b,), "<f4")))
        }
    if model == "torch.mlp":  # nn.Sequential of Linear and ReLU: the Linear layers sit at even indices
        return {
            name: spec
            for i, (a, b) in enumerate(itertools.pairwise(units))
            for name, spec in ((f"{2 * i}.weight", ((b, a), "<f4")), (f"{2 * i}.bias", ((b,), "<f4")))
        }
    try:
        if model == "sklearn.sgd":
            return SGDLearner(
                n_features=n_features, n_classes=n_classes, task=task, **_only(options, SGDLearner)
            ).spec()
        return MLPLearner(n_features=n_features, n_classes=n_classes, **_only(options, MLPLearner)).spec()
    except TypeError as exc:
        raise ConfigError(f"learner {model!r}: invalid option value: {exc}") from exc


def _only(options: Mapping[str, Any], learner: type) -> dict[str, Any]:
    """The options that shape the arrays; training-only ones (learning_rate) are checked when loaded."""
    shaping = {"loss", "hidden", "activation", "alpha"} & {f.name for f in fields(learner)}
    return {key: value for key, value in options.items() if key in shaping}


def _spec_text(spec: Spec) -> str:
    return "{" + ", ".join(f"{name}: {dtype}{list(shape)}" for name, (shape, dtype) in sorted(spec.items())) + "}"


def _classes(classes: object) -> tuple[str | int | float, ...]:
    if not isinstance(classes, list | tuple):
        raise ConfigError(f"`classes` must be a list of labels; got {type(classes).__name__}")
    out: list[str | int | float] = []
    for given in classes:
        label = given.item() if isinstance(given, np.generic) else given
        if isinstance(label, bool) or not isinstance(label, str | int | float):
            raise ConfigError(f"`classes` labels must be strings or numbers; got {label!r}")
        out.append(label)
    if len(set(out)) != len(out):
        raise ConfigError(f"`classes` labels must be distinct; got {out}")
    return tuple(out)


def _frozen_json(what: str, value: object) -> Mapping[str, Any]:
    """A read-only copy of a JSON object: it must survive the file, so it must be JSON now."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"`{what}` must be a mapping; got {type(value).__name__}")
    try:
        copy = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"`{what}` must hold only JSON values (finite numbers, text, lists, objects): {exc}") from exc
    return MappingProxyType(copy)


def _check_lineage(lineage: Mapping[str, Any]) -> None:
    for key, types in LINEAGE_FIELDS.items():
        value = lineage.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            wanted = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"lineage `{key}` must be {wanted}; got {value!r}")
