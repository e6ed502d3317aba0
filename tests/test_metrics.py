"""Map comparison metrics: hand-computed cases, self-agreement, unrelated maps, stability."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sensmap.errors import ParameterError
from sensmap.metrics import agreement, average_ranks, spearman, stability, top_iou, top_region


def smooth_map(height: int = 64, width: int = 64, centre: tuple[float, float] = (0.4, 0.6)) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.exp(-(((yy + 0.5) / height - centre[0]) ** 2 + ((xx + 0.5) / width - centre[1]) ** 2) / 0.05)


def test_average_ranks_share_ties():
    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_spearman_hand_case_with_ties():
    a = np.array([[1.0, 2.0], [2.0, 3.0]])  # ranks 1, 2.5, 2.5, 4
    b = np.array([[1.0, 2.0], [3.0, 4.0]])  # ranks 1, 2, 3, 4
    assert spearman(a, b) == pytest.approx(math.sqrt(0.9))
    assert spearman(a, -b) == pytest.approx(-math.sqrt(0.9))


def test_spearman_self_reversed_constant():
    a = smooth_map()
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.full_like(a, 0.3)) == 0.0
    assert spearman(np.zeros((1, 1)), np.zeros((1, 1))) == 0.0


def test_spearman_ignores_nan_pixels():
    a = np.array([[1.0, 2.0, 3.0, np.nan]])
    b = np.array([[10.0, 20.0, 30.0, -5.0]])
    assert spearman(a, b) == pytest.approx(1.0)


def test_spearman_of_shuffled_copy_is_near_zero():
    rng = np.random.default_rng(0)
    a = rng.random((64, 64))
    shuffled = rng.permutation(a.ravel()).reshape(a.shape)
    assert abs(spearman(a, shuffled)) < 0.05


def test_spearman_refuses_different_shapes():
    with pytest.raises(ParameterError, match="agreement"):
        spearman(np.zeros((4, 4)), np.zeros((4, 5)))


def test_top_region_counts_and_breaks_ties_stably():
    values = np.array([[5.0, 1.0], [5.0, 0.0], [2.0, 5.0]])
    assert top_region(values, 0.5).tolist() == [[True, False], [True, False], [False, True]]
    assert top_region(values, 1 / 3).tolist() == [[True, False], [True, False], [False, False]]
    assert top_region(values, 0.01).sum() == 1  # at least one pixel
    assert top_region(values, 1.0).all()


def test_top_region_skips_nan_and_checks_q():
    values = np.array([[np.nan, 1.0, 2.0, 3.0]])
    assert top_region(values, 0.5).tolist() == [[False, False, True, True]]
    for q in (0, -0.1, 1.5, float("nan")):
        with pytest.raises(ParameterError):
            top_region(values, q)


def test_top_iou_hand_cases():
    a = np.array([[4.0, 3.0, 2.0, 1.0]])
    b = np.array([[1.0, 3.0, 4.0, 2.0]])
    assert top_iou(a, b, 0.5) == pytest.approx(1 / 3)  # {0, 1} vs {1, 2}
    assert top_iou(a, a, 0.5) == 1.0
    left = np.tile(np.linspace(1.0, 0.0, 10), (6, 1))
    assert top_iou(left, left[:, ::-1], 0.5) == 0.0  # disjoint halves


def test_agreement_with_itself_and_with_shuffled_copy():
    a = smooth_map()
    assert agreement(a, a) == {"spearman": pytest.approx(1.0), "top_iou": 1.0, "q": 0.2}
    rng = np.random.default_rng(1)
    noise = rng.random((64, 64))
    unrelated = agreement(noise, rng.permutation(noise.ravel()).reshape(noise.shape), q=0.3)
    assert abs(unrelated["spearman"]) < 0.05
    assert unrelated["top_iou"] < 0.35
    assert unrelated["q"] == 0.3


def test_agreement_resamples_to_the_smaller_grid():
    fine, coarse = smooth_map(64, 96), smooth_map(32, 48)
    numbers = agreement(fine, coarse)
    assert numbers["spearman"] > 0.99
    assert numbers["top_iou"] > 0.8
    assert agreement(coarse, fine)["spearman"] == pytest.approx(numbers["spearman"])


def test_stability_zero_for_identical_maps_and_hand_case():
    a = smooth_map(16, 16)
    spread, score = stability(np.stack([a, a, a]))
    assert spread.shape == (16, 16)
    assert np.all(spread == 0) and score == 0.0
    spread, score = stability([np.zeros((2, 3)), np.full((2, 3), 2.0)])
    assert np.allclose(spread, 1.0) and score == pytest.approx(1.0)
    _, single = stability([a])
    assert single == 0.0


def test_stability_resamples_maps_of_different_shapes():
    spread, score = stability([smooth_map(32, 32), smooth_map(16, 16)])
    assert spread.shape == (16, 16)
    assert 0.0 <= score < 0.05


# --------------------------------------------------------------------------- faithfulness helpers and pointing


def test_support_rank_orders_by_descending_value_with_stable_ties():
    from sensmap.metrics import support_rank

    values = np.array([[0.1, 0.5], [0.5, -1.0]])
    np.testing.assert_array_equal(support_rank(values), [[2, 0], [1, 3]])


def test_random_rank_is_a_seeded_permutation_in_blocks():
    from sensmap.metrics import random_rank

    rank = random_rank((6, 7), seed=3, block=3)
    assert sorted(rank.ravel()) == list(range(42))
    np.testing.assert_array_equal(rank, random_rank((6, 7), seed=3, block=3))
    # pixels of one 3×3 block are consecutive in the order
    block = rank[0:3, 0:3]
    assert block.max() - block.min() == 8
    assert not np.array_equal(rank, random_rank((6, 7), seed=4, block=3))


def test_step_counts_and_curve_auc():
    from sensmap.metrics import curve_auc, step_counts

    np.testing.assert_array_equal(step_counts(10, 4), [0, 2, 5, 8, 10])
    assert curve_auc([1, 1, 1]) == pytest.approx(1.0)
    assert curve_auc([1, 0]) == pytest.approx(0.5)
    assert curve_auc([0, 0, 1]) == pytest.approx(0.25)
    with pytest.raises(ParameterError):
        step_counts(10, 0)


def test_pointing_share_and_peak():
    from sensmap.metrics import pointing

    values = np.zeros((10, 10))
    values[1, 1] = 3.0
    values[8, 8] = 1.0
    values[5, 5] = -4.0  # inhibiting support is not counted
    inside = pointing(values, (0.0, 0.0, 0.5, 0.5))
    assert inside == {"share_inside": 0.75, "peak_inside": True, "box_area": 0.25}
    outside = pointing(values, (0.5, 0.5, 1.0, 1.0))
    assert outside["share_inside"] == 0.25 and outside["peak_inside"] is False
    with pytest.raises(ParameterError):
        pointing(values, (0.5, 0.5, 0.4, 1.0))
