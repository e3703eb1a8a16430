"""SecAgg+ degree and threshold, and the neighbour graph drawn from the run's seed."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedlearn.core.errors import ConfigError
from fedlearn.privacy.graph import (
    _log_disconnect,
    _log_pmf,
    check_secagg_parameters,
    neighbour_graph,
    secagg_parameters,
)

NODES = [f"node-{i:03d}" for i in range(40)]
PROPERTY = settings(max_examples=40, deadline=None)

# (n, corrupt, dropout, adversary) -> (degree, threshold) as precomputed for the same sigma = 40 and eta = 20 by
# the open-source parameter finder of Google's federated-compute (fcp/secagg/server/graph_parameter_finder_test.cc).
PUBLISHED = {
    (1000, 0.33, 0.33, "semi-honest"): (286, 150),
    (100000, 0.33, 0.33, "semi-honest"): (480, 251),
    (1000000, 0.33, 0.33, "semi-honest"): (518, 270),
    (1000, 0.05, 0.33, "semi-honest"): (72, 24),
    (1000, 0.3, 0.3, "semi-malicious"): (872, 584),
    (1000, 0.05, 0.33, "semi-malicious"): (398, 223),
    (1000000, 0.05, 0.33, "semi-malicious"): (970, 545),
    (10000, 0.33, 0.05, "semi-malicious"): (178, 146),
}


@pytest.mark.parametrize(("case", "expected"), PUBLISHED.items(), ids=str)
def test_parameters_match_the_published_reference_values(
    case: tuple[int, float, float, str], expected: tuple[int, int]
) -> None:
    n, corrupt, dropout, adversary = case

    chosen = secagg_parameters(n, corrupt_fraction=corrupt, dropout_fraction=dropout, adversary=adversary)  # type: ignore[arg-type]

    assert (chosen.degree, chosen.threshold) == expected


def test_parameters_meet_their_failure_targets() -> None:
    chosen = secagg_parameters(5000, dropout_fraction=0.1, corrupt_fraction=0.1)

    assert chosen.security_failure <= 2.0**-40 and chosen.correctness_failure <= 2.0**-20
    assert chosen.adversary == "semi-malicious" and not chosen.full


def test_degree_grows_like_log_n() -> None:
    degrees = [
        secagg_parameters(n, dropout_fraction=0.05, corrupt_fraction=0.05).degree for n in (10**3, 10**4, 10**5, 10**6)
    ]

    assert degrees == sorted(degrees)
    assert degrees[-1] < 1.5 * degrees[0] < 300  # a thousandfold more nodes, well under twice the degree


def test_semi_malicious_threshold_exceeds_half_the_degree_plus_corrupt_neighbours() -> None:
    honest = secagg_parameters(10**4, dropout_fraction=0.1, corrupt_fraction=0.1, adversary="semi-honest")
    malicious = secagg_parameters(10**4, dropout_fraction=0.1, corrupt_fraction=0.1, adversary="semi-malicious")

    assert 2 * malicious.threshold > malicious.degree
    assert malicious.threshold / malicious.degree > honest.threshold / honest.degree


def test_smallest_safe_degree_is_returned() -> None:
    chosen = secagg_parameters(2000, dropout_fraction=0.1, corrupt_fraction=0.05)

    for threshold in range(2, chosen.degree - 1):
        with pytest.raises(ConfigError):
            check_secagg_parameters(
                2000, degree=chosen.degree - 2, threshold=threshold, dropout_fraction=0.1, corrupt_fraction=0.05
            )


@PROPERTY
@given(
    n=st.integers(3, 5000),
    corrupt=st.sampled_from([0.0, 0.01, 0.1, 0.2]),
    dropout=st.sampled_from([0.0, 0.05, 0.2, 0.3]),
    adversary=st.sampled_from(["semi-honest", "semi-malicious"]),
)
def test_every_default_passes_the_check_of_a_hand_picked_pair(
    n: int, corrupt: float, dropout: float, adversary: str
) -> None:
    try:
        chosen = secagg_parameters(n, dropout_fraction=dropout, corrupt_fraction=corrupt, adversary=adversary)  # type: ignore[arg-type]
    except ConfigError:
        return  # refused: nothing to check

    checked = check_secagg_parameters(
        n,
        degree=chosen.degree,
        threshold=chosen.threshold,
        dropout_fraction=dropout,
        corrupt_fraction=corrupt,
        adversary=adversary,  # type: ignore[arg-type]
    )
    assert checked == chosen
    assert chosen.security_failure <= 2.0**-40 and chosen.correctness_failure <= 2.0**-20
    assert 2 <= chosen.threshold <= chosen.degree <= n - 1


def test_full_secagg_on_request() -> None:
    chosen = secagg_parameters(50, dropout_fraction=0.1, corrupt_fraction=0.1, full=True)

    # Exact counts: 5 corrupt, 5 dropped; 2t > 49 + 5 and t <= 49 - 5.
    assert chosen.full and (chosen.degree, chosen.threshold) == (49, 28)
    assert chosen.security_failure == 0.0 and chosen.correctness_failure == 0.0


def test_small_federations_fall_back_to_full_secagg() -> None:
    # 7 nodes, 2 dropped: degree 4 may leave 2 survivors (probability 6/15), short of 2t > 4.
    chosen = secagg_parameters(7, dropout_fraction=0.3, corrupt_fraction=0.0)

    assert chosen.full and (chosen.degree, chosen.threshold) == (6, 4)


def test_unsafe_fractions_are_refused_naming_them() -> None:
    with pytest.raises(ConfigError, match=r"`corrupt_fraction` \+ 2 × `dropout_fraction` < 1"):
        secagg_parameters(1000, dropout_fraction=0.4, corrupt_fraction=0.25)


def test_too_few_nodes_for_the_fractions_are_refused() -> None:
    # Full graph, 5 nodes: 2 dropped leave 2 neighbours, but 2t > 4 needs t = 3.
    with pytest.raises(ConfigError, match="run with more nodes"):
        secagg_parameters(5, dropout_fraction=0.4, corrupt_fraction=0.0)


def test_degree_without_enough_surviving_neighbours_is_refused() -> None:
    # 3 of 10 nodes drop: 4 neighbours may keep a single survivor (probability 6/126 per node).
    with pytest.raises(ConfigError, match="`threshold` 2 is more than the 1 surviving neighbours"):
        check_secagg_parameters(
            10, degree=4, threshold=2, dropout_fraction=0.33, corrupt_fraction=0.05, adversary="semi-honest"
        )


def test_threshold_too_low_is_refused_naming_the_lowest_safe_one() -> None:
    chosen = secagg_parameters(1000, dropout_fraction=0.05, corrupt_fraction=0.33, adversary="semi-honest")

    with pytest.raises(ConfigError, match=f"raise it to at least {chosen.threshold}"):
        check_secagg_parameters(
            1000,
            degree=chosen.degree,
            threshold=chosen.threshold - 1,
            dropout_fraction=0.05,
            corrupt_fraction=0.33,
            adversary="semi-honest",
        )


def test_degree_too_small_to_stay_connected_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"disconnected .* raise `degree`"):
        check_secagg_parameters(1000, degree=10, threshold=6, dropout_fraction=0.3, corrupt_fraction=0.1)


@pytest.mark.parametrize(("degree", "threshold"), [(5, 3), (1000, 3), (4, 5)])
def test_malformed_choices_are_refused(degree: int, threshold: int) -> None:
    with pytest.raises(ConfigError, match=r"`degree`|`threshold`"):
        check_secagg_parameters(100, degree=degree, threshold=threshold, dropout_fraction=0.1, corrupt_fraction=0.1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_nodes": 2}, "`n_nodes`"),
        ({"dropout_fraction": 1.0}, "`dropout_fraction`"),
        ({"corrupt_fraction": -0.1}, "`corrupt_fraction`"),
        ({"adversary": "malicious"}, "`adversary` must be one of semi-honest, semi-malicious"),
    ],
)
def test_invalid_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    arguments = {"n_nodes": 100, "dropout_fraction": 0.1, "corrupt_fraction": 0.1, **kwargs}

    with pytest.raises(ConfigError, match=message):
        secagg_parameters(**arguments)  # type: ignore[arg-type]


def test_hypergeometric_probabilities_match_exact_counting() -> None:
    population, marked, draws = 12, 5, 4

    computed = [math.exp(v) for v in _log_pmf(population, marked, draws)]

    exact = [
        Fraction(math.comb(marked, x) * math.comb(population - marked, draws - x), math.comb(population, draws))
        for x in range(draws + 1)
    ]
    assert computed == pytest.approx([float(p) for p in exact], rel=1e-12)


def test_disconnection_bound_covers_the_exact_probability() -> None:
    n, degree, bad = 12, 4, 6
    disconnected = sum(
        not _connected([p for p in range(n) if p not in removed], n, degree)
        for removed in itertools.combinations(range(n), bad)
    )

    exact = disconnected / math.comb(n, bad)

    assert 0 < exact <= math.exp(_log_disconnect(n, degree, bad))


def test_graph_is_regular_and_symmetric() -> None:
    graph = neighbour_graph(NODES, degree=6, seed=7, round=1)

    for node in NODES:
        neighbours = graph.neighbours(node)
        assert len(neighbours) == 6 and node not in neighbours
        assert all(graph.are_neighbours(node, peer) and node in graph.neighbours(peer) for peer in neighbours)
    assert sum(graph.are_neighbours(a, b) for a, b in itertools.combinations(NODES, 2)) == 40 * 6 // 2


@PROPERTY
@given(n=st.integers(3, 60), data=st.data())
def test_any_graph_is_regular_and_symmetric(n: int, data: st.DataObject) -> None:
    choices = [*range(2, n - 1, 2), n - 1]
    degree = data.draw(st.sampled_from(choices))
    nodes = NODES[:n] if n <= len(NODES) else [f"x{i}" for i in range(n)]

    graph = neighbour_graph(nodes, degree=degree, seed=data.draw(st.integers(0, 2**64)), round=0)

    assert all(len(set(graph.neighbours(node))) == degree for node in nodes)
    assert all(node in graph.neighbours(peer) for node in nodes for peer in graph.neighbours(node))


def test_graph_stays_connected_without_any_degree_minus_one_nodes() -> None:
    nodes = NODES[:14]
    graph = neighbour_graph(nodes, degree=4, seed=1, round=0)
    position = {node: p for p, node in enumerate(graph.ring)}

    for removed in itertools.combinations(nodes, 3):
        assert _connected([position[node] for node in nodes if node not in removed], 14, 4)


def test_graph_is_deterministic_and_independent_of_the_given_order() -> None:
    first = neighbour_graph(NODES, degree=4, seed=3, round=5)
    second = neighbour_graph(list(reversed(NODES)), degree=4, seed=3, round=5)

    assert first == second


@pytest.mark.parametrize("change", [{"seed": 4}, {"round": 6}], ids=str)
def test_graph_changes_with_the_seed_and_the_round(change: dict[str, int]) -> None:
    base = {"seed": 3, "round": 5}

    assert neighbour_graph(NODES, degree=4, **base).ring != neighbour_graph(NODES, degree=4, **{**base, **change}).ring


def test_graph_changes_with_the_node_list() -> None:
    assert neighbour_graph(NODES[:-1], degree=4, seed=3, round=5).ring != tuple(
        n for n in neighbour_graph(NODES, degree=4, seed=3, round=5).ring if n != NODES[-1]
    )


def test_complete_graph_joins_every_pair() -> None:
    graph = neighbour_graph(NODES[:5], degree=4, seed=0, round=0)

    assert graph.full and all(graph.neighbours(n) == tuple(m for m in NODES[:5] if m != n) for n in NODES[:5])


def test_index_is_the_place_in_sorted_order_from_one() -> None:
    graph = neighbour_graph(["c", "a", "b"], degree=2, seed=0, round=0)

    assert [graph.index(n) for n in "abc"] == [1, 2, 3]


@pytest.mark.parametrize(
    ("nodes", "degree", "message"),
    [
        (NODES, 5, "must be even"),
        (NODES, 42, "at most 38"),
        (["a", "b"], 1, "at least 3 nodes"),
        (["a", "a", "b", "c"], 2, "distinct"),
    ],
)
def test_graph_refuses_bad_arguments(nodes: list[str], degree: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        neighbour_graph(nodes, degree=degree, seed=0, round=0)


def test_graph_refuses_an_unknown_node() -> None:
    with pytest.raises(ConfigError, match="'stranger' is not in this round's graph"):
        neighbour_graph(NODES, degree=4, seed=0, round=0).neighbours("stranger")


def _connected(alive: list[int], n: int, degree: int) -> bool:
    """Whether ring positions ``alive`` of the Harary graph H(n, degree) form one connected piece."""
    alive_set, seen, todo = set(alive), set(), alive[:1]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo.extend(q for s in range(1, degree // 2 + 1) for q in ((p + s) % n, (p - s) % n) if q in alive_set)
    return seen == alive_set
