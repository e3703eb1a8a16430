"""Partitioners: coverage, determinism, the heterogeneity each one promises, and input checks."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.data import Dataset, dirichlet, iid, natural, partition, quantity_skew, shards

BALANCED_LABELS = np.repeat(np.arange(10), 200)  # 10 classes × 200 rows


def _assert_exact_cover(parts: list[np.ndarray], n_rows: int) -> None:
    joined = np.concatenate(parts)
    assert len(joined) == n_rows
    assert np.array_equal(np.sort(joined), np.arange(n_rows))
    for part in parts:
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0)


def _mean_label_entropy(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    entropies = []
    for part in parts:
        p = np.bincount(labels[part], minlength=10) / len(part)
        p = p[p > 0]
        entropies.append(float(-(p * np.log(p)).sum()))
    return float(np.mean(entropies))


def _dataset(n_rows: int = 100, groups: np.ndarray | None = None) -> Dataset:
    return Dataset(
        x=np.arange(n_rows * 2, dtype=np.float32).reshape(n_rows, 2),
        y=np.arange(n_rows) % 4,
        n_classes=4,
        feature_names=("a", "site"),
        name="toy",
        groups=groups,
    )


def test_iid_sizes_differ_by_at_most_one() -> None:
    parts = iid(103, 10, seed=0)

    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    _assert_exact_cover(parts, 103)


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: iid(500, 7, seed),
        lambda seed: dirichlet(BALANCED_LABELS, 7, 0.5, seed),
        lambda seed: shards(BALANCED_LABELS, 7, 2, seed),
        lambda seed: quantity_skew(500, 7, 1.0, seed),
    ],
    ids=["iid", "dirichlet", "shards", "quantity_skew"],
)
def test_partitioner_same_seed_same_parts_other_seed_other_parts(make) -> None:
    first, again, other = make(1), make(1), make(2)

    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_dirichlet_small_alpha_concentrates_labels() -> None:
    skewed = dirichlet(BALANCED_LABELS, 10, alpha=0.1, seed=0)
    uniform = dirichlet(BALANCED_LABELS, 10, alpha=100.0, seed=0)

    assert _mean_label_entropy(BALANCED_LABELS, skewed) < 0.6 * _mean_label_entropy(BALANCED_LABELS, uniform)
    assert _mean_label_entropy(BALANCED_LABELS, uniform) > 0.95 * np.log(10)


def test_dirichlet_every_node_reaches_min_size() -> None:
    parts = dirichlet(BALANCED_LABELS, 20, alpha=0.3, seed=3, min_size=20)

    assert min(len(p) for p in parts) >= 20
    _assert_exact_cover(parts, len(BALANCED_LABELS))


def test_dirichlet_accepts_string_labels() -> None:
    labels = np.array(["cat", "dog", "eel"] * 30)

    parts = dirichlet(labels, 3, alpha=1.0, seed=0)

    _assert_exact_cover(parts, 90)


def test_dirichlet_unreachable_min_size_raises_config_error_naming_it() -> None:
    labels = np.repeat(np.arange(10), 10)  # 100 rows, 10 per class

    with pytest.raises(ConfigError, match="min_size"):
        dirichlet(labels, 10, alpha=0.001, seed=0, min_size=10)


def test_shards_balanced_classes_give_at_most_k_classes_per_node() -> None:
    parts = shards(BALANCED_LABELS, 10, classes_per_node=2, seed=0)

    assert max(len(np.unique(BALANCED_LABELS[p])) for p in parts) <= 2
    _assert_exact_cover(parts, len(BALANCED_LABELS))


def test_shards_unbalanced_classes_give_about_k_classes_per_node() -> None:
    labels = np.random.default_rng(0).integers(0, 10, size=3000)

    parts = shards(labels, 30, classes_per_node=2, seed=0)

    assert np.mean([len(np.unique(labels[p])) for p in parts]) <= 3.0


def test_quantity_skew_sizes_vary_and_sum_to_rows() -> None:
    parts = quantity_skew(10_000, 20, sigma=1.5, seed=0, min_size=5)

    sizes = np.array([len(p) for p in parts])
    assert sizes.sum() == 10_000
    assert sizes.min() >= 5
    assert sizes.max() > 4 * sizes.min()
    _assert_exact_cover(parts, 10_000)


def test_quantity_skew_zero_sigma_gives_equal_sizes() -> None:
    sizes = [len(p) for p in quantity_skew(100, 4, sigma=0.0, seed=0)]

    assert sizes == [25, 25, 25, 25]


def test_natural_gives_one_node_per_group_in_sorted_value_order() -> None:
    groups = np.array(["b", "a", "c", "a", "b", "b"])

    parts = natural(groups)

    assert [p.tolist() for p in parts] == [[1, 3], [0, 4, 5], [2]]


def test_partition_dispatches_by_name_with_options() -> None:
    labels = np.arange(100) % 4

    got = partition("dirichlet", _dataset(), 5, 7, alpha=0.5, min_size=2)

    want = dirichlet(labels, 5, 0.5, 7, min_size=2)
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


def test_partition_natural_uses_dataset_groups() -> None:
    groups = np.arange(100) % 3

    parts = partition("natural", _dataset(groups=groups), 3, 0)

    assert [set(groups[p].tolist()) for p in parts] == [{0}, {1}, {2}]


def test_partition_natural_by_feature_column() -> None:
    dataset = Dataset(x=np.stack([np.zeros(100), np.arange(100) % 2], axis=1), feature_names=("a", "site"))

    parts = partition("natural", dataset, 2, 0, column="site")

    assert [len(p) for p in parts] == [50, 50]


def test_partition_natural_wrong_num_nodes_names_it() -> None:
    with pytest.raises(ConfigError, match=r"`num_nodes` must equal the number of distinct groups \(3\); got 4"):
        partition("natural", _dataset(groups=np.arange(100) % 3), 4, 0)


def test_partition_natural_without_groups_raises() -> None:
    with pytest.raises(ConfigError, match="groups"):
        partition("natural", _dataset(), 3, 0)


def test_partition_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown partitioner 'label_skew'.*'dirichlet'"):
        partition("label_skew", _dataset(), 5, 0)


def test_partition_unknown_option_lists_valid_ones() -> None:
    expected = r"unknown option\(s\) beta for partitioner 'dirichlet'; valid options: alpha, min_size"
    with pytest.raises(ConfigError, match=expected):
        partition("dirichlet", _dataset(), 5, 0, alpha=1.0, beta=2.0)


def test_partition_missing_required_option_names_it() -> None:
    with pytest.raises(ConfigError, match=r"partitioner 'shards' needs option\(s\) classes_per_node"):
        partition("shards", _dataset(), 5, 0)


def test_partition_label_skew_on_regression_data_raises() -> None:
    dataset = Dataset(x=np.zeros((10, 1)), y=np.zeros(10), task="regression")

    with pytest.raises(ConfigError, match="needs class labels"):
        partition("dirichlet", dataset, 2, 0, alpha=1.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: iid(10, 0, 0), "`num_nodes` must be an integer >= 1; got 0"),
        (lambda: iid(10, 11, 0), r"`num_nodes` must be <= the number of rows \(10\); got 11"),
        (lambda: iid(10, 2.5, 0), "`num_nodes` must be an integer >= 1; got 2.5"),
        (lambda: iid(10, 2, None), "`seed` must be an integer >= 0; got None"),
        (lambda: iid(10, 2, -1), "`seed` must be an integer >= 0; got -1"),
        (lambda: dirichlet(BALANCED_LABELS, 5, -1, 0), r"`alpha` must be in \(0, inf\); got -1"),
        (lambda: dirichlet(BALANCED_LABELS, 5, float("nan"), 0), r"`alpha` must be in \(0, inf\); got nan"),
        (lambda: dirichlet(BALANCED_LABELS, 5, 1.0, 0, min_size=0), "`min_size` must be an integer >= 1; got 0"),
        (lambda: dirichlet(np.zeros((3, 3)), 2, 1.0, 0), r"`labels` must be a non-empty 1-D array; got shape \(3, 3\)"),
        (
            lambda: dirichlet(np.arange(10), 5, 1.0, 0, min_size=3),
            r"`min_size` \* `num_nodes` must be <= .* got 3 \* 5",
        ),
        (lambda: shards(BALANCED_LABELS, 5, 0, 0), "`classes_per_node` must be an integer >= 1; got 0"),
        (lambda: shards(BALANCED_LABELS, 5, 11, 0), r"`classes_per_node` must be <= the number of classes \(10\)"),
        (lambda: shards(np.arange(10) % 2, 6, 2, 0), r"`num_nodes` \* `classes_per_node` must be <= .* got 6 \* 2"),
        (lambda: quantity_skew(100, 5, -0.5, 0), r"`sigma` must be in \[0, inf\); got -0.5"),
        (lambda: natural([]), r"`groups` must be a non-empty 1-D array; got shape \(0,\)"),
    ],
)
def test_bad_partitioner_input_raises_config_error_naming_parameter(call, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()
