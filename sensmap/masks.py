"""RISE masks and their aggregation — plain numpy, no TensorFlow (the engine part is :mod:`sensmap.methods.rise`).

Mask geometry (Petsiuk et al. 2018): a ``grid × grid`` random binary grid (each cell kept, i.e. showing the
photo, with probability ``p``) is stretched bilinearly to ``grid + 1`` cells of ``ceil(H / grid) × ceil(W / grid)``
pixels (the resampling every map is shown with, :func:`sensmap.images.resize_maps`) and cropped to the
``H × W`` network grid at a random shift of less than one cell. Cells follow the grid's aspect, as cover
sizes do (fractions of each side). Values are 0..1: 1 keeps the photo, 0 shows the fill.

Aggregation (:class:`MaskSums`): with ``f_i`` the target's score on masked image ``i`` and ``m_i(x)`` its mask,
``support(x) = Σ f_i m_i(x) / Σ m_i(x) − Σ f_i (1 − m_i(x)) / Σ (1 − m_i(x))``: the mean score where the pixel
was kept minus the mean score where it was covered — the expected score drop when it is covered, in the
score's units (probability difference; ×100 for percentage points), > 0 where the area supports the class.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import ParameterError
from .images import resize_maps

DEFAULT_MASKS = 1000
"""Masks (forward passes) of a RISE map by default."""
DEFAULT_GRID = 7
"""Cells of the random grid per side by default (Petsiuk et al.: 7 on 224-px networks)."""
DEFAULT_P = 0.5
"""Probability that a grid cell is kept (shows the photo) by default."""


def whole_number(value: Any, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``low..high``, else a :class:`ParameterError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ParameterError(f"{name} must be a whole number ≥ {low}, got {value!r}")
    if high is not None and value > high:
        raise ParameterError(f"{name} must be at most {high} here, got {value!r}")
    return int(value)


def rise_passes(masks: int = DEFAULT_MASKS) -> int:
    """Forward passes of a RISE map with ``masks`` masks (one per mask; the reference pass not counted)."""
    return whole_number(masks, "the number of masks", 1)


def check_p(p: float) -> float:
    """The share of kept cells, checked to lie in (0, 1)."""
    value = float(p)
    if not math.isfinite(value) or not 0.0 < value < 1.0:
        raise ParameterError(f"p (the share of each mask that keeps the photo) must lie in (0, 1), got {p!r}")
    return value


def mask_cell(size: tuple[int, int], grid: int) -> tuple[int, int]:
    """``(rows, cols)`` pixels of one grid cell of a mask on an ``(H, W)`` network grid: ``ceil(side / grid)``."""
    return -(-int(size[0]) // grid), -(-int(size[1]) // grid)


def rise_masks(rng: np.random.Generator, count: int, size: tuple[int, int], grid: int, p: float) -> np.ndarray:
    """The next ``count`` masks ``(count, H, W)`` float32 in 0..1 (1 = keep the photo) from ``rng``.

    Each mask uses ``grid² + 2`` uniforms in turn (its cells, then its row and column shift), so drawing masks
    in batches of any size gives the same masks.
    """
    height, width = size
    cell_y, cell_x = mask_cell(size, grid)
    uniforms = rng.random((count, grid * grid + 2))
    cells = (uniforms[:, : grid * grid] < p).astype(np.float32).reshape(count, grid, grid)
    stretched = resize_maps(cells, ((grid + 1) * cell_y, (grid + 1) * cell_x))
    shift_y = np.floor(uniforms[:, -2] * cell_y).astype(np.int64)
    shift_x = np.floor(uniforms[:, -1] * cell_x).astype(np.int64)
    rows = shift_y[:, None, None] + np.arange(height)[None, :, None]
    cols = shift_x[:, None, None] + np.arange(width)[None, None, :]
    return stretched[np.arange(count)[:, None, None], rows, cols]


class MaskSums:
    """Running sums of one RISE map over batches: ``Σ f m`` and ``Σ m`` per pixel, ``Σ f`` and the count (float64)."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.kept = np.zeros(size)
        self.weight = np.zeros(size)
        self.total = 0.0
        self.count = 0

    def add(self, scores: np.ndarray, masks: np.ndarray) -> None:
        """Add a batch: ``scores (B,)`` of the masked images and their ``masks (B, H, W)``."""
        scores = np.asarray(scores, dtype=np.float64)
        masks = np.asarray(masks, dtype=np.float64)
        self.kept += np.tensordot(scores, masks, axes=1)
        self.weight += masks.sum(axis=0)
        self.total += float(scores.sum())
        self.count += len(scores)

    def support(self) -> np.ndarray:
        """``(H, W)``: mean score where kept minus mean score where covered (0 where either never happened)."""
        covered = self.count - self.weight
        valid = (self.weight > 0) & (covered > 0)
        kept_mean = np.divide(self.kept, self.weight, out=np.zeros_like(self.kept), where=valid)
        covered_mean = np.divide(self.total - self.kept, covered, out=np.zeros_like(self.kept), where=valid)
        return kept_mean - covered_mean
