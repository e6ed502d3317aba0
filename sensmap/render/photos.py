"""Photos and maps for display: downscaled pixels, network-grid maps resampled onto the photo, boxes and peaks
in photo pixels, cover-size titles (numpy and Pillow, no Plotly)."""

from __future__ import annotations

import base64
import io
from fractions import Fraction

import numpy as np
from PIL import Image

from ..images import LoadedImage, box_on_grid, fit_box, load_image, map_to_photo
from ..result import SensitivityResult
from .colours import plain

PHOTO_MAX_SIDE = 1024
PHOTO_JPEG_QUALITY = 90
HEATMAP_MAX_SIDE = 192
"""Long side (cells) of maps drawn over a photo; hover labels carry one string per cell."""
PANEL_MAX_SIDE = 128
"""Long side (cells) of the per-size and label-flip maps."""


# --------------------------------------------------------------------------- grids


def fit_within(shape: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``(height, width)`` scaled down (never up) so the long side is at most ``max_side``."""
    height, width = int(shape[0]), int(shape[1])
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def photo_pixels(photo: LoadedImage | np.ndarray) -> np.ndarray:
    """``(h, w, 3)`` uint8 pixels of a photo (anything :func:`sensmap.images.load_image` takes)."""
    return load_image(photo).pixels


def display_pixels(pixels: np.ndarray, max_side: int = PHOTO_MAX_SIDE) -> np.ndarray:
    """The photo downscaled (LANCZOS) so its long side is at most ``max_side`` pixels."""
    shape = fit_within(pixels.shape[:2], max_side)
    if shape == pixels.shape[:2]:
        return np.asarray(pixels)
    image = Image.fromarray(np.ascontiguousarray(pixels))
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.LANCZOS))


def nearest_to_photo(
    values: np.ndarray, image_size: tuple[int, int], fit: str = "squash"
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour copy of a network-grid map on an ``(h, w)`` photo grid: ``(values, seen)``.

    ``seen`` is False where the photo pixel's centre lies outside the network's crop (``fit="crop"``).
    """
    values = np.asarray(values)
    grid_h, grid_w = values.shape
    y0, x0, y1, x1 = fit_box(image_size, (grid_h, grid_w), fit)
    rows, rows_in = _nearest_axis(image_size[0], y0, y1, grid_h)
    cols, cols_in = _nearest_axis(image_size[1], x0, x1, grid_w)
    return values[rows[:, None], cols[None, :]], rows_in[:, None] & cols_in[None, :]


def _nearest_axis(side: int, start: float, stop: float, grid_side: int) -> tuple[np.ndarray, np.ndarray]:
    centres = np.arange(side, dtype=np.float64) + 0.5
    index = np.floor((centres - start) * (grid_side / (stop - start))).astype(np.int64)
    return np.clip(index, 0, grid_side - 1), (centres >= start) & (centres <= stop)


def map_on_photo(result: SensitivityResult, grid_map: np.ndarray, photo_size: tuple[int, int]) -> np.ndarray:
    """A network-grid map of ``result`` resampled (bilinear) to the photo at :data:`HEATMAP_MAX_SIDE` px."""
    return map_to_photo(grid_map, fit_within(photo_size, HEATMAP_MAX_SIDE), result.fit)


def photo_agreement(
    result_a: SensitivityResult, result_b: SensitivityResult, photo_size: tuple[int, int] | None = None
) -> dict[str, float]:
    """How far two maps of the same photo agree, as the Compare page, the report and the audit show it:
    :func:`sensmap.metrics.agreement` (Spearman −1..1, IoU of the top-20 % areas 0..1) of both support maps
    resampled by :func:`map_on_photo` onto the photo grid ``photo_size`` = ``(h, w)`` (default: ``result_a``'s).
    """
    from ..metrics import agreement

    shape = tuple(result_a.photo_size if photo_size is None else photo_size)
    return agreement(map_on_photo(result_a, result_a.support, shape), map_on_photo(result_b, result_b.support, shape))


def winner_names(
    result: SensitivityResult, shape: tuple[int, int], size: int = -1, fit: str | None = None
) -> np.ndarray:
    """``(h, w)`` strings "class (p %)": the class that wins when the area is covered (nearest neighbour).

    ``shape`` is the photo grid (``fit`` defaults to the result's) or, with ``fit="squash"``, any
    grid stretched over the network input.
    """
    classes, probability = result.label_flip(size)
    labels = [plain(name) for name in result.labels]
    cls, seen = nearest_to_photo(classes, shape, fit or result.fit)
    prob, _ = nearest_to_photo(probability, shape, fit or result.fit)
    value = "{:.0%}" if result.score_kind != "logit" else "logit {:.2f}"  # label_flip: probabilities, or logits
    pairs = zip(cls.ravel().tolist(), prob.ravel().tolist(), strict=True)
    text = [f"{labels[c]} ({value.format(p)})" for c, p in pairs]
    return np.where(seen, np.array(text, dtype=object).reshape(shape), "not seen by the network")


def cover_title(result: SensitivityResult, index: int) -> str:
    """Title of one cover size, e.g. ``cover 1/2 (112 px)`` (window width×height when not square)."""
    size = result.sizes[index]
    grid = result.grids[index]
    fraction = Fraction(size).limit_denominator(64)
    share = str(fraction) if abs(float(fraction) - size) < 1e-9 else f"{size:g}"
    pixels = f"{grid.window_x}" if grid.window_x == grid.window_y else f"{grid.window_x}×{grid.window_y}"
    return f"cover {share} ({pixels} px)"


def jpeg_data_uri(pixels: np.ndarray, quality: int = PHOTO_JPEG_QUALITY) -> str:
    """``data:image/jpeg;base64,…`` of ``(h, w, 3)`` uint8 pixels (no EXIF or other metadata)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def photo_box_to_grid(
    result: SensitivityResult, box: tuple[float, float, float, float]
) -> tuple[float, float, float, float] | None:
    """A box ``(y0, x0, y1, x1)`` in fractions of the photo as fractions of the network grid.

    ``fit="squash"`` keeps the fractions; ``fit="crop"`` maps them through the crop of
    :func:`sensmap.images.fit_box` and clips them to it. None when no part of the box is seen.
    """
    return box_on_grid(box, result.photo_size, result.input_size, result.fit)


def peak_on_photo(result: SensitivityResult) -> tuple[float, float]:
    """``(y, x)`` photo pixels of the centre of the map's strongest supporting pixel."""
    grid_h, grid_w = result.input_size
    row, col = np.unravel_index(int(np.nanargmax(result.support)), result.support.shape)
    top, left, bottom, right = fit_box(result.photo_size, result.input_size, result.fit)
    return top + (row + 0.5) * (bottom - top) / grid_h, left + (col + 0.5) * (right - left) / grid_w
