"""How a run's data is split: here, the trusted sample a simulated FLTrust coordinator trains on."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.data.datasets import load_dataset, train_test_split
from fedlearn.data.split import split_over_nodes, trusted_sample


def rows(data) -> set[bytes]:
    return {row.tobytes() for row in data.x}


def test_trusted_sample_draws_the_given_number_of_training_rows_and_no_test_rows() -> None:
    train, test = train_test_split(load_dataset("iris"), 0.2, 3)

    sample = trusted_sample("iris", examples=25, test_fraction=0.2, seed=3)

    assert len(sample) == 25
    assert rows(sample) <= rows(train)
    assert not rows(sample) & (rows(test) - rows(train))


def test_trusted_sample_is_the_same_for_the_same_seed_and_another_for_another() -> None:
    first = trusted_sample("iris", examples=10, test_fraction=0.2, seed=1)

    again = trusted_sample("iris", examples=10, test_fraction=0.2, seed=1)
    other = trusted_sample("iris", examples=10, test_fraction=0.2, seed=2)

    np.testing.assert_array_equal(again.x, first.x)
    assert not np.array_equal(other.x, first.x)


def test_trusted_sample_leaves_the_nodes_parts_as_they_were() -> None:
    before, _ = split_over_nodes("iris", nodes=3, test_fraction=0.2, partitioner="iid", seed=4)

    trusted_sample("iris", examples=10, test_fraction=0.2, seed=4)
    after, _ = split_over_nodes("iris", nodes=3, test_fraction=0.2, partitioner="iid", seed=4)

    assert all(np.array_equal(a.x, b.x) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize(
    ("examples", "message"),
    [(0, "`trusted_examples` must be an integer >= 1; got 0"), (121, "must be at most the 120 training rows")],
)
def test_trusted_sample_of_an_impossible_size_raises_config_error(examples: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        trusted_sample("iris", examples=examples, test_fraction=0.2, seed=0)
