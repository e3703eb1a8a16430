"""Each attack's crafting rule and poisoning step, and the factory that builds them by name."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedlearn.client.attacks import (
    ATTACKS,
    Trigger,
    alie,
    alie_z,
    apply_update,
    backdoor_rows,
    backdoor_test,
    benign_mean_std,
    build_attack,
    flat_update,
    flip_labels,
    gaussian,
    ipm,
    largest_gamma,
    min_max,
    min_sum,
    perturbation,
    scaled,
    sign_flip,
)
from fedlearn.core.errors import ConfigError
from fedlearn.core.params import ParamSet
from tests.client.conftest import tiny_classification, tiny_regression


def benign(rows: int = 6, size: int = 40, seed: int = 0) -> np.ndarray:
    """Benign updates scattered around a common direction, one per row."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(size) + 0.5 * rng.standard_normal((rows, size))


def pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)


# --- updates as vectors


def test_flat_update_and_apply_update_round_trip_in_each_arrays_dtype() -> None:
    base = ParamSet({"w": np.ones((2, 3), np.float32), "b": np.zeros(2), "steps": np.array([7], np.int64)})
    trained = ParamSet({"w": np.full((2, 3), 1.5, np.float32), "b": np.array([0.25, -0.5]), "steps": np.array([9])})

    update = flat_update(trained, base)
    again = apply_update(base, update)

    np.testing.assert_array_equal(update, [0.5] * 6 + [0.25, -0.5])
    assert again["w"].dtype == np.float32 and np.array_equal(again["w"], trained["w"])
    np.testing.assert_array_equal(again["b"], trained["b"])
    np.testing.assert_array_equal(again["steps"], base["steps"])  # an attack never touches integer arrays


def test_apply_update_refuses_an_update_of_the_wrong_size() -> None:
    with pytest.raises(ConfigError, match="does not fit a model of 3"):
        apply_update(ParamSet({"w": np.zeros(3)}), np.zeros(4))


# --- crafting rules


def test_sign_flip_negates_the_update_and_scales_it() -> None:
    update = np.array([1.0, -2.0, 0.5])

    np.testing.assert_array_equal(sign_flip(update, scale=4.0), [-4.0, 8.0, -2.0])


def test_scaled_multiplies_the_update() -> None:
    np.testing.assert_array_equal(scaled(np.array([1.0, -2.0]), factor=5.0), [5.0, -10.0])


def test_gaussian_draws_noise_of_the_given_scale_from_the_generator() -> None:
    noise = gaussian(20_000, std=3.0, rng=np.random.default_rng(0))

    assert abs(noise.mean()) < 0.1 and abs(noise.std() - 3.0) < 0.1
    np.testing.assert_array_equal(noise, gaussian(20_000, std=3.0, rng=np.random.default_rng(0)))


def test_alie_sits_exactly_z_benign_deviations_below_the_benign_mean() -> None:
    updates = benign()
    mean, std = benign_mean_std(updates)

    crafted = alie(updates, z=1.5)

    np.testing.assert_allclose(crafted, mean - 1.5 * std)
    assert np.all(crafted <= mean) and np.all(crafted >= mean - 1.5 * std - 1e-12)


@pytest.mark.parametrize(("nodes", "byzantine", "expected"), [(25, 5, 0.4677), (50, 24, 1.7507), (10, 0, -0.2533)])
def test_alie_z_is_the_normal_quantile_of_the_papers_majority_rule(nodes: int, byzantine: int, expected: float) -> None:
    # s = floor(n/2 + 1) - f supporters are needed; z = Phi^-1((n - s) / n)
    assert alie_z(nodes, byzantine) == pytest.approx(expected, abs=1e-4)


def test_ipm_is_minus_epsilon_times_the_benign_mean() -> None:
    updates = benign()

    np.testing.assert_allclose(ipm(updates, epsilon=0.1), -0.1 * updates.mean(axis=0))


@pytest.mark.parametrize("kind", ["unit_vec", "std", "sign"])
def test_perturbation_points_against_the_benign_mean_or_along_minus_std(kind: str) -> None:
    updates = benign()
    mean, std = benign_mean_std(updates)

    p = perturbation(updates, kind)  # type: ignore[arg-type]

    if kind == "std":
        np.testing.assert_allclose(p, -std)
    else:
        assert float(p @ mean) < 0
        assert math.isclose(np.linalg.norm(p), 1.0) if kind == "unit_vec" else np.all(np.abs(p) == 1)


def test_largest_gamma_finds_the_boundary_of_a_feasible_interval() -> None:
    assert largest_gamma(lambda g: g <= 3.3, gamma_init=10.0, tolerance=1e-5) == pytest.approx(3.3, abs=1e-4)
    assert largest_gamma(lambda g: False, gamma_init=10.0, tolerance=1e-5) == 0.0


@pytest.mark.parametrize("kind", ["unit_vec", "std", "sign"])
def test_min_max_stays_within_the_largest_benign_distance_and_goes_as_far_as_it_allows(kind: str) -> None:
    updates = benign()
    bound = pairwise(updates, updates).max()

    crafted = min_max(updates, kind=kind)  # type: ignore[arg-type]

    farthest = pairwise(crafted[None], updates).max()
    assert farthest <= bound + 1e-9
    assert farthest >= 0.999 * bound  # the search pushed it to the boundary, not merely inside
    assert np.linalg.norm(crafted - updates.mean(axis=0)) > 0


