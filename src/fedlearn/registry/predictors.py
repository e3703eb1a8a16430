"""A package brought back to life: the native model it describes, behind the ``Predictor`` protocol.

:func:`load_package` turns a :class:`~fedlearn.registry.package.ModelPackage` into a
:class:`RegisteredModel`, whose ``estimator`` is the model in its own library, so a user can
take it anywhere that library goes:

=================  ==========================================================================
``numpy.softmax``  ``sklearn.linear_model.LogisticRegression`` (for 2 classes, the difference
                   of the two softmax rows: the same probabilities)
``numpy.linear``   ``sklearn.linear_model.LinearRegression``
``numpy.mlp``      ``sklearn.neural_network.MLPClassifier`` (ReLU; for 2 classes one logistic
                   output unit from the difference of the two, as scikit-learn builds it)
``sklearn.sgd``    ``SGDClassifier`` / ``SGDRegressor``, built as the learner evaluates it
``sklearn.mlp``    ``MLPClassifier`` holding ``coefs_`` and ``intercepts_``
``torch.mlp``      the ``torch.nn.Module`` (``nn.Sequential``) in eval mode; torch loads lazily
analytics          the fitted ``Federated*`` estimator, its learned arrays set back
``pkg.mod:fn``     a user's learner, only with ``trust_code=True``: the package names code,
                   and importing it runs it. The learner must offer ``predictor(params)``
                   returning an object with ``predict`` (and ``predict_proba`` to classify)
=================  ==========================================================================

Each predicts what the trained parameters predict (tested against each learner's own evaluation).
``predict`` returns class indices (``classes[i]`` is the label) or regression values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedlearn.client.learners import build_learner, builtin_learner
from fedlearn.client.sklearn_trainer import SGDLearner
from fedlearn.core.errors import ConfigError, SchemaError
from fedlearn.core.params import ParamSet
from fedlearn.data.dataset import TaskType
from fedlearn.data.schema import InputSchema
from fedlearn.registry.package import ANALYTICS_MODELS, ModelPackage

_ANALYTICS_CLASSES = {
    "linear": "FederatedLinearRegression",
    "ridge": "FederatedRidge",
    "logistic": "FederatedLogisticRegression",
    "gnb": "FederatedGaussianNB",
    "lda": "FederatedLinearDiscriminantAnalysis",
    "qda": "FederatedQuadraticDiscriminantAnalysis",
}


@dataclass(frozen=True, slots=True)
class _Meta:
    """What a learner is shaped by, as ``builtin_learner`` reads it."""

    n_features: int
    n_classes: int
    task: TaskType


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisteredModel:
    """A loaded model version: a :class:`~fedlearn.registry.predictor.Predictor` over ``estimator``."""

    package: ModelPackage
    estimator: Any

    @property
    def schema(self) -> InputSchema:
        return self.package.schema

    @property
    def version(self) -> str:
        return self.package.ref

    @property
    def task(self) -> TaskType:
        return self.package.task

    @property
    def classes(self) -> tuple[str | int | float, ...]:
        """Class labels in index order: ``classes[predict(x)[i]]`` is row i's label."""
        return self.package.classes

    @property
    def lineage(self) -> Mapping[str, Any]:
        return self.package.lineage

    def features(self, rows: Any) -> NDArray[np.float32]:
        """Encoded features from a matrix (rows × n_features), a DataFrame or a mapping of columns."""
        if isinstance(rows, Mapping):
            return self.schema.encode(rows)
        columns = getattr(rows, "columns", None)
        if columns is not None and not isinstance(rows, np.ndarray):  # a pandas or polars DataFrame
            present = {str(name) for name in columns}
            return self.schema.encode({name: np.asarray(rows[name]) for name in self.schema.names if name in present})
        array = np.asarray(rows)
        if array.ndim != 2 or array.shape[1] != self.schema.n_features or array.dtype.kind not in "biuf":
            raise SchemaError(
                f"features must be a numeric matrix of rows × {self.schema.n_features} "
                f"({', '.join(self.schema.feature_names)}); got {array.dtype} {list(array.shape)}"
            )
        if not np.isfinite(array).all():
            raise SchemaError("features hold a missing or infinite value")
        return array.astype(np.float32, copy=False)

    def predict(self, features: Any) -> NDArray[Any]:
        """Class indices or regression values, one per row."""
        x = self.features(features)
        if self.package.model == "torch.mlp":
            return self._torch_scores(x).argmax(axis=1)
        out = np.asarray(self.estimator.predict(x))
        if self.task == "classification" and self.package.kind == "analytics":
            return np.searchsorted(self.estimator.classes_, out)
        return out

    def predict_proba(self, features: Any) -> NDArray[np.float64]:
        """Class probabilities, rows × classes in index order; ``ConfigError`` for a regression model."""
        if self.task != "classification":
            raise ConfigError(f"model {self.version} is a regression model; it has no class probabilities")
        x = self.features(features)
        if self.package.model == "torch.mlp":
            scores = self._torch_scores(x).astype(np.float64)
            scores -= scores.max(axis=1, keepdims=True)
            probs = np.exp(scores)
            return probs / probs.sum(axis=1, keepdims=True)
        return np.asarray(self.estimator.predict_proba(x), dtype=np.float64)

    def _torch_scores(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        import torch

        with torch.no_grad():
            return self.estimator(torch.from_numpy(np.ascontiguousarray(x))).numpy()


def load_package(package: ModelPackage, *, trust_code: bool = False) -> RegisteredModel:
    """The model ``package`` describes, ready to predict.

    ``trust_code`` allows a user learner (``pkg.mod:fn``) to be imported; without it such a
    package is refused, because its file, not its reader, would choose the code that runs.
    """
    if package.kind == "analytics":
        estimator = _analytics_estimator(package)
    elif package.trusted_code:
        if not trust_code:
            raise ConfigError(
                f"model {package.ref} needs user code {package.model!r} to be imported; pass trust_code=True "
                "only if you trust the file's author"
            )
        estimator = _user_predictor(package)
    else:
        estimator = _learner_estimator(package)
    return RegisteredModel(package=package, estimator=estimator)


def analytics_package(
    estimator: Any,
    *,
    name: str,
    schema: InputSchema,
    version: int = 1,
    lineage: Mapping[str, Any] | None = None,
) -> ModelPackage:
    """A package of a fitted analytics estimator (a ``Federated*`` regression or classifier)."""
    from fedlearn.analytics.catalog import learned_arrays

    model = next((key for key, cls in _ANALYTICS_CLASSES.items() if type(estimator).__name__ == cls), None)
    if model is None:
        raise ConfigError(
            f"only the analytics models that predict can be registered ({sorted(ANALYTICS_MODELS)}); "
            f"got {type(estimator).__name__}"
        )
    arrays = learned_arrays(estimator)
    if "n_features_in_" not in arrays:
        raise ConfigError(f"the {type(estimator).__name__} is not fitted; fit it before registering it")
    classes: list[Any] = []
    if ANALYTICS_MODELS[model] == "classification":
        classes = np.asarray(estimator.classes_).tolist()
        arrays["classes_"] = np.arange(len(classes))  # labels such as "churned" travel in `classes`, not as arrays
    options = {
        key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in estimator.get_params().items()
    }
    return ModelPackage(
        name=name,
        version=version,
        kind="analytics",
        model=model,
        options=options,
        task=ANALYTICS_MODELS[model],
        classes=tuple(classes),
        schema=schema,
        params=ParamSet(arrays),
        lineage=lineage or {},
    )


def _meta(package: ModelPackage) -> _Meta:
    return _Meta(n_features=package.n_features, n_classes=package.n_classes, task=package.task)


def _learner_estimator(package: ModelPackage) -> Any:
    params = package.params
    learner = builtin_learner(package.model, _meta(package), **package.options)  # checks every option
    if package.model == "torch.mlp":
        return _torch_module(learner, params)
    if package.model == "sklearn.sgd":
        assert isinstance(learner, SGDLearner)
        empty = np.zeros((0, package.n_features))
        return learner.estimator(params, x=empty, y=empty, learning_rate=learner.learning_rate, seed=0)
    if package.model == "numpy.linear":
        from sklearn.linear_model import LinearRegression

        regression = LinearRegression()
        regression.coef_ = params["weight"].astype(np.float64)
        regression.intercept_ = float(params["bias"][0])
        regression.n_features_in_ = package.n_features
        return regression
    if package.model == "numpy.softmax":
        return _logistic(params["weight"].T, params["bias"], package.n_classes)
    layers = len(params) // 2
    if package.model == "numpy.mlp":
        coefs = [params[f"weight_{i}"] for i in range(layers)]
        intercepts = [params[f"bias_{i}"] for i in range(layers)]
        return _mlp(coefs, intercepts, activation="relu", n_classes=package.n_classes)
    coefs = [params[f"coefs_{i}"] for i in range(layers)]  # sklearn.mlp
    intercepts = [params[f"intercepts_{i}"] for i in range(layers)]
    return _mlp(
        coefs, intercepts, activation=str(package.options.get("activation", "relu")), n_classes=package.n_classes
    )


def _logistic(coef: NDArray[Any], intercept: NDArray[Any], n_classes: int) -> Any:
    """A LogisticRegression whose probabilities are the softmax of ``x @ coef.T + intercept``."""
    from sklearn.linear_model import LogisticRegression

    coef, intercept = coef.astype(np.float64), intercept.astype(np.float64)
    if n_classes == 2:  # scikit-learn's binary model is one row: softmax([a, b])[1] == sigmoid(b - a)
        coef, intercept = (coef[1] - coef[0])[None, :], intercept[1:] - intercept[:1]
    model = LogisticRegression()
    model.coef_, model.intercept_ = coef, intercept
    model.classes_ = np.arange(n_classes)
    model.n_features_in_ = coef.shape[1]
    return model


def _mlp(coefs: list[NDArray[Any]], intercepts: list[NDArray[Any]], *, activation: str, n_classes: int) -> Any:
    """An MLPClassifier holding these layers; a 2-unit softmax output becomes scikit-learn's 1 logistic unit."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import LabelBinarizer

    coefs = [np.array(c) for c in coefs]  # writable copies in the trained dtype: float32 stays float32, as trained
    intercepts = [np.array(b) for b in intercepts]
    if n_classes == 2 and coefs[-1].shape[1] == 2:
        coefs[-1] = coefs[-1][:, 1:] - coefs[-1][:, :1]
        intercepts[-1] = intercepts[-1][1:] - intercepts[-1][:1]
    model = MLPClassifier(hidden_layer_sizes=tuple(c.shape[1] for c in coefs[:-1]), activation=activation)
    model.coefs_, model.intercepts_ = coefs, intercepts
    model.n_layers_ = len(coefs) + 1
    model.n_outputs_ = coefs[-1].shape[1]
    model.out_activation_ = "logistic" if n_classes == 2 else "softmax"
    model.classes_ = np.arange(n_classes)
    model._label_binarizer = LabelBinarizer().fit(model.classes_)
    model.n_features_in_ = coefs[0].shape[0]
    return model


def _torch_module(learner: Any, params: ParamSet) -> Any:
    import torch

    module = learner.model_fn()
    module.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in params.items()})
    return module.eval()


def _user_predictor(package: ModelPackage) -> Any:
    learner = build_learner(package.model, _meta(package), **package.options)
    make = getattr(learner, "predictor", None)
    if not callable(make):
        raise ConfigError(f"learner {package.model!r} has no predictor(params) method, so it cannot predict")
    predictor = make(package.params)
    needed = ("predict", "predict_proba") if package.task == "classification" else ("predict",)
    missing = [method for method in needed if not callable(getattr(predictor, method, None))]
    if missing:
        raise ConfigError(f"learner {package.model!r}: its predictor lacks {missing}")
    return predictor


def _analytics_estimator(package: ModelPackage) -> Any:
    from fedlearn import analytics

    cls = getattr(analytics, _ANALYTICS_CLASSES[package.model])
    try:
        estimator = cls(**package.options)
    except TypeError as exc:
        raise ConfigError(f"analytics model {package.model!r}: invalid options {dict(package.options)}: {exc}") from exc
    for name, value in package.params.items():
        setattr(estimator, name, value.item() if value.ndim == 0 and name != "n_features_in_" else np.array(value))
    estimator.n_features_in_ = package.n_features
    try:  # a package whose arrays do not fit together fails here, once, rather than on every request
        estimator.predict(np.zeros((1, package.n_features)))
    except (ValueError, TypeError, IndexError, AttributeError, KeyError) as exc:
        raise ConfigError(
            f"analytics model {package.ref}: its arrays do not make a working {cls.__name__}: {exc}"
        ) from exc
    return estimator
