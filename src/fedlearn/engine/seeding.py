"""Derive every random stream of a run from its one seed.

Streams are keyed by (seed, round, purpose, node) rather than drawn from one generator in
sequence, so a resumed run, a different worker count or a node that replies late cannot shift
anyone else's randomness. Node names are hashed with sha256, never Python's salted ``hash``.
"""

from __future__ import annotations

import hashlib

import numpy as np

SAMPLE = 1
AGGREGATE = 2
EVALUATE = 3
FAULTS = 4
WORK = 5
DP_NOISE = 6
"""Simulated differential-privacy noise; a deployment draws it from the OS instead (``privacy.noise.SystemNoise``)."""


def round_rng(seed: int, round_number: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, round_number, purpose]))


def node_seed(seed: int, round_number: int, node_id: str) -> int:
    """A 31-bit seed for one node's local work in one round (fits every library's seed type)."""
    digest = hashlib.sha256(f"{seed}\0{round_number}\0{node_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
