"""Comparing sensitivity maps: rank agreement, top-region overlap and stability — numpy (and Pillow) only.

Maps are 2-D arrays of support values (any units: the metrics are scale-free, except
:func:`stability`, which returns values in the maps' own units, e.g. probability differences
0..1). Support > 0 means covering the area lowers the class score (the area supports the
class). NaN pixels (e.g. outside the network's crop on the photo grid) are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .errors import ParameterError

DEFAULT_Q = 0.2
"""Default top-region fraction: the 20 % of pixels with the highest support."""


def _as_map(values: np.ndarray, what: str = "map") -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.size == 0:
        raise ParameterError(f"the {what} must be a non-empty 2-D array, got shape {array.shape}")
    return array


def _same_shape(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_map(a, "first map"), _as_map(b, "second map")
    if a.shape != b.shape:
        raise ParameterError(f"maps differ in shape {a.shape} vs {b.shape}: use agreement(), which resamples")
    return a, b


def _check_q(q: float) -> float:
    value = float(q)
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise ParameterError(f"the top-region fraction q must lie in (0, 1], got {q!r}")
    return value


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-D array, ties sharing the mean of their ranks (as in Spearman's rho)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # 0-based rank of each distinct value's first occurrence
    return (first + (counts + 1) / 2.0)[inverse.ravel()]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (−1..1) of two maps of the same shape.

    Ties get average ranks; pixels NaN in either map are ignored. Returns 0.0 when either map
    is constant (or fewer than two pixels are valid).
    """
    a, b = _same_shape(a, b)
    valid = np.isfinite(a) & np.isfinite(b)
    if valid.sum() < 2:
        return 0.0
    ra, rb = average_ranks(a[valid]), average_ranks(b[valid])
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    if denominator == 0.0:
        return 0.0
    return float(np.clip((ra * rb).sum() / denominator, -1.0, 1.0))


def top_region(values: np.ndarray, q: float = DEFAULT_Q) -> np.ndarray:
    """Boolean mask of the top-``q`` fraction of pixels by value (highest support first).

    The region holds ``round(q · n)`` pixels (at least one) of the ``n`` non-NaN pixels; among
    equal values the earlier pixel in row-major order is taken (stable). NaN pixels are never in it.
    """
    values = _as_map(values)
    q = _check_q(q)
    flat = values.ravel()
    valid = np.flatnonzero(np.isfinite(flat))
    mask = np.zeros(flat.shape, dtype=bool)
    if valid.size:
        count = min(valid.size, max(1, int(math.floor(q * valid.size + 0.5))))
        order = np.argsort(-flat[valid], kind="stable")
        mask[valid[order[:count]]] = True
    return mask.reshape(values.shape)


def top_iou(a: np.ndarray, b: np.ndarray, q: float = DEFAULT_Q) -> float:
    """Intersection over union (0..1) of the two maps' :func:`top_region` masks (same shape)."""
    a, b = _same_shape(a, b)
    mask_a, mask_b = top_region(a, q), top_region(b, q)
    union = int((mask_a | mask_b).sum())
    return float((mask_a & mask_b).sum() / union) if union else 0.0


