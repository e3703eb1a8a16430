"""Built-in datasets load offline with the right shapes, and the split is stratified."""

from __future__ import annotations

import socket
import subprocess
import sys

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.data import DATASETS, Dataset, load_dataset, train_test_split

SKLEARN_SHAPES = {
    "breast_cancer": (569, 30, 2),
    "digits": (1797, 64, 10),
    "iris": (150, 4, 3),
    "wine": (178, 13, 3),
}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a built-in dataset tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_datasets_lists_every_builtin() -> None:
    assert DATASETS == ("breast_cancer", "diabetes", "digits", "iris", "synthetic", "wine")


@pytest.mark.parametrize("name", sorted(SKLEARN_SHAPES))
def test_classification_dataset_loads_offline_with_expected_shape(name: str, no_network: None) -> None:
    rows, features, classes = SKLEARN_SHAPES[name]

    dataset = load_dataset(name)

    assert dataset.x.shape == (rows, features)
    assert dataset.x.dtype == np.float32
    assert dataset.y is not None and dataset.y.dtype == np.int64
    assert dataset.task == "classification"
    assert dataset.n_classes == classes
    assert set(np.unique(dataset.y).tolist()) == set(range(classes))
    assert len(dataset.feature_names) == features
    assert dataset.name == name


def test_diabetes_loads_offline_as_float32_regression(no_network: None) -> None:
    dataset = load_dataset("diabetes")

    assert dataset.x.shape == (442, 10)
    assert dataset.task == "regression"
    assert dataset.y is not None and dataset.y.dtype == np.float32
    assert dataset.x.dtype == np.float32


def test_standardize_gives_zero_mean_unit_variance_columns() -> None:
    x = load_dataset("wine").x.astype(np.float64)

    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=0), 1.0, atol=1e-4)


def test_standardize_leaves_constant_digit_pixels_at_zero() -> None:
    x = load_dataset("digits").x

    assert np.isfinite(x).all()
    assert np.all(x[:, 0] == 0.0)  # the top-left pixel is blank in every image


def test_standardize_false_keeps_raw_values() -> None:
    x = load_dataset("iris", standardize=False).x

    assert x.min() >= 0.0 and x.max() <= 8.0


def test_load_dataset_synthetic_passes_options_and_sets_groups() -> None:
    dataset = load_dataset("synthetic", alpha=0.5, beta=0.5, num_devices=5, seed=0)

    assert dataset.groups is not None
    assert len(np.unique(dataset.groups)) == 5


def test_load_dataset_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown dataset 'mnist'; valid datasets are \['breast_cancer'"):
        load_dataset("mnist")


def test_load_dataset_unknown_option_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) scale for dataset 'iris'; valid options: standardize"):
        load_dataset("iris", scale=True)


def test_load_dataset_synthetic_without_seed_names_it() -> None:
    with pytest.raises(ConfigError, match=r"dataset 'synthetic' needs option\(s\) seed"):
        load_dataset("synthetic", alpha=1.0, beta=1.0)


def test_load_dataset_non_bool_standardize_names_it() -> None:
    with pytest.raises(ConfigError, match="`standardize` must be true or false; got 'yes'"):
        load_dataset("iris", standardize="yes")


def test_import_fedlearn_data_does_not_load_sklearn() -> None:
    code = "import sys, fedlearn.data; assert 'sklearn' not in sys.modules, 'sklearn imported eagerly'"

    subprocess.run([sys.executable, "-c", code], check=True)


def test_train_test_split_is_stratified_and_disjoint() -> None:
    dataset = load_dataset("iris")

    train, test = train_test_split(dataset, 0.2, seed=0)

    assert (len(train), len(test)) == (120, 30)
    assert np.bincount(test.y).tolist() == [10, 10, 10]
    assert np.bincount(train.y).tolist() == [40, 40, 40]
    rows = {tuple(r) for r in train.x} | {tuple(r) for r in test.x}
    assert len(rows) == len({tuple(r) for r in dataset.x})


def test_train_test_split_same_seed_same_split_other_seed_other_split() -> None:
    dataset = load_dataset("wine")

    first, again, other = (train_test_split(dataset, 0.3, seed=s)[1] for s in (1, 1, 2))

    assert np.array_equal(first.x, again.x)
    assert not np.array_equal(first.x, other.x)


def test_train_test_split_regression_splits_by_fraction() -> None:
    train, test = train_test_split(load_dataset("diabetes"), 0.25, seed=0)

    assert (len(train), len(test)) == (331, 111)


def test_train_test_split_keeps_groups_and_metadata() -> None:
    dataset = Dataset(x=np.zeros((10, 1)), y=np.arange(10) % 2, n_classes=2, name="toy", groups=np.arange(10))

    train, test = train_test_split(dataset, 0.5, seed=0)

    assert sorted(train.groups.tolist() + test.groups.tolist()) == list(range(10))
    assert (test.n_classes, test.name) == (2, "toy")


@pytest.mark.parametrize(
    ("fraction", "message"),
    [
        (0.0, r"`test_fraction` must be in \(0, inf\); got 0.0"),
        (1.0, r"`test_fraction` must be in \(0, 1\); got 1.0"),
        (0.001, r"`test_fraction` = 0.001 leaves an empty train or test set for 150 rows"),
    ],
)
def test_train_test_split_bad_fraction_names_it(fraction: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        train_test_split(load_dataset("iris"), fraction, seed=0)
