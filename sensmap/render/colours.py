"""Colours, limits and captions of the maps: numpy only (no Plotly), shared by the interactive figures and the
matplotlib PNG report (:mod:`sensmap.figures`) so both use the same colours."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from ..errors import ParameterError
from ..result import SensitivityResult

# ColorBrewer RdBu (colour-blind safe), reversed: blue = inhibits (negative), red = supports (positive).
DIVERGING_STOPS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (5, 48, 97)),
    (0.1, (33, 102, 172)),
    (0.2, (67, 147, 195)),
    (0.3, (146, 197, 222)),
    (0.4, (209, 229, 240)),
    (0.5, (247, 247, 247)),
    (0.6, (253, 219, 199)),
    (0.7, (244, 165, 130)),
    (0.8, (214, 96, 77)),
    (0.9, (178, 24, 43)),
    (1.0, (103, 0, 31)),
)
"""Colour stops ``(position 0..1, (r, g, b) 0..255)``: position 0 = ``-limit``, 0.5 = 0, 1 = ``+limit``."""

SUPPORT_COLOUR = "red"
INHIBIT_COLOUR = "blue"
COLOUR_CAPTION = (
    f"{SUPPORT_COLOUR}: covering lowers the class probability (the area supports the class) · "
    f"{INHIBIT_COLOUR}: covering raises it (the area inhibits the class)"
)
METHOD_CAPTIONS: dict[str, str] = {
    "occlusion": COLOUR_CAPTION,
    "rise": (
        f"{SUPPORT_COLOUR}: covering lowers the class probability on average over random masks (supports) · "
        f"{INHIBIT_COLOUR}: covering raises it (inhibits)"
    ),
    "gradcam": (
        f"{SUPPORT_COLOUR}: features here raise the class score (Grad-CAM, relative to its strongest point; "
        "it shows no inhibiting areas)"
    ),
}
"""The colour key of each method's maps (see :func:`colour_caption`)."""

OVERLAY_ALPHA_RAMP = 2.0
"""Over a photo, a colour's opacity grows with ``|support| / limit`` (× this, capped at 1): 0 stays see-through."""

DEFAULT_OPACITY = 0.6
"""Opacity of a map drawn over a photo (multiplied by the see-through ramp)."""
FALLBACK_LIMIT = 0.01
"""Colour limit (probability difference) used when every value shown is 0 or NaN."""

# Paul Tol's "muted" qualitative palette (colour-blind safe) for class maps; grey = other classes.
CLASS_COLOURS: tuple[str, ...] = (
    "#CC6677",
    "#332288",
    "#DDCC77",
    "#117733",
    "#88CCEE",
    "#882255",
    "#44AA99",
    "#999933",
    "#AA4499",
)
OTHER_COLOUR = "#DDDDDD"

METHOD_COLOURS: dict[str, tuple[int, int, int]] = {
    "occlusion": (178, 24, 43),
    "gradcam": (51, 34, 136),
    "rise": (17, 119, 51),
}
"""Line colour (r, g, b) of each method in plots that show several (Paul Tol's colour-blind safe hues)."""
MAP_CURVE_COLOUR = (178, 24, 43)
"""Colour (r, g, b) of the map-order deletion/insertion curves (the PNG report draws them too)."""
RANDOM_CURVE_COLOUR = (120, 120, 120)
"""Colour of the random-order baselines."""

# ColorBrewer BuPu (sequential, colour-blind safe): clear = the map is the same at every cover size.
SEQUENTIAL_STOPS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (247, 252, 253)),
    (0.25, (158, 188, 218)),
    (0.5, (140, 150, 198)),
    (0.75, (136, 65, 157)),
    (1.0, (77, 0, 75)),
)


# --------------------------------------------------------------------------- colours (numpy, shared)