def resample(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map resampled to ``shape`` = ``(height, width)`` (Pillow bilinear, float32 ``F`` mode)."""
    values = _as_map(values)
    height, width = int(shape[0]), int(shape[1])
    if values.shape == (height, width):
        return values
    image = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float64)


def common_grid(maps: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The maps resampled to the smallest grid among them: ``(min height, min width)``."""
    arrays = [_as_map(m) for m in maps]
    if not arrays:
        raise ParameterError("give at least one map")
    shape = (min(m.shape[0] for m in arrays), min(m.shape[1] for m in arrays))
    return [resample(m, shape) for m in arrays]


def agreement(a: np.ndarray, b: np.ndarray, q: float = DEFAULT_Q) -> dict[str, float]:
    """How much two maps agree: ``{"spearman": −1..1, "top_iou": 0..1, "q": q}``.

    Maps of different shapes are first resampled (bilinear) to the smaller grid
    (``(min height, min width)``); both should cover the same region of the same photo.
    """
    q = _check_q(q)
    a, b = common_grid([a, b])
    return {"spearman": spearman(a, b), "top_iou": top_iou(a, b, q), "q": q}


def stability(per_size: Sequence[np.ndarray] | np.ndarray) -> tuple[np.ndarray, float]:
    """How much the map changes with the cover size: ``(spread map (H, W), mean spread)``.

    ``per_size`` holds one map per cover size (e.g. :attr:`SensitivityResult.per_size`); maps of
    different shapes are resampled to the smallest grid. The spread is the per-pixel population
    standard deviation across sizes, in the maps' units (e.g. probability difference; ×100 for
    percentage points); both are 0 for identical maps. NaN pixels are ignored in the mean.
    """
    maps = np.stack(common_grid(list(per_size)))
    spread = (maps - maps[0]).std(axis=0)  # shifted by the first map: exactly 0 where all maps agree
    finite = spread[np.isfinite(spread)]
    return spread, float(finite.mean()) if finite.size else 0.0


# --------------------------------------------------------------------------- faithfulness and pointing


def support_rank(values: np.ndarray) -> np.ndarray:
    """``(H, W)`` rank of each pixel by descending value (0 = strongest support); ties in row order."""
    values = _as_map(values)
    order = np.argsort(-np.nan_to_num(values, nan=-np.inf).ravel(), kind="stable")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return rank.reshape(values.shape)


def random_rank(shape: tuple[int, int], seed: int, block: int = 1) -> np.ndarray:
    """A seeded random ``(H, W)`` pixel ranking in square blocks of ``block`` px (the baseline order).

    Blocks come in random order, pixels inside a block together: removing scattered single pixels
    destroys a photo far faster than removing the same number of pixels in patches, so the baseline
    uses patches as coarse as the map's finest cover for an apples-to-apples comparison.
    """
    height, width = shape
    block = max(1, int(block))
    rows, cols = -(-height // block), -(-width // block)
    priority = np.random.default_rng(seed).permutation(rows * cols).reshape(rows, cols)
    per_pixel = np.repeat(np.repeat(priority, block, axis=0), block, axis=1)[:height, :width]
    return support_rank(-per_pixel.astype(np.float64))


def step_counts(pixels: int, steps: int) -> np.ndarray:
    """Pixel counts ``0 … pixels`` in ``steps`` equal steps (``steps + 1`` values)."""
    if int(steps) < 1:
        raise ParameterError(f"steps must be at least 1, got {steps!r}")
    return np.round(np.linspace(0, pixels, int(steps) + 1)).astype(np.int64)


def faithfulness_passes(steps: int, random_orders: int) -> int:
    """Forward passes of a faithfulness check: deletion and insertion, ``steps + 1`` points, map order plus
    ``random_orders`` random orders: ``2 · (steps + 1) · (1 + random_orders)``."""
    return 2 * (int(steps) + 1) * (1 + int(random_orders))


def curve_auc(curve: Sequence[float] | np.ndarray) -> float:
    """Area under a curve sampled at equal steps over the fraction 0..1 (trapezoid rule).

    For probability curves the area lies in [0, 1].
    """
    values = np.asarray(curve, dtype=np.float64)
    if values.size < 2:
        raise ParameterError("a curve needs at least two points")
    return float(np.sum((values[1:] + values[:-1]) / 2) / (values.size - 1))


def pointing(values: np.ndarray, box: tuple[float, float, float, float]) -> dict[str, float | bool]:
    """Pointing check of a map against a box ``(y0, x0, y1, x1)`` in fractions of the map.

    Returns ``share_inside`` (the share of positive support inside the box, 0..1), ``peak_inside``
    (whether the strongest pixel lies in it) and ``box_area`` (the box's share of the map, the share a
    map spread evenly would get).
    """
    values = _as_map(values)
    height, width = values.shape
    y0, x0, y1, x1 = (float(v) for v in box)
    if not (0 <= y0 < y1 <= 1 and 0 <= x0 < x1 <= 1):
        raise ParameterError(f"a box needs 0 ≤ y0 < y1 ≤ 1 and 0 ≤ x0 < x1 ≤ 1 (fractions), got {box!r}")
    inside = np.zeros(values.shape, dtype=bool)
    rows = slice(int(np.floor(y0 * height)), max(int(np.floor(y0 * height)) + 1, int(np.ceil(y1 * height))))
    cols = slice(int(np.floor(x0 * width)), max(int(np.floor(x0 * width)) + 1, int(np.ceil(x1 * width))))
    inside[rows, cols] = True
    positive = np.clip(np.nan_to_num(values, nan=0.0), 0, None)
    total = positive.sum()
    peak = np.unravel_index(np.nanargmax(values), values.shape)
    return {
        "share_inside": float(positive[inside].sum() / total) if total > 0 else 0.0,
        "peak_inside": bool(inside[peak]),
        "box_area": float(inside.mean()),
    }
