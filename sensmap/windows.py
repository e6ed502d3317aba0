"""Cover ("window") geometry and per-pixel aggregation — plain numpy, no TensorFlow.

Conventions
-----------
* Sizes and strides given by users are **fractions**: a cover size ``f`` is a
  fraction of the image side (0 < f <= 1), a stride is a fraction of the window
  side (> 0).
* Pixel geometry is in pixels of the network input grid (H rows × W columns).
* Per axis of length ``S`` and cover size ``f``:
  window ``k = max(1, floor(f·S + 0.5))``, stride ``t = max(1, floor(k·stride + 0.5))``,
  starts ``unique(concat(arange(0, S−k+1, t), [S−k]))`` — every window is full-size,
  the last one is flush with the border, every pixel is covered at least once.
* Boxes are ``(y0, x0, y1, x1)`` half-open pixel ranges, rows first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ParameterError

DEFAULT_SIZES: tuple[float, ...] = (0.5, 0.25, 0.125)
DEFAULT_STRIDE: float = 0.5


def _round_half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def window_length(fraction: float, side: int) -> int:
    """Window length in pixels for a cover ``fraction`` of an axis of ``side`` pixels."""
    return max(1, _round_half_up(fraction * side))


def stride_length(window: int, stride: float) -> int:
    """Stride in pixels for a window of ``window`` pixels and a ``stride`` fraction of it."""
    return max(1, _round_half_up(window * stride))


def window_starts(side: int, window: int, step: int) -> np.ndarray:
    """Start offsets (pixels) of full-size windows along one axis, last flush with the end."""
    if window > side:
        raise ParameterError(f"window of {window} px does not fit an axis of {side} px")
    return np.unique(np.concatenate([np.arange(0, side - window + 1, step), [side - window]])).astype(np.int64)


def validate_sizes(sizes: Sequence[float]) -> tuple[float, ...]:
    """Check cover sizes (fractions of the image side, 0 < f <= 1) and return them as a tuple."""
    if isinstance(sizes, (int, float)):
        sizes = (sizes,)
    try:
        values = tuple(float(s) for s in sizes)
    except (TypeError, ValueError):
        raise ParameterError(f"cover sizes must be numbers (fractions of the image side), got {sizes!r}") from None
    if not values:
        raise ParameterError("give at least one cover size, e.g. 0.25 (a quarter of the image side)")
    for value in values:
        if not math.isfinite(value) or value <= 0 or value > 1:
            raise ParameterError(
                f"cover size {value:g} is out of range: use a fraction of the image side "
                "greater than 0 and at most 1 (e.g. 0.5, 0.25, 0.125)"
            )
    return values


def validate_stride(stride: float) -> float:
    """Check a stride (fraction of the window side, > 0) and return it as a float."""
    try:
        value = float(stride)
    except (TypeError, ValueError):
        raise ParameterError(f"stride must be a number (a fraction of the window side), got {stride!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ParameterError(
            f"stride {value:g} is out of range: use a fraction of the window side greater than 0 "
            "(0.5 = windows overlap by half, 1 = side by side)"
        )
    return value


@dataclass(frozen=True)
class WindowGrid:
    """All cover positions of one cover size on an H×W grid."""

    size: float  # cover size, fraction of the image side
    stride: float  # stride, fraction of the window side
    height: int
    width: int
    window_y: int  # window height in pixels
    window_x: int  # window width in pixels
    step_y: int
    step_x: int
    starts_y: np.ndarray
    starts_x: np.ndarray

    @property
    def count(self) -> int:
        """Number of windows (= forward passes) of this size."""
        return int(self.starts_y.size * self.starts_x.size)

    @property
    def boxes(self) -> np.ndarray:
        """``(count, 4)`` int64 array of ``(y0, x0, y1, x1)``, rows outer, columns inner."""
        yy, xx = np.meshgrid(self.starts_y, self.starts_x, indexing="ij")
        y0 = yy.ravel()
        x0 = xx.ravel()
        return np.stack([y0, x0, y0 + self.window_y, x0 + self.window_x], axis=1).astype(np.int64)

    def coverage(self) -> np.ndarray:
        """``(H, W)`` int array: how many windows of this size cover each pixel (always >= 1)."""
        return (
            _axis_coverage(self.starts_y, self.window_y, self.height)[:, None]
            * _axis_coverage(self.starts_x, self.window_x, self.width)[None, :]
        )

    def aggregate(self, values: np.ndarray) -> np.ndarray:
        """Per-pixel mean of ``values`` (one per window, in :attr:`boxes` order) over covering windows.

        Returns a float64 ``(H, W)`` map in the units of ``values``.
        """
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (self.count,):
            raise ParameterError(f"expected {self.count} window values, got shape {values.shape}")
        grid = values.reshape(self.starts_y.size, self.starts_x.size)
        rows = _axis_membership(self.starts_y, self.window_y, self.height)  # (H, ny)
        cols = _axis_membership(self.starts_x, self.window_x, self.width)  # (W, nx)
        total = rows @ grid @ cols.T
        return total / self.coverage()

    def window_index_map(self, order: np.ndarray) -> np.ndarray:
        """Per pixel, the index of the covering window that ranks first in ``order``.

        ``order`` is a ranking key per window (higher wins). Returns an ``(H, W)`` int map of
        window indices (in :attr:`boxes` order).
        """
        order = np.asarray(order, dtype=np.float64)
        best_key = np.full((self.height, self.width), -np.inf)
        best_index = np.zeros((self.height, self.width), dtype=np.int64)
        for index, (y0, x0, y1, x1) in enumerate(self.boxes):
            region = best_key[y0:y1, x0:x1]
            better = order[index] > region
            region[better] = order[index]
            best_index[y0:y1, x0:x1][better] = index
        return best_index


def _axis_membership(starts: np.ndarray, window: int, side: int) -> np.ndarray:
    pixels = np.arange(side)[:, None]
    return ((pixels >= starts[None, :]) & (pixels < starts[None, :] + window)).astype(np.float64)


def _axis_coverage(starts: np.ndarray, window: int, side: int) -> np.ndarray:
    return _axis_membership(starts, window, side).sum(axis=1).astype(np.int64)


def window_grid(height: int, width: int, size: float, stride: float = DEFAULT_STRIDE) -> WindowGrid:
    """Geometry of one cover size on an ``height × width`` grid (see the module docstring)."""
    (size,) = validate_sizes((size,))
    stride = validate_stride(stride)
    if height < 1 or width < 1:
        raise ParameterError(f"image grid must be at least 1×1 pixels, got {height}×{width}")
    window_y = window_length(size, height)
    window_x = window_length(size, width)
    step_y = stride_length(window_y, stride)
    step_x = stride_length(window_x, stride)
    return WindowGrid(
        size=size,
        stride=stride,
        height=height,
        width=width,
        window_y=window_y,
        window_x=window_x,
        step_y=step_y,
        step_x=step_x,
        starts_y=window_starts(height, window_y, step_y),
        starts_x=window_starts(width, window_x, step_x),
    )


def window_grids(
    height: int, width: int, sizes: Sequence[float] = DEFAULT_SIZES, stride: float = DEFAULT_STRIDE
) -> list[WindowGrid]:
    """One :class:`WindowGrid` per cover size, in the order given."""
    return [window_grid(height, width, size, stride) for size in validate_sizes(sizes)]


def count_passes(
    height: int, width: int, sizes: Sequence[float] = DEFAULT_SIZES, stride: float = DEFAULT_STRIDE
) -> int:
    """Forward passes (occluded inputs) a map needs, not counting the one unoccluded reference pass."""
    return sum(grid.count for grid in window_grids(height, width, sizes, stride))


def cheaper_stride_for_budget(
    height: int, width: int, sizes: Sequence[float], stride: float, budget: int
) -> float | None:
    """The smallest stride (in 0.05 steps up to 1.0) at or above ``stride`` whose map fits ``budget`` passes."""
    candidate = max(stride, 0.05)
    while candidate <= 1.0 + 1e-9:
        if count_passes(height, width, sizes, candidate) <= budget:
            return round(candidate, 2)
        candidate += 0.05
    return None