def diverging_rgba(values: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Colours of support values: ``(rgb float 0..255 (..., 3), overlay alpha 0..1 (...))``.

    ``values`` and ``limit`` share units; values beyond ``±limit`` get the end colours. The
    alpha is the see-through ramp used over photos (0 at support 0, 1 from half the limit);
    NaN values get alpha 0 and white.
    """
    level = np.clip(np.asarray(values, dtype=np.float64) / float(limit), -1.0, 1.0)
    missing = ~np.isfinite(level)
    level = np.where(missing, 0.0, level)
    positions = np.array([p for p, _ in DIVERGING_STOPS])
    colours = np.array([c for _, c in DIVERGING_STOPS], dtype=np.float64)
    rgb = np.stack([np.interp((level + 1.0) / 2.0, positions, colours[:, i]) for i in range(3)], axis=-1)
    alpha = np.where(missing, 0.0, np.minimum(1.0, np.abs(level) * OVERLAY_ALPHA_RAMP))
    return rgb, alpha


def blend_overlay(pixels: np.ndarray, values: np.ndarray, limit: float, opacity: float = DEFAULT_OPACITY) -> np.ndarray:
    """The photo ``(h, w, 3)`` uint8 with the support map ``(h, w)`` blended on it, as the figures draw it."""
    rgb, alpha = diverging_rgba(values, limit)
    weight = (alpha * float(opacity))[..., None]
    out = np.asarray(pixels, dtype=np.float64) * (1.0 - weight) + rgb * weight
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def plotly_colorscale(transparent: bool = False, steps: int = 21) -> list[list]:
    """:data:`DIVERGING_STOPS` as a Plotly colour scale; ``transparent`` adds the overlay alpha ramp."""
    positions = np.linspace(0.0, 1.0, steps)
    rgb, alpha = diverging_rgba(positions * 2.0 - 1.0, 1.0)
    if not transparent:
        alpha = np.ones_like(alpha)
    return _colorscale(positions, rgb, alpha)


def _colorscale(positions: np.ndarray, rgb: np.ndarray, alpha: np.ndarray) -> list[list]:
    """A Plotly colour scale ``[[position, "rgba(…)"], …]`` from positions, 0..255 colours and alphas."""
    return [
        [float(p), f"rgba({r:.0f},{g:.0f},{b:.0f},{a:.3f})"]
        for p, (r, g, b), a in zip(positions, rgb, alpha, strict=True)
    ]


# --------------------------------------------------------------------------- units and limits


def support_unit(result: SensitivityResult) -> tuple[float, str]:
    """``(factor, unit)`` turning the result's arrays into displayed values: ``(100, "pp")``, ``(1, "log-odds")``
    or, for Grad-CAM, ``(1, "relative")`` (:attr:`SensitivityResult.display_unit`)."""
    return result.display_unit


def colour_caption(result: SensitivityResult) -> str:
    """What the colours of this result's map mean (its method's entry of :data:`METHOD_CAPTIONS`); anything with a
    ``method`` field works (an audit's mean map)."""
    return METHOD_CAPTIONS[result.method]


def colour_key(result: SensitivityResult) -> str:
    """The legend of a map in words: what its colours mean (:func:`colour_caption`) and its unit
    (:attr:`SensitivityResult.unit_description`); anything with ``method`` and ``unit_description`` works."""
    return f"{colour_caption(result)}. Values in {result.unit_description}."


def symmetric_limit(*maps: np.ndarray, limit: float | None = None) -> float:
    """Colour limit ``m`` (arrays' units) for a scale ``-m..m``: ``limit`` if given, else max ``|value|``."""
    if limit is not None:
        value = float(limit)
        if not np.isfinite(value) or value <= 0:
            raise ParameterError(f"the colour limit must be a positive number (probability difference), got {limit!r}")
        return value
    peaks = [np.nanmax(np.abs(m)) for m in maps if np.size(m) and np.isfinite(m).any()]
    peak = float(max(peaks)) if peaks else 0.0
    return peak if peak > 0 else FALLBACK_LIMIT


def shared_limit(results: Sequence[SensitivityResult]) -> float:
    """One colour limit (probability difference) covering the support maps of several results."""
    return symmetric_limit(*(r.support for r in results))


def unit_limits(results: Sequence[SensitivityResult]) -> dict[tuple[float, str], float]:
    """One colour limit (arrays' units) per display unit among ``results``: maps in the same unit (occlusion and
    RISE in pp) share a scale, a map in another unit (Grad-CAM, relative) gets its own."""
    groups: dict[tuple[float, str], list[np.ndarray]] = {}
    for result in results:
        groups.setdefault(support_unit(result), []).append(result.support)
    return {unit: symmetric_limit(*maps) for unit, maps in groups.items()}


def _check_units(results: Sequence[SensitivityResult]) -> tuple[float, str]:
    units = {support_unit(r) for r in results}
    if len(units) != 1:
        names = " and ".join(sorted(unit for _, unit in units))
        raise ParameterError(f"cannot share one colour scale between maps in {names}: compare maps of one unit")
    return units.pop()


def plain(value: object) -> str:
    """Text shown as is by Plotly (which reads ``<b>``-style tags in titles and hover labels)."""
    return html.escape(str(value), quote=False)


def count_text(count: int, noun: str) -> str:
    """A count with its noun, plural when it is not 1: ``1 image``, ``12 images``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _rgb(colour: tuple[int, int, int], alpha: float = 1.0) -> str:
    return f"rgba({colour[0]},{colour[1]},{colour[2]},{alpha:g})"


def sequential_colorscale(transparent: bool = True, steps: int = 11) -> list[list]:
    """:data:`SEQUENTIAL_STOPS` as a Plotly colour scale; ``transparent`` fades linearly from see-through at 0
    (a spread map is high over large areas: a steeper ramp would hide the photo)."""
    positions = np.linspace(0.0, 1.0, steps)
    stops = np.array([p for p, _ in SEQUENTIAL_STOPS])
    colours = np.array([c for _, c in SEQUENTIAL_STOPS], dtype=np.float64)
    rgb = np.stack([np.interp(positions, stops, colours[:, i]) for i in range(3)], axis=-1)
    return _colorscale(positions, rgb, positions if transparent else np.ones_like(positions))
