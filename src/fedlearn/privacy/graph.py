"""SecAgg+ parameters (degree ``k``, threshold ``t``) and the random ``k``-regular neighbour graph.

In SecAgg+ (Bell et al. 2020) each node masks with, and Shamir-shares its secrets among, only its
``k`` neighbours in a random ``k``-regular graph: a Harary graph (each node joined to the ``k/2``
nearest on each side of a ring) laid on a random permutation of the nodes. Full SecAgg (Bonawitz
et al. 2017) is the case ``k = n - 1``. :func:`secagg_parameters` picks ``k`` and ``t`` from
the number of nodes ``n``, the expected dropout fraction ``delta`` and the tolerated corrupt
fraction ``gamma``; :func:`check_secagg_parameters` checks a choice made by hand; both refuse
when no safe choice exists. :func:`neighbour_graph` draws the graph of one round from the run's
seed.

With ``C = floor(gamma n)`` corrupt and ``D = floor(delta n)`` dropped nodes placed by the
random permutation, a node's corrupt neighbours ``X_c`` and surviving neighbours ``X_s`` are
hypergeometric (``k`` draws from the other ``n - 1`` nodes, of which ``C``, resp.
``n - 1 - D``, are marked). A choice of ``(k, t)`` is accepted when, with ``sigma`` security
bits and ``eta`` correctness bits:

- the honest survivors stay connected, so the coordinator learns no partial sum: a vertex cut
  of a Harary graph needs two disjoint runs of ``k/2`` consecutive removed nodes on the ring, so
  ``P_disconnect <= n (n - k - 1) / 2 * C(C + D, k) / C(n, k) <= 2^-(sigma+1)``;
- no honest node has ``t`` corrupt neighbours (semi-honest: ``n P(X_c >= t) <= 2^-(sigma+1)``),
  or, if the coordinator may lie about who dropped out (semi-malicious), never can both of a
  node's secrets be rebuilt from the corrupt neighbours plus two disjoint groups of honest ones:
  ``2t > k + X_c``, so ``n P(X_c >= 2t - k) <= 2^-(sigma+1)``;
- every node keeps ``t`` surviving neighbours, so the sum can be unmasked:
  ``n P(X_s < t) <= 2^-eta``.

Security then fails with probability at most ``2^-sigma`` and correctness at most ``2^-eta``
(union bounds over the nodes). :func:`secagg_parameters` returns the smallest even ``k`` meeting
all three (found by doubling then bisection; feasibility grows with ``k``) and the smallest ``t``
that is secure, since that tolerates the most dropouts; ``t >= 2`` always. For the complete
graph the counts are exact (``X_c <= C``, ``X_s >= n - 1 - D``). The bounds assume the corrupt
and dropped nodes are fixed independently of the round's permutation; the guide
(docs/secure-aggregation.md) discusses what that asks of the protocol.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fedlearn.core.checks import Interval, Options, check, check_int, check_real
from fedlearn.core.errors import ConfigError
from fedlearn.privacy.framing import canonical
from fedlearn.privacy.masks import expand_seed_into

Adversary = Literal["semi-honest", "semi-malicious"]
ADVERSARIES: tuple[Adversary, ...] = ("semi-honest", "semi-malicious")

DEFAULT_SECURITY_BITS = 40
"""``sigma``: security fails with probability at most 2^-40, as in Bell et al. 2020."""

DEFAULT_CORRECTNESS_BITS = 20
"""``eta``: a round fails to unmask with probability at most 2^-20, as in Bell et al. 2020."""

MIN_NODES = 3
_FRACTION = Interval(0, 1, closed="left")


@dataclass(frozen=True, slots=True, kw_only=True)
class SecAggParameters:
    """A degree ``k`` and threshold ``t`` for ``n_nodes`` nodes, with the failure bounds they guarantee."""

    n_nodes: int
    degree: int
    threshold: int
    dropout_fraction: float
    corrupt_fraction: float
    adversary: Adversary
    security_bits: int
    correctness_bits: int
    security_failure: float
    """Upper bound on the probability that the coordinator (with the corrupt nodes) learns more than the sum."""
    correctness_failure: float
    """Upper bound on the probability that the sum cannot be unmasked within the expected dropouts."""

    @property
    def full(self) -> bool:
        """True for full SecAgg: every node neighbours every other."""
        return self.degree == self.n_nodes - 1


def secagg_parameters(
    n_nodes: int,
    *,
    dropout_fraction: float,
    corrupt_fraction: float,
    adversary: Adversary = "semi-malicious",
    security_bits: int = DEFAULT_SECURITY_BITS,
    correctness_bits: int = DEFAULT_CORRECTNESS_BITS,
    full: bool = False,
) -> SecAggParameters:
    """Safe default degree and threshold for ``n_nodes`` nodes: the smallest safe even degree, else ``n - 1``.

    ``full=True`` asks for full SecAgg (``k = n - 1``) directly. Raises ConfigError, naming what
    to change, when no degree is safe.
    """
    problem = _Problem.make(n_nodes, dropout_fraction, corrupt_fraction, adversary, security_bits, correctness_bits)
    check("full", full, Options((True, False)))
    if not full:
        degree = _smallest_degree(problem)
        if degree is not None:
            choice = problem.evaluate(degree)
            assert choice is not None
            return choice
    choice = problem.evaluate(problem.n - 1)
    if choice is None:
        raise ConfigError(problem.infeasible())
    return choice


def check_secagg_parameters(
    n_nodes: int,
    *,
    degree: int,
    threshold: int,
    dropout_fraction: float,
    corrupt_fraction: float,
    adversary: Adversary = "semi-malicious",
    security_bits: int = DEFAULT_SECURITY_BITS,
    correctness_bits: int = DEFAULT_CORRECTNESS_BITS,
) -> SecAggParameters:
    """The bounds a hand-picked ``degree`` and ``threshold`` guarantee; ConfigError if they miss the targets."""
    problem = _Problem.make(n_nodes, dropout_fraction, corrupt_fraction, adversary, security_bits, correctness_bits)
    n = problem.n
    degree = check_int("degree", degree, low=2)
    if degree != n - 1 and (degree % 2 or degree > n - 2):
        raise ConfigError(f"`degree` must be even and at most {n - 2}, or {n - 1} for full SecAgg; got {degree}")
    threshold = check_int("threshold", threshold, low=2)
    if threshold > degree:
        raise ConfigError(f"`threshold` must be at most `degree` {degree}; got {threshold}")
    bounds = problem.bounds(degree)
    if bounds.log_disconnect > problem.log_security:
        raise ConfigError(
            f"`degree` {degree} is too small for {n} nodes: the honest survivors may be disconnected with probability "
            f"up to 2^{min(bounds.log_disconnect, 0.0) / math.log(2):.1f}, above 2^-{problem.security_bits + 1}; "
            "raise `degree`"
        )
    if threshold < bounds.lowest_threshold:
        raise ConfigError(
            f"`threshold` {threshold} is not secure with `degree` {degree} against {problem.adversary} adversaries "
            f"and `corrupt_fraction` {problem.gamma}; raise it to at least {bounds.lowest_threshold}"
        )
    if threshold > bounds.highest_threshold:
        raise ConfigError(
            f"`threshold` {threshold} is more than the {bounds.highest_threshold} surviving neighbours guaranteed with "
            f"`degree` {degree} and `dropout_fraction` {problem.delta}; lower it, or raise `degree`"
        )
    return problem.result(degree, threshold, bounds)


@dataclass(frozen=True, slots=True)
class NeighbourGraph:
    """One round's neighbour graph: the nodes in their random ring order, each joined to ``degree`` others."""

    ring: tuple[str, ...]
    degree: int
    _position: dict[str, int] = field(init=False, repr=False, compare=False)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _neighbours: dict[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_position", {node: p for p, node in enumerate(self.ring)})
        object.__setattr__(self, "_index", {node: i for i, node in enumerate(sorted(self.ring), start=1)})
        object.__setattr__(self, "_neighbours", {})  # filled as asked: the graph never changes

    @property
    def full(self) -> bool:
        """True when every node neighbours every other (full SecAgg)."""
        return self.degree == len(self.ring) - 1

    def index(self, node_id: str) -> int:
        """The node's index, 1..n in sorted order of the ids: the x of the Shamir shares it holds."""
        return self._index[self._known(node_id)]

    def neighbours(self, node_id: str) -> tuple[str, ...]:
        """The ``degree`` neighbours of ``node_id``, sorted by id."""
        known = self._neighbours.get(node_id)
        if known is not None:
            return known
        position, n = self._position[self._known(node_id)], len(self.ring)
        if self.full:
            found = tuple(sorted(node for node in self.ring if node != node_id))
        else:
            half = self.degree // 2
            steps = (*range(-half, 0), *range(1, half + 1))
            found = tuple(sorted(self.ring[(position + step) % n] for step in steps))
        self._neighbours[node_id] = found
        return found

    def are_neighbours(self, node_id: str, peer_id: str) -> bool:
        """Whether the two (distinct) nodes share a pairwise mask and each other's shares."""
        a, b = self._position[self._known(node_id)], self._position[self._known(peer_id)]
        distance = abs(a - b)
        return a != b and (self.full or min(distance, len(self.ring) - distance) <= self.degree // 2)

    def _known(self, node_id: str) -> str:
        if node_id not in self._position:
            raise ConfigError(f"node {node_id!r} is not in this round's graph")
        return node_id


def neighbour_graph(node_ids: Iterable[str], *, degree: int, seed: int, round: int) -> NeighbourGraph:
    """The Harary graph of ``degree`` on a random permutation of ``node_ids``, drawn from ``seed`` and ``round``.

    The permutation sorts the nodes (taken in sorted order of their ids, so the order they are
    given in does not matter) by 128-bit keys from AES-256-CTR under a key derived with HKDF from
    the run's ``seed``, the ``round`` and a digest of the node list: deterministic for a given
    seed, round and set of nodes, and independent across rounds. ``degree`` is even and at most
    ``n - 2``, or ``n - 1`` for the complete graph.
    """
    nodes = sorted(node_ids)
    if not all(isinstance(node, str) for node in nodes) or len(set(nodes)) != len(nodes):
        raise ConfigError("`node_ids` must be distinct strings")
    n = len(nodes)
    if n < MIN_NODES:
        raise ConfigError(f"a neighbour graph needs at least {MIN_NODES} nodes; got {n}")
    degree = check_int("degree", degree, low=2)
    if degree != n - 1 and (degree % 2 or degree > n - 2):
        raise ConfigError(f"`degree` must be even and at most {n - 2}, or {n - 1} for the complete graph; got {degree}")
    digest = hashlib.sha256(canonical("node-list", *nodes)).digest()
    info = canonical("neighbour-graph", check_int("round", round), digest)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        canonical("run-seed", check_int("seed", seed))
    )
    keys = expand_seed_into(key, 0, np.empty(2 * n, dtype=np.uint64)).reshape(n, 2)
    order = np.lexsort((keys[:, 1], keys[:, 0]))
    return NeighbourGraph(ring=tuple(nodes[i] for i in order), degree=degree)


@dataclass(frozen=True, slots=True)
class _Bounds:
    log_disconnect: float
    lowest_threshold: int  # the smallest secure t
    highest_threshold: int  # the largest t the surviving neighbours guarantee
    log_corrupt_tail: np.ndarray  # log P(X_c >= c) for c = 0..k+1
    log_survivor_cdf: np.ndarray  # log P(X_s <= s) for s = -1..k


@dataclass(frozen=True, slots=True)
class _Problem:
    n: int
    delta: float
    gamma: float
    adversary: Adversary
    security_bits: int
    correctness_bits: int
    corrupt: int
    dropped: int

    @classmethod
    def make(
        cls, n_nodes: int, delta: float, gamma: float, adversary: Adversary, security_bits: int, correctness_bits: int
    ) -> _Problem:
        n = check_int("n_nodes", n_nodes, low=MIN_NODES)
        delta = check_real("dropout_fraction", delta, _FRACTION)
        gamma = check_real("corrupt_fraction", gamma, _FRACTION)
        check("adversary", adversary, Options(ADVERSARIES))
        security_bits = check_int("security_bits", security_bits, low=1)
        correctness_bits = check_int("correctness_bits", correctness_bits, low=1)
        # Counts are rounded down, but a product like 0.29 * 100 = 28.999... must count 29 nodes.
        corrupt, dropped = math.floor(gamma * n + 1e-9), math.floor(delta * n + 1e-9)
        problem = cls(n, delta, gamma, adversary, security_bits, correctness_bits, corrupt, dropped)
        if gamma + (2 if adversary == "semi-malicious" else 1) * delta >= 1:
            raise ConfigError(problem.infeasible())
        return problem

    @property
    def log_security(self) -> float:
        """log 2^-(sigma+1): the budget of each of the two security events."""
        return -(self.security_bits + 1) * math.log(2)

    def infeasible(self) -> str:
        rule = (
            "`corrupt_fraction` + 2 × `dropout_fraction` < 1"
            if self.adversary == "semi-malicious"
            else "`corrupt_fraction` + `dropout_fraction` < 1"
        )
        return (
            f"no degree and threshold are safe for {self.n} nodes with `dropout_fraction` {self.delta} and "
            f"`corrupt_fraction` {self.gamma} against {self.adversary} adversaries (this needs {rule}, with room "
            f"for {self.security_bits}-bit security and {self.correctness_bits}-bit correctness); lower "
            "`dropout_fraction` or `corrupt_fraction`, or run with more nodes"
        )

    def bounds(self, degree: int) -> _Bounds:
        n, k = self.n, degree
        log_n = math.log(n)
        if k == n - 1:  # complete graph: the counts are exact and it cannot be disconnected
            corrupt_tail = np.where(np.arange(k + 2) <= min(self.corrupt, k), 0.0, -np.inf)
            survivor_cdf = np.where(np.arange(-1, k + 1) >= n - 1 - self.dropped, 0.0, -np.inf)
            log_disconnect = -math.inf
        else:
            corrupt_tail = _log_tail(n - 1, self.corrupt, k)
            survivor_cdf = _log_cdf(n - 1, n - 1 - self.dropped, k)
            log_disconnect = _log_disconnect(n, k, self.corrupt + self.dropped)
        # Corrupt neighbours stay below c_star + 1 except with probability n P(X_c > c_star) <= 2^-(sigma+1).
        c_star = int(np.argmax(log_n + corrupt_tail <= self.log_security)) - 1
        lowest = c_star + 1 if self.adversary == "semi-honest" else (k + c_star) // 2 + 1
        # At least s_star neighbours survive except with probability n P(X_s < s_star) <= 2^-eta.
        ok = log_n + survivor_cdf <= -self.correctness_bits * math.log(2)  # index s + 1 holds P(X_s <= s)
        highest = int(np.nonzero(ok)[0].max()) if ok.any() else 0  # the largest s with P(X_s <= s - 1) small
        return _Bounds(log_disconnect, max(lowest, 2), min(highest, k), corrupt_tail, survivor_cdf)

    def evaluate(self, degree: int) -> SecAggParameters | None:
        bounds = self.bounds(degree)
        feasible = bounds.log_disconnect <= self.log_security and bounds.lowest_threshold <= bounds.highest_threshold
        return self.result(degree, bounds.lowest_threshold, bounds) if feasible else None

    def result(self, degree: int, threshold: int, bounds: _Bounds) -> SecAggParameters:
        k, t = degree, threshold
        exposed_at = t if self.adversary == "semi-honest" else 2 * t - k  # corrupt neighbours that break a node
        log_exposed = math.log(self.n) + bounds.log_corrupt_tail[min(max(exposed_at, 0), k + 1)]
        log_short = math.log(self.n) + bounds.log_survivor_cdf[t - 1 + 1]  # P(X_s <= t - 1)
        return SecAggParameters(
            n_nodes=self.n,
            degree=k,
            threshold=t,
            dropout_fraction=self.delta,
            corrupt_fraction=self.gamma,
            adversary=self.adversary,
            security_bits=self.security_bits,
            correctness_bits=self.correctness_bits,
            security_failure=min(1.0, math.exp(bounds.log_disconnect) + math.exp(log_exposed)),
            correctness_failure=min(1.0, math.exp(log_short)),
        )


def _smallest_degree(problem: _Problem) -> int | None:
    """The smallest even degree below n - 1 that is feasible, by doubling then bisection; None if none is."""
    top = (problem.n - 2) // 2 * 2
    if top < 2:
        return None
    infeasible, degree = 0, 2
    while problem.evaluate(degree) is None:
        if degree == top:
            return None
        infeasible, degree = degree, min(2 * degree, top)
    feasible = degree
    while feasible - infeasible > 2:
        middle = (infeasible + feasible) // 4 * 2
        if problem.evaluate(middle) is None:
            infeasible = middle
        else:
            feasible = middle
    return feasible


def _log_disconnect(n: int, k: int, bad: int) -> float:
    """log of the union bound on a random Harary graph losing connectivity when ``bad`` random nodes go."""
    if bad < k:
        return -math.inf
    pairs = math.log(n) + math.log(n - k - 1) - math.log(2)
    return pairs + _log_comb(bad, k) - _log_comb(n, k)


def _log_comb(a: int, b: int) -> float:
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def _log_pmf(population: int, marked: int, draws: int) -> np.ndarray:
    """log P(X = x) for x = 0..draws, X hypergeometric (-inf outside the support)."""
    x = np.arange(draws + 1)
    low, high = max(0, draws - (population - marked)), min(draws, marked)
    inside = (x >= low) & (x <= high)
    log_pmf = np.full(draws + 1, -np.inf)
    xs = x[inside]
    log_pmf[inside] = (
        _log_comb_row(marked, high)[xs]
        + _log_comb_row(population - marked, draws - low)[draws - xs]
        - _log_comb(population, draws)
    )
    return log_pmf


def _log_comb_row(a: int, m: int) -> np.ndarray:
    """log C(a, j) for j = 0..m, by a cumulative sum of log((a - j + 1) / j)."""
    j = np.arange(1, m + 1, dtype=np.float64)
    return np.concatenate(([0.0], np.cumsum(np.log(a - j + 1) - np.log(j))))


def _log_tail(population: int, marked: int, draws: int) -> np.ndarray:
    """log P(X >= c) for c = 0..draws+1."""
    log_pmf = _log_pmf(population, marked, draws)
    tail = np.logaddexp.accumulate(log_pmf[::-1])[::-1]
    return np.append(np.minimum(tail, 0.0), -np.inf)


def _log_cdf(population: int, marked: int, draws: int) -> np.ndarray:
    """log P(X <= s) for s = -1..draws (index s + 1)."""
    return np.concatenate(([-np.inf], np.minimum(np.logaddexp.accumulate(_log_pmf(population, marked, draws)), 0.0)))
