"""PyTorch modules as federated models (CPU only; torch is the optional ``torch`` extra).

The parameters are the module's ``state_dict()``: trainable weights and buffers such as batch-norm
statistics, each as a NumPy array of the tensor's dtype. Tensors and arrays share memory: a fit
copies the incoming read-only arrays once into fresh tensors, loads them with ``assign=True`` and
hands the trained tensors back as arrays without another copy. Because every fit assigns new
tensors, arrays returned by an earlier fit are never written to again.

Local training follows the shared config keys (see ``fedlearn.client.trainer``) with direct
index batches from the same schedule as the NumPy trainer. FedProx adds ``mu * (w - w_global)``
and SCAFFOLD adds ``c - c_i`` to each parameter's gradient before the optimizer step; buffers are
not trained, so their SCAFFOLD deltas are zero.

Threads: building a trainer sets torch's process-wide intra-op thread count to the learner's
``num_threads``, 1 by default. Small models gain nothing from intra-op parallelism, and when
simulated nodes share cores torch's worker threads fight: 20 FedAvg rounds of the digits MLP took
0.4 s with one thread and 10-16 s with two on a busy 2-core machine. One thread also keeps
results bit-identical across machines with different core counts. A large model on a dedicated
node should raise it; ``None`` leaves torch's setting alone.

Record-level DP: with ``dp_sgd = true`` in the fit config, or a learner built with ``dp_sgd``
settings (the node's own, which then apply whatever the coordinator asks), the fit runs DP-SGD
through Opacus (see ``fedlearn.client.dp_sgd``): Poisson batches, per-example clipping and noise.
Its reply then carries ``dp_sgd_epsilon`` and no training loss, because an unnoised mean loss over
the node's rows is not covered by the guarantee.

torch is imported only inside this module's functions, so ``import fedlearn`` never loads it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

from fedlearn.client.dp_sgd import (
    DP_SGD_OPTIONS,
    EPSILON_METRIC,
    NOISE_KINDS,
    NOISE_MULTIPLIER_METRIC,
    DpSgd,
    DpSgdPlan,
    NoiseKind,
    check_module,
    composed_epsilon,
    noise_source,
    plan_fit,
    poisson_batches,
    private_training,
)
from fedlearn.client.local_sgd import (
    CLIENT_CONTROL_KEY,
    FIT_OPTIONS,
    LocalConfig,
    batch_indices,
    scaffold_inputs,
    scaffold_update,
)
from fedlearn.client.trainer import EvalResult, FitResult, NodeState
from fedlearn.core.checks import (
    NON_NEGATIVE,
    POSITIVE,
    Constraint,
    Interval,
    Options,
    check,
    check_int,
    check_ints,
    check_real,
)
from fedlearn.core.errors import ConfigError, TrainerError
from fedlearn.core.messages import Config
from fedlearn.core.params import ParamSet, Spec
from fedlearn.data.dataset import Dataset
from fedlearn.privacy.ledger import Charge

if TYPE_CHECKING:
    import torch

Array = NDArray[Any]


class ModelFn(Protocol):
    """Builds a fresh module; called under a fixed torch seed by ``init_params``."""

    def __call__(self) -> torch.nn.Module: ...


class LossFn(Protocol):
    """``loss(outputs, targets)``: the mean loss over the batch, as a scalar tensor."""

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor, /) -> torch.Tensor: ...


_EVAL_CHUNK = 4096  # rows per forward pass when evaluating, to bound activation memory
_OPTIMIZERS = ("sgd", "adam")


def _shared_tensor(array: Array) -> torch.Tensor:
    """A tensor viewing a read-only array, for values that are only ever read (no copy)."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        return torch.from_numpy(array)


