"""The ``Dataset`` container's optional per-row ``groups``."""

from __future__ import annotations

import numpy as np
import pytest

from fedlearn.core.errors import ConfigError
from fedlearn.data import Dataset


def test_subset_keeps_groups_aligned_with_rows() -> None:
    dataset = Dataset(x=np.arange(10.0).reshape(5, 2), groups=np.array([7, 8, 9, 7, 8]))

    part = dataset.subset(np.array([1, 3]))

    assert part.groups is not None and part.groups.tolist() == [8, 7]


def test_subset_without_groups_stays_without_groups() -> None:
    assert Dataset(x=np.zeros((3, 1))).subset(np.array([0])).groups is None


def test_groups_of_wrong_length_raise_config_error() -> None:
    with pytest.raises(ConfigError, match=r"groups must be 1-D with one entry per row \(3\); got shape \(2,\)"):
        Dataset(x=np.zeros((3, 1)), groups=np.zeros(2))
