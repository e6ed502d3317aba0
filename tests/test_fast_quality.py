"""benchmarks/fast_quality.py: its cached-run slicing and its simulation of the engine's fast runs (numpy only)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from conftest import REPO

from sensmap.fast import FastPlan
from sensmap.result import support_maps
from sensmap.windows import window_grids

sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmark's own helpers import as top-level modules
_spec = importlib.util.spec_from_file_location("fast_quality", REPO / "benchmarks" / "fast_quality.py")
fast_quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fast_quality)


@pytest.mark.parametrize("side", [224, 128, 37])
@pytest.mark.parametrize("name", sorted(fast_quality.MAPS))
def test_map_rows_pick_each_maps_windows_from_the_cached_run(side: int, name: str) -> None:
    sizes = fast_quality.MAPS[name]
    cached = np.concatenate([g.boxes for g in window_grids(side, side, fast_quality.CACHE_SIZES, fast_quality.STRIDE)])
    wanted = np.concatenate([g.boxes for g in window_grids(side, side, sizes, fast_quality.STRIDE)])
    rows = fast_quality.map_rows(side, sizes)
    np.testing.assert_array_equal(cached[rows], wanted)


def test_detailed_map_has_1244_windows_at_224_px() -> None:
    assert fast_quality.map_rows(224, fast_quality.MAPS["detailed"]).size == 1244
    assert fast_quality.map_rows(224, fast_quality.MAPS["default"]).size == 283


def _cached_run(grids: list, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Outputs (windows, classes) and reference probabilities of a made-up exact run: smooth drops."""
    boxes = np.concatenate([g.boxes for g in grids]).astype(float)
    cy, cx = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    height, width = grids[0].height, grids[0].width
    drops = [
        0.3 * np.exp(-((cy / height - 0.3 - 0.1 * k) ** 2 + (cx / width - 0.6) ** 2) / 0.05) for k in range(classes)
    ]
    reference = np.linspace(0.6, 0.1, classes)
    return reference[None, :] - np.stack(drops, axis=1), reference


def test_simulation_with_every_window_measured_is_the_exact_map() -> None:
    grids = window_grids(37, 53, (0.5, 0.25, 0.125), 0.5)
    outputs, reference = _cached_run(grids)
    approx, plan, _ = fast_quality.simulate(outputs, reference, 1, grids, 1.0)
    assert plan.passes == sum(g.count for g in grids) and plan.measured.all()
    np.testing.assert_allclose(approx, support_maps(reference[1] - outputs[:, 1], grids).mean(axis=0), atol=1e-12)


def test_simulation_sees_only_the_windows_the_plan_asked_for() -> None:
    """Garbage in the windows the plan did not measure changes nothing: the simulated run is a fast run."""
    grids = window_grids(48, 40, (0.5, 0.25, 0.125, 0.0625), 0.5)
    outputs, reference = _cached_run(grids)
    approx, plan, _ = fast_quality.simulate(outputs, reference, 0, grids, 3.0)
    assert plan.passes == FastPlan(grids, speedup=3.0).budget <= sum(g.count for g in grids) / 3
    assert not plan.measured.all()
    garbage = np.where(plan.measured[:, None], outputs, 1e6)
    again, again_plan, _ = fast_quality.simulate(garbage, reference, 0, grids, 3.0)
    np.testing.assert_array_equal(again_plan.measured, plan.measured)
    np.testing.assert_array_equal(again, approx)
    assert np.isfinite(approx).all() and approx.shape == (48, 40)