def _state_arrays(module: torch.nn.Module) -> dict[str, Array]:
    """The state_dict as NumPy arrays sharing the tensors' memory."""
    out = {}
    for name, tensor in module.state_dict().items():
        try:
            out[name] = tensor.detach().cpu().numpy()
        except TypeError as exc:  # e.g. bfloat16, which NumPy has no dtype for
            raise TrainerError(f"state_dict entry {name!r} has dtype {tensor.dtype}, which NumPy cannot hold") from exc
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class TorchLearner:
    """A ``torch.nn.Module`` built by ``model_fn``.

    ``loss_fn`` defaults to cross-entropy for classification data and MSE for regression; it
    must return the mean over the batch.

    ``dp_sgd`` makes every fit DP-SGD with these settings, the node's own (a fit config's DP-SGD
    keys are then ignored). ``dp_sgd_noise`` is where DP-SGD's noise and batch draws come from:
    ``"system"`` (the OS's CSPRNG, for deployment) or ``"seeded"`` (the fit's seed, for
    reproducible simulation only).
    """

    fit_options: ClassVar[Mapping[str, Constraint]] = MappingProxyType({**FIT_OPTIONS, **DP_SGD_OPTIONS})

    model_fn: ModelFn
    loss_fn: LossFn | None = None
    optimizer: str = "sgd"
    learning_rate: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0
    num_threads: int | None = 1
    dp_sgd: DpSgd | None = None
    dp_sgd_noise: NoiseKind = "system"

    def __post_init__(self) -> None:
        check("dp_sgd_noise", self.dp_sgd_noise, Options(NOISE_KINDS))
        if self.dp_sgd is not None and not isinstance(self.dp_sgd, DpSgd):
            raise ConfigError(f"`dp_sgd` must be DpSgd settings or None; got {self.dp_sgd!r}")
        if self.num_threads is not None:
            check_int("num_threads", self.num_threads, low=1)
        check("optimizer", self.optimizer, Options(tuple(_OPTIMIZERS)))
        check_real("learning_rate", self.learning_rate, POSITIVE)
        check_real("momentum", self.momentum, Interval(0, 1, closed="left"))
        check_real("weight_decay", self.weight_decay, NON_NEGATIVE)

    def init_params(self, seed: int) -> ParamSet:
        """Build the module under ``torch.manual_seed(seed)``, leaving the global RNG as it was."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self.model_fn()
        return ParamSet(_state_arrays(module))

    def trainer(self, data: Dataset) -> TorchTrainer:
        return TorchTrainer(data, self)


class TorchTrainer:
    """Local training of one module on one node's data. Not safe to share between threads."""

    __slots__ = ("_learner", "_loss_fn", "_module", "_spec", "_x", "_y")

    def __init__(self, data: Dataset, learner: TorchLearner) -> None:
        import torch

        if data.y is None:
            raise TrainerError(f"dataset {data.name!r} has no targets; supervised training needs y")
        self._learner = learner
        if learner.num_threads is not None:
            torch.set_num_threads(learner.num_threads)  # process-wide; see the module docstring
        with torch.random.fork_rng(devices=[]):  # its initial weights are always overwritten
            self._module = learner.model_fn()
        if learner.dp_sgd is not None:  # the node's own DP-SGD: refuse an untrainable model when it starts
            check_module(self._module)
        self._spec: Spec = ParamSet(_state_arrays(self._module)).spec()
        self._x = torch.from_numpy(np.ascontiguousarray(data.x, dtype=np.float32))
        if data.task == "classification":
            self._loss_fn: LossFn = learner.loss_fn or torch.nn.CrossEntropyLoss()
            self._y = torch.from_numpy(np.asarray(data.y, dtype=np.int64))
        else:  # one output column per row, so MSE-style losses do not broadcast
            self._loss_fn = learner.loss_fn or torch.nn.MSELoss()
            self._y = torch.from_numpy(np.asarray(data.y, dtype=np.float32).reshape(len(data.y), -1))

    def _load(self, params: ParamSet) -> None:
        import torch

        if params.spec() != self._spec:
            raise TrainerError(f"parameters {params.spec()} do not match the module's state_dict {self._spec}")
        tensors = {k: torch.from_numpy(np.array(v)) for k, v in params.items()}  # one writable copy
        self._module.load_state_dict(tensors, assign=True)

    def dp_sgd_plan(self, config: Config) -> DpSgdPlan | None:
        """What a fit with ``config`` will run and spend under DP-SGD; ``None`` when it runs plain SGD.

        A node's lifetime budget asks this (``plan.charge()``) before it lets the fit start.
        """
        settings = self._learner.dp_sgd or DpSgd.from_config(config)
        if settings is None:
            return None
        local = LocalConfig.from_config(config, learning_rate=self._learner.learning_rate)
        rows = len(self._x)
        return plan_fit(settings, batch_size=local.batch_size, rows=rows, steps=local.num_steps(rows))

    def dp_sgd_charge(self, config: Config) -> Charge | None:
        """The ledger charge of a fit with ``config``, or ``None`` when it would not run DP-SGD."""
        plan = self.dp_sgd_plan(config)
        return None if plan is None else plan.charge()

    def fit(self, params: ParamSet, config: Config, state: NodeState, extras: ParamSet | None = None) -> FitResult:
        import torch

        learner = self._learner
        local = LocalConfig.from_config(config, learning_rate=learner.learning_rate)
        if local.scaffold and (learner.optimizer != "sgd" or learner.momentum > 0):
            raise ConfigError(
                "fit config `scaffold` needs plain SGD (optimizer='sgd', momentum=0); "
                f"got optimizer={learner.optimizer!r}, momentum={learner.momentum}"
            )
        if learner.optimizer == "sgd":
            local.require_stable_proximal(learner.momentum)
        plan = self.dp_sgd_plan(config)
        self._load(params)
        module = self._module
        named = dict(module.named_parameters())
        proximal = {k: _shared_tensor(params[k]) for k in named} if local.proximal_mu > 0 else {}
        correction: dict[str, torch.Tensor] = {}
        if local.scaffold:
            c, c_i = scaffold_inputs(params, extras, state)
            correction = {k: torch.from_numpy(np.subtract(c[k], c_i[k])) for k in named}
        optimizer = self._optimizer(local.learning_rate)
        rng = local.rng()
        forward: Any = module  # under DP-SGD, Opacus's per-example gradient wrapper
        step: Any = optimizer  # under DP-SGD, Opacus's optimizer, whose pre_step makes p.grad private
        if plan is None:
            batches = batch_indices(len(self._x), local, rng)
        else:  # clip and noise in ``step``; apply with the plain optimizer
            source = noise_source(learner.dp_sgd_noise, rng)
            forward, step = private_training(module, optimizer, plan, source, secure=learner.dp_sgd_noise == "system")
            batches = poisson_batches(source, rows=len(self._x), rate=plan.rate, steps=plan.steps)
        module.train()
        total_loss = 0.0
        steps = 0
        try:
            with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
                # Opacus's per-example hooks warn that the inputs need no gradient; they never do here.
                warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
                torch.manual_seed(int(rng.integers(2**62)))  # dropout and friends, reproducibly
                for idx in batches:
                    rows = torch.from_numpy(idx)
                    step.zero_grad(set_to_none=True)
                    loss = self._loss_fn(forward(self._x[rows]), self._y[rows])
                    loss.backward()
                    if plan is not None:
                        step.pre_step()  # per-example clipping, noise, division by the expected batch size
                    with torch.no_grad():
                        for name, p in named.items():
                            if p.grad is None:
                                continue
                            if proximal:
                                p.grad.add_(p - proximal[name], alpha=local.proximal_mu)
                            if correction:
                                p.grad.add_(correction[name])
                    optimizer.step()
                    if plan is None:
                        total_loss += float(loss.detach())
                    steps += 1
        finally:
            if plan is not None:
                forward._close()  # the module is plain again for evaluation and the next fit
        trained = _state_arrays(module)
        result_extras = ParamSet()
        if local.scaffold:
            result_extras, state[CLIENT_CONTROL_KEY] = scaffold_update(
                params, trained, c, c_i, steps=steps, learning_rate=local.learning_rate, trained=frozenset(named)
            )
        if plan is None:
            metrics = {"loss": total_loss / steps}
        else:
            epsilon = composed_epsilon(state, plan.charge(), delta=plan.settings.delta)
            metrics = {EPSILON_METRIC: epsilon, NOISE_MULTIPLIER_METRIC: plan.noise_multiplier}
        return FitResult(params=ParamSet(trained), num_examples=len(self._x), metrics=metrics, extras=result_extras)

    def _optimizer(self, learning_rate: float) -> torch.optim.Optimizer:
        import torch

        learner = self._learner
        parameters = list(self._module.parameters())
        if learner.optimizer == "adam":
            return torch.optim.Adam(parameters, lr=learning_rate, weight_decay=learner.weight_decay)
        return torch.optim.SGD(
            parameters, lr=learning_rate, momentum=learner.momentum, weight_decay=learner.weight_decay
        )

    def evaluate(self, params: ParamSet, config: Config) -> EvalResult:
        import torch

        n = len(self._x)
        if n == 0:
            raise TrainerError("this node has no evaluation examples")
        self._load(params)
        module = self._module
        module.eval()
        loss_sum = 0.0
        correct = 0
        classification = self._y.dtype == torch.int64
        with torch.no_grad():
            for start in range(0, n, _EVAL_CHUNK):
                xb, yb = self._x[start : start + _EVAL_CHUNK], self._y[start : start + _EVAL_CHUNK]
                out = module(xb)
                loss_sum += float(self._loss_fn(out, yb)) * len(xb)  # losses are means over the chunk
                if classification:
                    correct += int((out.argmax(dim=1) == yb).sum())
        metrics: Mapping[str, float] = {"accuracy": correct / n} if classification else {}
        return EvalResult(loss=loss_sum / n, num_examples=n, metrics=metrics)


