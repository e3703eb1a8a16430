"""Property: every partitioner splits the rows into disjoint, sorted parts that cover them all."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlearn.data import dirichlet, iid, natural, quantity_skew, shards

FAST = settings(max_examples=40, deadline=None)


def _assert_exact_cover(parts: list[np.ndarray], n_rows: int, num_nodes: int) -> None:
    assert len(parts) == num_nodes
    assert all(len(p) > 0 and np.all(np.diff(p) > 0) for p in parts)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n_rows))


@st.composite
def _problem(draw: st.DrawFn) -> tuple[np.ndarray, int, int]:
    num_nodes = draw(st.integers(1, 12))
    n_rows = draw(st.integers(num_nodes * 10, 400))
    n_classes = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    labels = np.random.default_rng(seed).integers(0, n_classes, size=n_rows)
    return labels, num_nodes, seed


@FAST
@given(_problem())
def test_iid_parts_are_disjoint_and_cover_all_rows(problem: tuple[np.ndarray, int, int]) -> None:
    labels, num_nodes, seed = problem
    _assert_exact_cover(iid(len(labels), num_nodes, seed), len(labels), num_nodes)


@FAST
@given(_problem(), st.floats(0.5, 50.0))
def test_dirichlet_parts_are_disjoint_and_cover_all_rows(problem: tuple[np.ndarray, int, int], alpha: float) -> None:
    labels, num_nodes, seed = problem
    _assert_exact_cover(dirichlet(labels, num_nodes, alpha, seed), len(labels), num_nodes)


@FAST
@given(_problem(), st.integers(1, 3))
def test_shards_parts_are_disjoint_and_cover_all_rows(problem: tuple[np.ndarray, int, int], k: int) -> None:
    labels, num_nodes, seed = problem
    k = min(k, len(np.unique(labels)))
    _assert_exact_cover(shards(labels, num_nodes, k, seed), len(labels), num_nodes)


@FAST
@given(_problem(), st.floats(0.0, 3.0), st.integers(1, 5))
def test_quantity_skew_parts_are_disjoint_and_cover_all_rows(
    problem: tuple[np.ndarray, int, int], sigma: float, min_size: int
) -> None:
    labels, num_nodes, seed = problem
    parts = quantity_skew(len(labels), num_nodes, sigma, seed, min_size=min_size)
    _assert_exact_cover(parts, len(labels), num_nodes)
    assert min(len(p) for p in parts) >= min_size


@FAST
@given(_problem())
def test_natural_parts_are_disjoint_and_cover_all_rows(problem: tuple[np.ndarray, int, int]) -> None:
    labels, _, _ = problem
    _assert_exact_cover(natural(labels), len(labels), len(np.unique(labels)))
