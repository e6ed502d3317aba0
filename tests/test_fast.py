"""Fast mode (adaptive drill-down) schedule and fill: pure numpy, no network."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sensmap.errors import ParameterError
from sensmap.fast import BETA_PRIOR, SSIM_WINDOW, TOP_FRACTION, TOP_K3, TOP_WEIGHT, FastPlan, pixel_weights
from sensmap.result import support_maps
from sensmap.windows import WindowGrid, window_grids

FINE = (0.25, 0.125, 0.0625)


def _run(grids: list[WindowGrid], values: np.ndarray, speedup: float = 3.0) -> tuple[FastPlan, list[np.ndarray]]:
    """Drive a plan with ``values`` as the measured target support; returns the plan and its batches."""
    plan = FastPlan(grids, speedup=speedup)
    batches = []
    while (indices := plan.next_windows()) is not None:
        batches.append(indices)
        plan.record(indices, values[indices])
    return plan, batches


def _total(grids: list[WindowGrid]) -> int:
    return sum(grid.count for grid in grids)


def _box_average_field(grids: list[WindowGrid], field: np.ndarray) -> np.ndarray:
    """Support of every window = mean of a per-pixel ``field`` over its box (an additive occluder)."""
    integral = np.zeros((field.shape[0] + 1, field.shape[1] + 1))
    integral[1:, 1:] = field.cumsum(0).cumsum(1)
    values = []
    for grid in grids:
        y0, x0, y1, x1 = grid.boxes.T
        box_sum = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        values.append(box_sum / ((y1 - y0) * (x1 - x0)))
    return np.concatenate(values)


def _smooth_field(height: int, width: int) -> np.ndarray:
    """A supporting blob and a weaker inhibiting one (support, probability points)."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    blob = 0.6 * np.exp(-((y - 0.4) ** 2 + (x - 0.55) ** 2) / 0.02)
    return blob - 0.2 * np.exp(-((y - 0.8) ** 2 + (x - 0.2) ** 2) / 0.03)


# --------------------------------------------------------------------------- exact when everything is measured
@pytest.mark.parametrize(
    ("sizes", "speedup"),
    [(FINE, 1.0), ((0.25,), 3.0), ((0.5, 0.25), 1.0)],
)
def test_everything_measured_is_exact(sizes: tuple[float, ...], speedup: float) -> None:
    grids = window_grids(32, 48, sizes, 0.5)
    values = np.random.default_rng(1).normal(size=(_total(grids), 5))
    plan, batches = _run(grids, values[:, 0], speedup)
    assert len(batches) == 1 and plan.measured.all() and plan.passes == _total(grids)
    assert plan.next_windows() is None
    np.testing.assert_array_equal(plan.fill(values), values)


