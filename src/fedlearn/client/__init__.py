"""What runs on a node: the Trainer protocol, its adapters and the app that answers tasks.

A ``Learner`` says what is learned (initial parameters, and a ``Trainer`` for any node's data);
a ``Trainer`` fits and evaluates on one node's rows; ``NodeApp`` turns tasks into replies for the
simulator and the networked agent alike. Adapters: plain NumPy functions (``NumpyLearner``,
``softmax_regression``, ``mlp_classifier``, ``linear_regression``), scikit-learn (``SGDLearner``, ``MLPLearner``) and
PyTorch (``TorchLearner``, ``torch_mlp``). scikit-learn and torch are imported only when one of
their learners is used, so importing this package stays cheap and torch stays optional.
``trusted_model`` trains a learner on the coordinator's trusted data, for FLTrust.
``NodePrivacy`` is a node's differential-privacy policy and ``NodeBudget`` its lifetime budget;
``system_noise`` and ``seeded_noise`` make the noise a deployed or a simulated node adds.
"""

from fedlearn.client.budget import NodeBudget, PrivacyBudget
from fedlearn.client.learners import BUILTIN_LEARNERS, DatasetMeta, build_learner, builtin_learner, check_fit_config
from fedlearn.client.local_sgd import LocalConfig, LossAndGrad
from fedlearn.client.node_app import Handler, NodeApp
from fedlearn.client.node_privacy import NodePrivacy, NoiseFactory, seeded_noise, system_noise
from fedlearn.client.numpy_trainer import (
    MetricsFn,
    NumpyLearner,
    NumpyTrainer,
    linear_regression,
    mlp_classifier,
    softmax_regression,
)
from fedlearn.client.sklearn_trainer import MLPLearner, SGDLearner, SklearnTrainer
from fedlearn.client.torch_trainer import TorchLearner, TorchTrainer, torch_mlp
from fedlearn.client.trainer import EvalResult, FitResult, Learner, NodeState, Trainer
from fedlearn.client.trusted import TrustedModel, trusted_model

__all__ = [
    "BUILTIN_LEARNERS",
    "DatasetMeta",
    "EvalResult",
    "FitResult",
    "Handler",
    "Learner",
    "LocalConfig",
    "LossAndGrad",
    "MLPLearner",
    "MetricsFn",
    "NodeApp",
    "NodeBudget",
    "NodePrivacy",
    "NodeState",
    "NoiseFactory",
    "NumpyLearner",
    "NumpyTrainer",
    "PrivacyBudget",
    "SGDLearner",
    "SklearnTrainer",
    "TorchLearner",
    "TorchTrainer",
    "Trainer",
    "TrustedModel",
    "build_learner",
    "builtin_learner",
    "check_fit_config",
    "linear_regression",
    "mlp_classifier",
    "seeded_noise",
    "softmax_regression",
    "system_noise",
    "torch_mlp",
    "trusted_model",
]