@dataclass(frozen=True, slots=True)
class _MLPFactory:
    """Builds the MLP; a module-level class rather than a closure so learners can be pickled."""

    n_features: int
    n_classes: int
    hidden: tuple[int, ...]

    def __call__(self) -> torch.nn.Module:
        from torch import nn

        layers: list[nn.Module] = []
        width = self.n_features
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, self.n_classes))
        return nn.Sequential(*layers)


def torch_mlp(
    n_features: int,
    n_classes: int,
    hidden: tuple[int, ...] = (64,),
    *,
    optimizer: str = "sgd",
    learning_rate: float = 0.2,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    num_threads: int | None = 1,
    dp_sgd: DpSgd | Mapping[str, Any] | None = None,
    dp_sgd_noise: NoiseKind = "system",
) -> TorchLearner:
    """A ReLU multi-layer perceptron classifier trained with cross-entropy.

    ``dp_sgd`` (settings, or a table of them from a node's ``learner_options``) makes every fit
    DP-SGD whatever the fit config says; see :class:`TorchLearner`.
    """
    check_int("n_features", n_features, low=1)
    check_int("n_classes", n_classes, low=2)
    hidden = check_ints("hidden", hidden, low=1)
    return TorchLearner(
        model_fn=_MLPFactory(n_features, n_classes, hidden),
        optimizer=optimizer,
        learning_rate=learning_rate,
        momentum=momentum,
        weight_decay=weight_decay,
        num_threads=num_threads,
        dp_sgd=DpSgd.coerce(dp_sgd),
        dp_sgd_noise=dp_sgd_noise,
    )
