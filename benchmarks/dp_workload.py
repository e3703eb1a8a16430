"""The privacy-utility workload that fedlearn and Flower both run, in plain NumPy and ``dp-accounting``.

Why a module of its own: issue 12 compares fedlearn's DP with Flower's DP wrappers "on the same
workload", and the two run in different virtual environments (Flower is not a fedlearn
dependency). So the data, the split, the model, the local training and the accounting live here,
importing nothing but NumPy and ``dp-accounting``, and both ``flower_dp.py`` (in Flower's venv) and
``dp_privacy_utility.py`` (in fedlearn's) import it. Same seed, same rows on the same nodes.

The data follows Synthetic-IID of Li et al. (2020), as fedlearn's ``make_synthetic(iid=True)``
does: one softmax model ``W, b ~ N(0, 1)`` (60 features x 10 classes), features
``x ~ N(0, diag(j^-1.2))``, labels ``argmax(x W + b)``. Every node holds the same number of rows
(``ROWS_PER_NODE``): Flower's fixed-clipping wrapper adds noise scaled for an *unweighted* mean
(``sigma * C / m``) but aggregates with FedAvg's example-weighted mean, so only equal node sizes
make its noise match its sensitivity; equal sizes keep the comparison about DP, not about that.
The central test set is fresh rows from the same distribution.

Accounting is Google's RDP accountant, called directly and identically for both sides, with the
sampling each side really runs:

- Poisson sampling with rate ``q`` (fedlearn's DP sampler): add-or-remove-one neighbours, and the
  clipped sum's L2 sensitivity is ``C``, so the event's noise multiplier is ``z``.
- Fixed-size sampling of ``m`` of ``n`` without replacement (what Flower's ``sample_nodes`` does):
  ``dp-accounting`` accounts for it only under replace-one neighbours (Wang et al. 2019), where
  replacing one node's clipped update by another moves the sum by up to ``2C``. Noise ``z * C`` on
  the sum is then a Gaussian mechanism with multiplier ``z / 2`` relative to its sensitivity, and
  that is what is accounted. (Passing ``z`` itself would understate ε; ``epsilon`` reports that
  figure too, labelled, so the difference is visible.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import dp_accounting
import numpy as np
from dp_accounting import rdp
from dp_accounting.mechanism_calibration import LowerEndpointAndGuess, calibrate_dp_mechanism
from numpy.typing import NDArray

NODES = 1000
ROWS_PER_NODE = 50
TEST_ROWS = 10_000
FEATURES = 60
CLASSES = 10
COVARIANCE_DECAY = 1.2
DELTA = 1e-5
INIT_SCALE = 0.01

Array = NDArray[np.float32]
Sampling = Literal["poisson", "fixed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Training:
    """What every node does with the model it receives, and how rounds sample nodes."""

    rounds: int = 100
    sample: int = 100
    """Nodes per round: exactly this many under fixed-size sampling, this many expected under Poisson."""
    learning_rate: float = 1.0
    local_epochs: int = 1
    batch_size: int = 10
    clip: float = 1.0

    @property
    def rate(self) -> float:
        return self.sample / NODES


@dataclass(frozen=True, slots=True, kw_only=True)
class Data:
    train_x: list[Array]
    train_y: list[NDArray[np.int64]]
    test_x: Array
    test_y: NDArray[np.int64]


def make_data(seed: int) -> Data:
    """``NODES`` partitions of ``ROWS_PER_NODE`` rows each and a central test set."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((FEATURES, CLASSES))
    bias = rng.standard_normal(CLASSES)
    std = np.arange(1, FEATURES + 1, dtype=np.float64) ** (-COVARIANCE_DECAY / 2)

    def rows(count: int) -> tuple[Array, NDArray[np.int64]]:
        x = rng.standard_normal((count, FEATURES)) * std
        return x.astype(np.float32), np.argmax(x @ weight + bias, axis=1).astype(np.int64)

    x, y = rows(NODES * ROWS_PER_NODE)
    test_x, test_y = rows(TEST_ROWS)
    return Data(
        train_x=list(x.reshape(NODES, ROWS_PER_NODE, FEATURES)),
        train_y=list(y.reshape(NODES, ROWS_PER_NODE)),
        test_x=test_x,
        test_y=test_y,
    )


