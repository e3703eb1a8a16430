"""The Synthetic(alpha, beta) benchmark of Li et al. (2020), "Federated Optimization in
Heterogeneous Networks" (FedProx), section 5.1.

Each device has its own softmax-regression model and its own feature distribution; the paper
means ``alpha`` to control how much the local *models* differ and ``beta`` how much the local
*data* differ. The IID variant removes both differences. For device k:

- u_k ~ N(0, alpha²); W_k ~ N(u_k, 1) (features × classes), b_k ~ N(u_k, 1) (classes);
- B_k ~ N(0, beta²); v_k ~ N(B_k, 1) (features);
- x ~ N(v_k, Σ) with Σ diagonal, Σ_jj = j^-1.2 (j counted from 1);
- y = argmax softmax(W_kᵀx + b_k), which is the argmax of the logits.

As in the authors' generator, ``alpha`` and ``beta`` are standard deviations, and device sizes
are ``floor(LogNormal(4, 2)) + 50``, so a few devices hold most of the data. The IID variant
shares one W, b ~ N(0, 1) and one feature mean v = 0 across devices.

A property of the definition, kept here on purpose: u_k shifts every class's weights and bias
by the same amount, which cancels in the argmax. For a given seed the rows and labels therefore
do not depend on ``alpha`` at all; devices still differ through the N(0, 1) parts of W_k and
b_k (so Synthetic(0, 0) is not IID) and through ``beta``.

The generator is written from the paper's description. Its row-level device ids go into
``Dataset.groups``, so ``natural`` partitioning gives one node per device.
"""

from __future__ import annotations

import numpy as np

from fedlearn.core.checks import NON_NEGATIVE, check_int, check_real, check_seed
from fedlearn.core.errors import ConfigError
from fedlearn.data.dataset import Dataset

COVARIANCE_DECAY = 1.2
"""Σ_jj = j^-COVARIANCE_DECAY: later features carry less variance, as in the paper."""


def make_synthetic(
    *,
    seed: int,
    alpha: float | None = None,
    beta: float | None = None,
    iid: bool = False,
    num_devices: int = 30,
    n_features: int = 60,
    n_classes: int = 10,
    size_log_mean: float = 4.0,
    size_log_sigma: float = 2.0,
    min_device_rows: int = 50,
) -> Dataset:
    """Generate Synthetic(alpha, beta), or Synthetic-IID when ``iid`` is True.

    ``alpha`` and ``beta`` are required unless ``iid`` is set, and refused when it is, so a
    config never silently ignores them. Device sizes are ``floor(LogNormal(size_log_mean,
    size_log_sigma)) + min_device_rows``; set ``size_log_sigma`` to 0 for equal sizes.
    Rows are ordered by device; ``groups`` holds each row's device id (0 .. num_devices-1).
    """
    rng = check_seed(seed)
    if not isinstance(iid, bool):
        raise ConfigError(f"`iid` must be a bool; got {iid!r}")
    num_devices = check_int("num_devices", num_devices, low=1)
    n_features = check_int("n_features", n_features, low=1)
    n_classes = check_int("n_classes", n_classes, low=2)
    size_log_mean = check_real("size_log_mean", size_log_mean)
    size_log_sigma = check_real("size_log_sigma", size_log_sigma, NON_NEGATIVE)
    min_device_rows = check_int("min_device_rows", min_device_rows, low=1)
    if iid:
        for key, value in (("alpha", alpha), ("beta", beta)):
            if value is not None:
                raise ConfigError(f"`{key}` has no meaning for Synthetic-IID (iid=True); got {value}")
    elif alpha is None or beta is None:
        missing = "alpha" if alpha is None else "beta"
        raise ConfigError(f"`{missing}` is required for Synthetic(alpha, beta) unless iid=True; got None")
    else:
        alpha = check_real("alpha", alpha, NON_NEGATIVE)
        beta = check_real("beta", beta, NON_NEGATIVE)

    sizes = rng.lognormal(size_log_mean, size_log_sigma, num_devices).astype(np.int64) + min_device_rows
    if alpha is None or beta is None:  # Synthetic-IID: one model and one feature mean for all
        shared = (rng.normal(0.0, 1.0, (n_features, n_classes)), rng.normal(0.0, 1.0, n_classes), np.zeros(n_features))
        models = [shared] * num_devices
    else:
        model_means = rng.normal(0.0, alpha, num_devices)  # u_k
        data_means = rng.normal(0.0, beta, num_devices)  # B_k
        models = [
            (
                rng.normal(model_means[k], 1.0, (n_features, n_classes)),  # W_k
                rng.normal(model_means[k], 1.0, n_classes),  # b_k
                rng.normal(data_means[k], 1.0, n_features),  # v_k
            )
            for k in range(num_devices)
        ]

    std = np.arange(1, n_features + 1, dtype=np.float64) ** (-COVARIANCE_DECAY / 2)
    xs, ys = [], []
    for (w, b, v), size in zip(models, sizes, strict=True):
        x = v + rng.standard_normal((int(size), n_features)) * std
        xs.append(x)
        ys.append(np.argmax(x @ w + b, axis=1))

    name = "synthetic_iid" if iid else f"synthetic({alpha:g},{beta:g})"
    return Dataset(
        x=np.concatenate(xs).astype(np.float32),
        y=np.concatenate(ys).astype(np.int64),
        task="classification",
        n_classes=n_classes,
        feature_names=tuple(f"x{j}" for j in range(n_features)),
        name=name,
        groups=np.repeat(np.arange(num_devices, dtype=np.int64), sizes),
    )
