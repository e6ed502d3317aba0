"""Exact tests of cover geometry and aggregation (pure numpy)."""

import numpy as np
import pytest

from sensmap.errors import ParameterError
from sensmap.windows import (
    cheaper_stride_for_budget,
    count_passes,
    stride_length,
    window_grid,
    window_grids,
    window_length,
    window_starts,
)


@pytest.mark.parametrize("side", [128, 160, 192, 224, 299])
def test_default_map_is_283_passes_at_usual_sizes(side):
    assert count_passes(side, side) == 283
    assert [g.count for g in window_grids(side, side)] == [9, 49, 225]


def test_window_and_stride_rounding_half_up():
    assert window_length(0.5, 299) == 150  # 149.5 rounds up
    assert window_length(0.25, 299) == 75  # 74.75
    assert window_length(0.125, 299) == 37  # 37.375
    assert stride_length(75, 0.5) == 38  # 37.5 rounds up
    assert stride_length(37, 0.5) == 19  # 18.5
    assert window_length(0.001, 10) == 1  # never below one pixel
    assert stride_length(1, 0.1) == 1


def test_window_starts_last_flush_and_unique():
    np.testing.assert_array_equal(window_starts(299, 150, 75), [0, 75, 149])
    np.testing.assert_array_equal(window_starts(299, 75, 38), [0, 38, 76, 114, 152, 190, 224])
    np.testing.assert_array_equal(window_starts(224, 56, 28), [0, 28, 56, 84, 112, 140, 168])
    np.testing.assert_array_equal(window_starts(10, 10, 5), [0])  # k = S: one window
    np.testing.assert_array_equal(window_starts(10, 3, 7), [0, 7])  # stride > window: last flush


def test_stride_larger_than_window_still_covers_every_pixel():
    grid = window_grid(10, 10, 0.3, stride=2.5)  # k=3, t=8
    assert grid.window_y == 3 and grid.step_y == 8
    np.testing.assert_array_equal(grid.starts_y, [0, 7])
    coverage = grid.coverage()
    assert coverage.min() >= 0
    # gaps are allowed between windows when stride > window; pixels in gaps have coverage 0
    assert coverage[0, 0] == 1 and coverage[9, 9] == 1


def test_full_size_cover_is_one_window():
    grid = window_grid(7, 5, 1.0)
    assert grid.count == 1
    np.testing.assert_array_equal(grid.boxes, [[0, 0, 7, 5]])


def test_one_pixel_windows_cover_each_pixel_once():
    grid = window_grid(3, 4, 0.01, stride=1.0)
    assert (grid.window_y, grid.window_x) == (1, 1)
    assert grid.count == 12
    np.testing.assert_array_equal(grid.coverage(), np.ones((3, 4)))
    values = np.arange(12, dtype=float)
    np.testing.assert_array_equal(grid.aggregate(values), values.reshape(3, 4))


def test_non_square_grid_per_axis_geometry():
    grid = window_grid(33, 57, 0.25)
    assert (grid.window_y, grid.window_x) == (8, 14)
    assert (grid.step_y, grid.step_x) == (4, 7)
    assert grid.starts_y[-1] == 33 - 8 and grid.starts_x[-1] == 57 - 14
    assert grid.count == grid.starts_y.size * grid.starts_x.size
    assert grid.boxes.shape == (grid.count, 4)


def test_boxes_order_rows_outer_columns_inner():
    grid = window_grid(4, 4, 0.5, stride=1.0)
    np.testing.assert_array_equal(grid.boxes, [[0, 0, 2, 2], [0, 2, 2, 4], [2, 0, 4, 2], [2, 2, 4, 4]])


def test_aggregate_is_mean_over_covering_windows_brute_force():
    rng = np.random.default_rng(1)
    for height, width, size, stride in [(13, 9, 0.4, 0.5), (5, 17, 0.3, 0.34), (1, 1, 1.0, 0.5), (3, 3, 0.5, 0.5)]:
        grid = window_grid(height, width, size, stride)
        values = rng.normal(size=grid.count)
        total = np.zeros((height, width))
        count = np.zeros((height, width))
        for value, (y0, x0, y1, x1) in zip(values, grid.boxes, strict=False):
            total[y0:y1, x0:x1] += value
            count[y0:y1, x0:x1] += 1
        np.testing.assert_array_equal(grid.coverage(), count)
        np.testing.assert_allclose(grid.aggregate(values), total / count, rtol=1e-12, atol=1e-12)


def test_window_index_map_picks_highest_key():
    grid = window_grid(4, 4, 0.5, stride=0.5)  # 3×3 windows of 2×2, step 1
    keys = np.zeros(grid.count)
    keys[4] = 5.0  # centre window (1..3, 1..3)
    index = grid.window_index_map(keys)
    assert (index[1:3, 1:3] == 4).all()


@pytest.mark.parametrize("sizes", [(), (0,), (-0.1,), (1.5,), (float("nan"),), ("a",)])
def test_bad_sizes_are_clear_errors(sizes):
    with pytest.raises(ParameterError):
        window_grids(10, 10, sizes)


@pytest.mark.parametrize("stride", [0, -1, float("inf"), "x"])
def test_bad_stride_is_a_clear_error(stride):
    with pytest.raises(ParameterError, match="stride"):
        window_grids(10, 10, (0.5,), stride)


def test_cheaper_stride_for_budget():
    fine = count_passes(224, 224, (0.25, 0.125, 0.0625), 0.5)
    assert fine == 1235
    cheaper = cheaper_stride_for_budget(224, 224, (0.25, 0.125, 0.0625), 0.5, 500)
    assert cheaper is not None and count_passes(224, 224, (0.25, 0.125, 0.0625), cheaper) <= 500
