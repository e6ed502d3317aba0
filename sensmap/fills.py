"""Cover fills: what a covered window is painted with — plain numpy, no TensorFlow.

Fills act in raw pixel space (0..255, RGB) **before** the network's preprocessing.
A fill is turned into a *canvas*: an image of the network-input size whose pixels
replace the covered window, so every fill (flat colour or blurred photo) is applied
the same way: ``occluded = where(inside_window, canvas, image)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .errors import ParameterError

FILL_NAMES: tuple[str, ...] = ("gray", "mean", "black", "white", "blur")
DEFAULT_FILL = "gray"
GRAY_LEVEL = 127.5
#: Gaussian sigma of the ``blur`` fill, as a fraction of the shorter image side.
BLUR_SIGMA_FRACTION = 0.05

Fill = str | Sequence[float]


def normalize_fill(fill: Fill) -> str | tuple[float, float, float]:
    """Validate a fill: one of :data:`FILL_NAMES` (``grey`` is accepted) or an RGB triple in 0..255."""
    if isinstance(fill, str):
        name = fill.strip().lower()
        if name == "grey":
            name = "gray"
        if name in FILL_NAMES:
            return name
        parsed = _parse_rgb_text(name)
        if parsed is not None:
            return parsed
        raise ParameterError(
            f"unknown fill {fill!r}: use one of {', '.join(FILL_NAMES)} or an RGB triple such as '0,128,255'"
        )
    try:
        values = tuple(float(v) for v in fill)
    except TypeError:
        raise ParameterError(f"fill must be a name or an RGB triple, got {fill!r}") from None
    if len(values) != 3 or not all(math.isfinite(v) and 0 <= v <= 255 for v in values):
        raise ParameterError(f"an RGB fill needs three values in 0..255, got {fill!r}")
    return values  # type: ignore[return-value]


def _parse_rgb_text(text: str) -> tuple[float, float, float] | None:
    text = text.removeprefix("rgb")  # the label form written by fill_label, e.g. "rgb(10,200,30)"
    parts = [p for p in text.replace("(", " ").replace(")", " ").replace(",", " ").split() if p]
    if len(parts) != 3:
        return None
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        return None
    if not all(math.isfinite(v) and 0 <= v <= 255 for v in values):
        raise ParameterError(f"an RGB fill needs three values in 0..255, got {text!r}")
    return values  # type: ignore[return-value]


def fill_label(fill: Fill) -> str:
    """Short text for a (normalised) fill, for metadata and captions."""
    fill = normalize_fill(fill)
    if isinstance(fill, str):
        return fill
    return "rgb(" + ",".join(f"{v:g}" for v in fill) + ")"


def fill_canvas(image: np.ndarray, fill: Fill) -> np.ndarray:
    """The ``(H, W, 3)`` float32 canvas that replaces covered pixels of ``image`` (raw 0..255)."""
    image = np.asarray(image, dtype=np.float32)
    fill = normalize_fill(fill)
    if fill == "blur":
        sigma = max(1.0, BLUR_SIGMA_FRACTION * min(image.shape[0], image.shape[1]))
        return gaussian_blur(image, sigma)
    if fill == "mean":
        colour = image.reshape(-1, 3).mean(axis=0)
    elif fill == "gray":
        colour = np.full(3, GRAY_LEVEL)
    elif fill == "black":
        colour = np.zeros(3)
    elif fill == "white":
        colour = np.full(3, 255.0)
    else:
        colour = np.asarray(fill, dtype=np.float64)
    return np.broadcast_to(colour.astype(np.float32), image.shape).copy()


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian kernel of radius ``ceil(3·sigma)``."""
    radius = max(1, int(math.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an ``(H, W, C)`` image, edges reflected; float32 out."""
    kernel = gaussian_kernel(sigma)
    radius = kernel.size // 2
    out = np.asarray(image, dtype=np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="symmetric")
        windows = np.lib.stride_tricks.sliding_window_view(padded, kernel.size, axis=axis)
        out = windows @ kernel
    return out.astype(np.float32)
