"""Bucketing: average random buckets of updates, then hand the bucket means to a robust reducer.

Karimireddy, He and Jaggi, "Byzantine-Robust Learning on Heterogeneous Datasets via Bucketing",
ICLR 2022. Robust reducers tell attackers from honest nodes by how far their updates lie from
the others; when honest nodes' data differ (non-iid), honest updates lie far apart too, and the
reducers either discard good updates or let bad ones in. Averaging buckets of ``s`` random
updates shrinks the honest spread by about ``sqrt(s)`` while ``f`` attackers still spoil at most
``f`` buckets, so the wrapped reducer faces the same number of bad inputs among more alike good
ones. It goes in front of any reducer: ``bucketing(krum(2), bucket_size=2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fedlearn.core.checks import check_int
from fedlearn.core.errors import QuorumError
from fedlearn.core.params import ParamSet
from fedlearn.strategies.accumulators import Pool, Pooling, RunningSum
from fedlearn.strategies.base import (
    AnyReducer,
    Reducer,
    RoundReducer,
    bind_reducer,
    check_reducer,
    reducer_init_state,
    reducer_next_state,
    required_replies,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bucketing(RoundReducer):
    """Shuffle the updates, average them in buckets of ``bucket_size``, reduce the means with ``reducer``.

    Each round, the updates of weight > 0 are put in an order fixed by their contents and then
    shuffled by the round's generator, so the buckets depend on the seed and the replies,
    never on the order the replies arrived in. ``ceil(n / s)`` buckets are made, the last one
    possibly smaller. A bucket's mean is the plain mean of its updates (as in the paper), and
    it reaches ``reducer`` as one model whose weight is the sum of its members' weights, so a
    reducer that respects weights (the geometric median, the weighted mean) still does. A bucket
    of one passes its update through untouched, so ``bucket_size=1`` is ``reducer`` itself on
    shuffled input. The wrapped reducer's state passes through, so it may be a round reducer.

    Memory: every update, O(n x model), plus what ``reducer`` holds of the ``ceil(n / s)``
    bucket means (all of them for a robust reducer: O(n / s x model) more).
    """

    reducer: AnyReducer
    bucket_size: int

    streaming: ClassVar[bool] = False
    needs_each_update: ClassVar[str] = "it averages random buckets of individual updates"

    def __post_init__(self) -> None:
        check_reducer("reducer", self.reducer)
        object.__setattr__(self, "bucket_size", check_int("bucket_size", self.bucket_size, low=1))

    @property
    def min_replies(self) -> int:
        """Enough updates to make as many buckets as the wrapped reducer needs updates."""
        return (required_replies(self.reducer) - 1) * self.bucket_size + 1

    def init_state(self, params: ParamSet) -> ParamSet:
        return reducer_init_state(self.reducer, params)

    def bind(self, state: ParamSet, rng: np.random.Generator) -> Reducer:
        shuffle, inner = rng.spawn(2)
        return _Buckets(reducer=bind_reducer(self.reducer, state, inner), bucket_size=self.bucket_size, rng=shuffle)

    def next_state(self, state: ParamSet, update: ParamSet) -> ParamSet:
        return reducer_next_state(self.reducer, state, update)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Buckets(Pooling, Reducer[Pool]):
    reducer: Reducer
    bucket_size: int
    rng: np.random.Generator

    streaming: ClassVar[bool] = False

    def result(self, acc: Pool) -> ParamSet:
        count = acc.require(1, f"bucketing(bucket_size={self.bucket_size})")
        acc.sort_by_content()
        shuffled = self.rng.permutation(count).tolist()
        buckets = [shuffled[start : start + self.bucket_size] for start in range(0, count, self.bucket_size)]
        inner = self.reducer.init(acc.base)
        for bucket in buckets:
            inner = self.reducer.add(inner, _bucket_model(acc, bucket), math.fsum(acc.weights[i] for i in bucket))
        try:
            return self.reducer.result(inner)
        except QuorumError as exc:
            raise QuorumError(
                f"bucketing(bucket_size={self.bucket_size}) made {len(buckets)} bucket(s) of {count} update(s), "
                f"too few for the reducer it feeds: {exc}"
            ) from None


def _bucket_model(pool: Pool, bucket: list[int]) -> ParamSet:
    """The model whose update is the plain mean of the bucket's updates (the update itself for one)."""
    if len(bucket) == 1:
        return pool.models[bucket[0]]
    mean = RunningSum(pool.base)
    for i in bucket:
        mean.add(pool.models[i], 1.0)
    return pool.base + mean.mean("bucketing")


def bucketing(reducer: AnyReducer, bucket_size: int) -> Bucketing:
    """``reducer`` over the means of random buckets of ``bucket_size`` updates. Not streaming."""
    return Bucketing(reducer=reducer, bucket_size=bucket_size)