def init_params(seed: int) -> list[Array]:
    """``[weight, bias]`` as fedlearn's ``softmax_regression`` initialises them (N(0, 0.01²), zeros)."""
    weight = np.random.default_rng(seed).standard_normal((FEATURES, CLASSES), dtype=np.float32)
    weight *= np.float32(INIT_SCALE)
    return [weight, np.zeros(CLASSES, dtype=np.float32)]


def local_sgd(params: list[Array], x: Array, y: NDArray[np.int64], training: Training, seed: int) -> list[Array]:
    """Minibatch SGD on the mean cross-entropy, a fresh permutation per epoch; never mutates ``params``."""
    weight, bias = (np.array(p) for p in params)
    rng = np.random.default_rng(seed)
    for _ in range(training.local_epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), training.batch_size):
            idx = order[start : start + training.batch_size]
            xb, yb = x[idx], y[idx]
            z = xb @ weight + bias
            z -= z.max(axis=1, keepdims=True)
            probs = np.exp(z)
            probs /= probs.sum(axis=1, keepdims=True)
            probs[np.arange(len(yb)), yb] -= 1
            probs /= len(yb)
            weight -= np.float32(training.learning_rate) * (xb.T @ probs)
            bias -= np.float32(training.learning_rate) * probs.sum(axis=0)
    return [weight, bias]


def accuracy(params: list[Array], x: Array, y: NDArray[np.int64]) -> float:
    return float(np.mean(np.argmax(x @ params[0] + params[1], axis=1) == y))


def _accountant(sampling: Sampling) -> rdp.RdpAccountant:
    if sampling == "fixed":
        return rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    return rdp.RdpAccountant()


def _run_event(noise_multiplier: float, sampling: Sampling, training: Training) -> dp_accounting.DpEvent:
    if sampling == "fixed":
        # Replace-one sensitivity of a sum of updates clipped to C is 2C (see the module docstring).
        gaussian = dp_accounting.GaussianDpEvent(noise_multiplier / 2)
        round_event = dp_accounting.SampledWithoutReplacementDpEvent(NODES, training.sample, gaussian)
    else:
        round_event = dp_accounting.PoissonSampledDpEvent(
            training.rate, dp_accounting.GaussianDpEvent(noise_multiplier)
        )
    return dp_accounting.SelfComposedDpEvent(round_event, training.rounds)


def epsilon(noise_multiplier: float, sampling: Sampling, training: Training) -> float:
    """ε at ``DELTA`` after ``training.rounds`` rounds; infinite without noise."""
    if noise_multiplier == 0:
        return math.inf
    accountant = _accountant(sampling)
    accountant.compose(_run_event(noise_multiplier, sampling, training))
    return float(accountant.get_epsilon(DELTA))


def epsilon_sensitivity_c(noise_multiplier: float, training: Training) -> float:
    """Fixed-size sampling accounted as if the replace-one sensitivity were ``C``: an understatement."""
    return epsilon(2 * noise_multiplier, "fixed", training)


def calibrate(target_epsilon: float, sampling: Sampling, training: Training) -> float:
    """The noise multiplier ``z`` (noise ``z * C`` on the clipped sum) that spends ``target_epsilon``.

    The search starts above 0 because ``dp-accounting``'s sampling-without-replacement bound divides
    by the noise multiplier (its default search, from 0, fails with a ZeroDivisionError).
    """
    if math.isinf(target_epsilon):
        return 0.0
    bracket = LowerEndpointAndGuess(lower_endpoint=0.05, initial_guess=1.0)
    return float(
        calibrate_dp_mechanism(
            lambda: _accountant(sampling),
            lambda z: _run_event(z, sampling, training),
            target_epsilon,
            DELTA,
            bracket,
            tol=1e-4,
        )
    )