def test_measured_rows_unchanged_and_unmeasured_input_ignored() -> None:
    grids = window_grids(48, 56, FINE, 0.5)
    values = np.random.default_rng(2).normal(size=(_total(grids), 7))
    plan, _ = _run(grids, values[:, 3])
    measured = plan.measured
    assert 0 < measured.sum() < measured.size
    seen = np.where(measured[:, None], values, np.nan)
    filled = plan.fill(seen)
    assert filled.shape == values.shape and np.isfinite(filled).all()
    np.testing.assert_array_equal(filled[measured], values[measured])
    # garbage in unmeasured rows changes nothing; a 1-D input gives the same column back, 1-D
    np.testing.assert_array_equal(plan.fill(np.where(measured[:, None], values, 1e9)), filled)
    np.testing.assert_allclose(plan.fill(seen[:, 3]), filled[:, 3], rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- budget and schedule
@pytest.mark.parametrize(
    ("height", "width", "sizes", "stride", "speedup"),
    [
        (100, 150, (0.25, 0.125), 0.5, 3.0),
        (37, 53, (0.3, 0.1), 0.5, 2.5),
        (64, 64, (0.5, 0.25, 0.125), 0.5, 4.0),
        (48, 40, (0.0625, 0.25, 0.125), 0.5, 3.0),  # sizes in any order
        (64, 64, FINE, 1.0, 3.0),
    ],
)
def test_pass_count_within_budget(height: int, width: int, sizes: tuple, stride: float, speedup: float) -> None:
    grids = window_grids(height, width, sizes, stride)
    total = _total(grids)
    plan, batches = _run(grids, np.random.default_rng(3).normal(size=total), speedup)
    assert plan.passes == plan.budget == math.floor(total / speedup)
    all_indices = np.concatenate(batches)
    assert np.unique(all_indices).size == all_indices.size  # no window measured twice
    coarsest = max(range(len(grids)), key=lambda i: grids[i].window_y * grids[i].window_x)
    offset = sum(g.count for g in grids[:coarsest])
    assert plan.measured[offset : offset + grids[coarsest].count].all()  # every coarsest window


def test_fine_map_keeps_coarser_sizes_exact() -> None:
    grids = window_grids(224, 224, FINE, 0.5)  # 49 + 225 + 961 windows, the benchmark's fine map
    plan, batches = _run(grids, np.random.default_rng(4).normal(size=_total(grids)))
    assert plan.passes == 411 == math.floor(1235 / 3) and plan.measured[:274].all()
    assert batches[0].size == 274 and 2 <= len(batches) <= 5


def test_deterministic() -> None:
    grids = window_grids(48, 64, FINE, 0.5)
    values = _box_average_field(grids, _smooth_field(48, 64)) + np.random.default_rng(5).normal(0, 0.01, _total(grids))
    plan_a, batches_a = _run(grids, values)
    plan_b, batches_b = _run(grids, values)
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(plan_a.fill(values), plan_b.fill(values))


@pytest.mark.parametrize(
    ("height", "width", "sizes"),
    [(8, 8, FINE), (1, 1, (0.5, 0.2)), (50, 75, FINE), (224, 224, (0.5, 1.0)), (9, 13, (0.5, 0.34, 0.2))],
)
def test_odd_tiny_and_single_window_grids(height: int, width: int, sizes: tuple) -> None:
    grids = window_grids(height, width, sizes, 0.5)
    values = np.random.default_rng(6).normal(size=(_total(grids), 3))
    plan, _ = _run(grids, values[:, 0])
    filled = plan.fill(np.where(plan.measured[:, None], values, np.nan))
    assert np.isfinite(filled).all()
    np.testing.assert_array_equal(filled[plan.measured], values[plan.measured])
    assert support_maps(filled[:, 0], grids).shape == (len(grids), height, width)


# --------------------------------------------------------------------------- prediction quality
def test_fill_exact_when_finer_sizes_follow_the_model() -> None:
    """If each finer size is exactly BETA_PRIOR × the next coarser map averaged over its boxes, the
    calibration recovers it with zero residual (the ridge prior is then unbiased): fill is exact."""
    height, width = 96, 80
    grids = window_grids(height, width, FINE, 0.5)
    rng = np.random.default_rng(7)
    values = [rng.normal(size=grids[0].count)]
    for coarse, fine in zip(grids[:-1], grids[1:], strict=True):
        coarse_map = coarse.aggregate(values[-1])
        values.append(BETA_PRIOR * _box_average_field([fine], coarse_map))
    truth = np.concatenate(values)
    plan, _ = _run(grids, truth)
    assert not plan.measured.all()
    np.testing.assert_allclose(plan.fill(np.where(plan.measured, truth, np.nan)), truth, rtol=0, atol=1e-9)


def test_smooth_field_small_error() -> None:
    """An additive occluder over a smooth field (a window's support = the field's mean over it): with a
    third of the passes the fast map stays within 5 % of the exact map's range (1 % on average)."""
    height, width = 48, 64
    grids = window_grids(height, width, FINE, 0.5)
    truth = _box_average_field(grids, _smooth_field(height, width))
    plan, _ = _run(grids, truth)
    assert plan.passes <= _total(grids) / 3
    exact = support_maps(truth, grids).mean(axis=0)
    fast = support_maps(plan.fill(np.where(plan.measured, truth, np.nan)), grids).mean(axis=0)
    span = exact.max() - exact.min()
    assert np.abs(fast - exact).max() <= 0.05 * span
    assert np.abs(fast - exact).mean() <= 0.01 * span


# --------------------------------------------------------------------------- misuse
def test_misuse_is_refused() -> None:
    grids = window_grids(32, 32, FINE, 0.5)
    with pytest.raises(ParameterError):
        FastPlan(grids, speedup=0.5)
    with pytest.raises(ParameterError):
        FastPlan([])
    plan = FastPlan(grids)
    first = plan.next_windows()
    with pytest.raises(ParameterError):
        plan.next_windows()  # the first batch is not recorded yet
    with pytest.raises(ParameterError):
        plan.record(first, np.zeros(first.size + 1))
    with pytest.raises(ParameterError):
        plan.record(np.array([_total(grids) - 1]), np.zeros(1))  # not handed out
    with pytest.raises(ParameterError):
        plan.record(first, np.full(first.size, np.nan))
    plan.record(first, np.zeros(first.size))
    with pytest.raises(ParameterError):
        plan.fill(np.zeros((_total(grids) + 1, 2)))


def test_pixel_weights_leave_out_ssim_border() -> None:
    """SSIM's mean leaves out a border of SSIM_WINDOW // 2 pixels: there only the top-region term counts."""
    support = np.random.default_rng(8).normal(size=(40, 50))
    weights = pixel_weights(support)
    pad = SSIM_WINDOW // 2
    span = support.max() - support.min()
    threshold = np.quantile(support, 1.0 - TOP_FRACTION)
    top_term = TOP_WEIGHT / ((support - threshold) ** 2 + (TOP_K3 * span) ** 2)
    border = np.ones(support.shape, dtype=bool)
    border[pad:-pad, pad:-pad] = False
    np.testing.assert_allclose(weights[border], top_term[border])
    assert (weights[~border] > top_term[~border]).all()


def test_default_speedup_is_lower_for_tiny_finest_covers():
    from sensmap.fast import DEFAULT_SPEEDUP, SMALL_COVER_SPEEDUP, default_speedup
    from sensmap.windows import window_grids

    fine = (0.25, 0.125, 0.0625)
    assert default_speedup(window_grids(224, 224, fine, 0.5)) == DEFAULT_SPEEDUP  # finest cover 14 px
    assert default_speedup(window_grids(128, 128, fine, 0.5)) == SMALL_COVER_SPEEDUP  # 8 px
    assert default_speedup(window_grids(128, 128, (0.5, 0.25), 0.5)) == DEFAULT_SPEEDUP  # 32 px
    assert default_speedup(window_grids(300, 100, fine, 0.5)) == SMALL_COVER_SPEEDUP  # 19 × 6 px


def test_first_windows_are_whole_coarse_sizes_then_rounds_refine_the_finest() -> None:
    """How the engine drives a plan (one per map, either engine): its partial maps show the coarse sizes one by one
    from the first batch (every window of them), then one map per later round (finer sizes partly measured)."""
    grids = window_grids(40, 56, (0.5, 0.25, 0.125, 0.0625), 0.5)
    values = _box_average_field(grids, _smooth_field(40, 56))
    plan, batches = _run(grids, values)
    offsets = np.cumsum([0] + [grid.count for grid in grids])
    first = set(batches[0].tolist())
    whole = [i for i in range(len(grids)) if set(range(offsets[i], offsets[i + 1])) <= first]
    assert whole == list(range(len(whole))) and whole  # the coarsest sizes, completely
    assert first == set(range(offsets[len(whole)]))  # and nothing else
    for batch in batches[1:]:
        assert batch.min() >= offsets[len(whole)]  # later rounds only refine the finer sizes
    assert len(batches) > 1 and plan.passes == sum(len(b) for b in batches)