def test_min_sum_keeps_its_summed_squared_distances_within_the_largest_benign_sum() -> None:
    updates = benign()
    bound = (pairwise(updates, updates) ** 2).sum(axis=1).max()

    crafted = min_sum(updates)

    total = (pairwise(crafted[None], updates) ** 2).sum()
    assert bound * 0.999 <= total <= bound + 1e-9


def test_rules_that_estimate_need_enough_benign_updates() -> None:
    with pytest.raises(ConfigError, match="at least 2 benign updates"):
        min_max(benign(rows=1))


# --- data poisoning


def test_flip_labels_maps_each_label_to_its_mirror() -> None:
    data = tiny_classification(rows=30, classes=3)

    flipped = flip_labels(data)

    assert data.y is not None and flipped.y is not None
    np.testing.assert_array_equal(flipped.y, 2 - data.y)
    np.testing.assert_array_equal(flipped.x, data.x)


def test_flip_labels_refuses_regression_data() -> None:
    with pytest.raises(ConfigError, match="classification"):
        flip_labels(tiny_regression())


def test_trigger_stamps_its_features_counted_from_the_end_and_leaves_the_rows_alone() -> None:
    x = np.zeros((3, 6), np.float32)

    stamped = Trigger(features=(0, -1), value=5.0).stamp(x)

    np.testing.assert_array_equal(stamped[:, [0, 5]], 5.0)
    np.testing.assert_array_equal(stamped[:, 1:5], 0.0)
    assert not x.any()


def test_trigger_outside_the_features_is_refused() -> None:
    with pytest.raises(ConfigError, match="`trigger_features` must index the 6 features"):
        Trigger(features=(6,), value=1.0).stamp(np.zeros((1, 6)))


def test_backdoor_rows_add_stamped_copies_of_a_fraction_of_the_rows_labelled_target() -> None:
    data = tiny_classification(rows=40, features=5)
    trigger = Trigger(features=(-1,), value=9.0)

    poisoned = backdoor_rows(data, trigger, target=1, fraction=0.25, rng=np.random.default_rng(0))

    assert poisoned.y is not None
    assert len(poisoned) == 50
    np.testing.assert_array_equal(poisoned.x[:40], data.x)
    np.testing.assert_array_equal(poisoned.x[40:, -1], 9.0)
    np.testing.assert_array_equal(poisoned.y[40:], 1)


def test_backdoor_test_keeps_only_rows_of_other_classes_stamped_and_labelled_target() -> None:
    data = tiny_classification(rows=40)
    assert data.y is not None

    rows = backdoor_test(data, Trigger(features=(0,), value=3.0), target=2)

    assert len(rows) == int(np.sum(data.y != 2))
    assert rows.y is not None and set(rows.y.tolist()) == {2}
    np.testing.assert_array_equal(rows.x[:, 0], 3.0)


# --- by name


def test_every_attack_builds_with_its_defaults_given_the_simulations_context() -> None:
    for name in ATTACKS:
        attack = build_attack(name, context={"nodes": 25, "byzantine": 5})
        assert attack.name == name
        assert attack.poison is not None or attack.craft is not None


def test_build_attack_fills_alie_z_and_the_backdoor_boost_from_the_context() -> None:
    context = {"nodes": 25, "byzantine": 5}

    assert build_attack("alie", context=context).options["z"] == pytest.approx(alie_z(25, 5))
    assert build_attack("backdoor", context=context).options["boost"] == 5.0
    assert build_attack("alie", context=context, z=2.0).options["z"] == 2.0  # the config wins


def test_alie_without_z_or_the_numbers_to_compute_it_says_what_it_needs() -> None:
    with pytest.raises(ConfigError, match="needs `z`, or `nodes` and `byzantine`"):
        build_attack("alie")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("sign_flop", {}, r"unknown attack 'sign_flop'; attacks are \['alie', 'backdoor'"),
        ("sign_flip", {"factor": 2.0}, r"unknown option\(s\) factor for attack 'sign_flip'; valid options: scale"),
        ("sign_flip", {"scale": -1.0}, r"`scale` must be in \(0, inf\); got -1.0"),
        ("gaussian", {"std": "big"}, r"`std` must be a number in \(0, inf\); got 'big' \(str\)"),
        ("ipm", {"epsilon": 0}, r"`epsilon` must be in \(0, inf\); got 0"),
        ("min_max", {"perturbation": "cosine"}, "`perturbation` must be one of unit_vec, std, sign; got 'cosine'"),
        ("backdoor", {"poison_fraction": 0.0}, r"`poison_fraction` must be in \(0, 1\]; got 0.0"),
        ("backdoor", {"boost": 0.5}, r"`boost` must be in \[1, inf\); got 0.5"),
        ("backdoor", {"trigger_features": "last"}, "`trigger_features` must be a non-empty list"),
        ("backdoor", {"trigger_features": [1, 2.5]}, "`trigger_features` must be a non-empty list"),
    ],
    ids=[
        "unknown",
        "option",
        "scale",
        "std_type",
        "epsilon",
        "perturbation",
        "poison_fraction",
        "boost",
        "trigger",
        "trigger_float",
    ],
)
def test_build_attack_names_the_option_that_is_wrong(name: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_attack(name, **options)


def test_attack_describes_itself_with_its_options() -> None:
    assert build_attack("ipm", epsilon=0.5).describe() == "ipm (epsilon=0.5)"
    assert build_attack("label_flip").describe() == "label_flip"
