"""Plotly figures of sensitivity results — plotly, numpy and Pillow only (no TensorFlow, no Streamlit).

Conventions
-----------
* **Support > 0** means covering the area lowers the class score (the area *supports* the
  class, drawn **red**); support < 0 means covering it raises the score (the area *inhibits*
  the class, drawn **blue**); 0 is white (transparent over a photo).
* Result arrays hold probability differences (0..1 scale); figures show them in percentage
  points (×100, "pp"). Results with ``score_kind="log-odds"`` are shown in log-odds units.
* Every ``limit`` argument is in the arrays' units (probability difference, e.g. 0.25 for
  25 pp): the colour scale runs symmetrically from ``-limit`` (blue) to ``+limit`` (red).
  Without one, the largest ``|support|`` of the map is used (see :func:`symmetric_limit`); pass the
  same limit to several figures to make their colours comparable.
* Figures use photo pixel coordinates (x right, y down); the photo is shown at most
  :data:`PHOTO_MAX_SIDE` px and maps at most :data:`HEATMAP_MAX_SIDE` px on the long side,
  so the figure JSON stays small.
* The colour lookup (:func:`diverging_rgba`, :func:`blend_overlay`) is numpy, shared with the
  matplotlib PNG report (:mod:`sensmap.figures`), so the PNG and the interactive figures use the same colours.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from .errors import ParameterError
from .images import LoadedImage, box_on_grid, fit_box, load_image, map_to_photo
from .result import SensitivityResult

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

OVERLAY_ALPHA_RAMP = 2.0
"""Over a photo, a colour's opacity grows with ``|support| / limit`` (× this, capped at 1): 0 stays see-through."""

DEFAULT_OPACITY = 0.6
"""Opacity of a map drawn over a photo (multiplied by the see-through ramp)."""

PHOTO_MAX_SIDE = 1024
PHOTO_JPEG_QUALITY = 90
HEATMAP_MAX_SIDE = 192
"""Long side (cells) of maps drawn over a photo; hover labels carry one string per cell."""
PANEL_MAX_SIDE = 128
"""Long side (cells) of the per-size and label-flip maps."""
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

_LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=80, b=10), hoverlabel=dict(namelength=-1))


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
    """``(factor, unit)`` turning the result's arrays into displayed values: ``(100, "pp")`` or ``(1, "log-odds")``."""
    return (100.0, "pp") if result.score_kind == "probability" else (1.0, "log-odds")


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


def _check_units(results: Sequence[SensitivityResult]) -> tuple[float, str]:
    units = {support_unit(r) for r in results}
    if len(units) != 1:
        raise ParameterError("cannot share one colour scale between probability and log-odds maps: use one score")
    return units.pop()


def plain(value: object) -> str:
    """Text shown as is by Plotly (which reads ``<b>``-style tags in titles and hover labels)."""
    return html.escape(str(value), quote=False)


def format_value(value: float, unit: str, sign: bool = True) -> str:
    """A displayed support value such as ``+12.3 pp``."""
    return f"{value:{'+' if sign else ''}.{1 if unit == 'pp' else 2}f} {unit}"


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
    text = [f"{labels[c]} ({p:.0%})" for c, p in zip(cls.ravel().tolist(), prob.ravel().tolist(), strict=True)]
    return np.where(seen, np.array(text, dtype=object).reshape(shape), "not seen by the network")


def cover_title(result: SensitivityResult, index: int) -> str:
    """Title of one cover size, e.g. ``cover 1/2 (112 px)`` (window width×height when not square)."""
    size = result.sizes[index]
    grid = result.grids[index]
    fraction = Fraction(size).limit_denominator(64)
    share = str(fraction) if abs(float(fraction) - size) < 1e-9 else f"{size:g}"
    pixels = f"{grid.window_x}" if grid.window_x == grid.window_y else f"{grid.window_x}×{grid.window_y}"
    return f"cover {share} ({pixels} px)"


# --------------------------------------------------------------------------- traces and layout


def _heatmap(z: np.ndarray, extent: tuple[int, int], **style) -> go.Heatmap:
    """A heatmap of ``z`` stretched over an ``(h, w)`` extent (cell centres in extent pixels)."""
    rows, cols = z.shape
    x = (np.arange(cols) + 0.5) * (extent[1] / cols)
    y = (np.arange(rows) + 0.5) * (extent[0] / rows)
    return go.Heatmap(z=z, x=x, y=y, **style)


def _colorbar(limit: float, unit: str) -> dict:
    peak = f"{limit:.{1 if unit == 'pp' else 2}f}"
    return dict(
        title=dict(text=f"support ({unit})", side="right"),
        tickvals=[-limit, 0.0, limit],
        ticktext=[f"−{peak} inhibits ↓", "0", f"+{peak} supports ↑"],
        len=0.9,
        thickness=14,
    )


def support_heatmap(
    values: np.ndarray,
    extent: tuple[int, int],
    limit: float,
    unit: str,
    *,
    showscale: bool = True,
    opacity: float = 1.0,
    over_photo: bool = False,
    customdata: np.ndarray | None = None,
) -> go.Heatmap:
    """Heatmap of support already in display units (pp), on the symmetric scale ``-limit..limit``.

    ``over_photo`` uses the see-through colour scale (0 transparent) for drawing over a photo.
    """
    digits = 1 if unit == "pp" else 2
    hover = f"x %{{x:.0f}} px, y %{{y:.0f}} px<br>support %{{z:+.{digits}f}} {unit}"
    if customdata is not None:
        hover += "<br>if covered, top class: %{customdata}"
    return _heatmap(
        values.astype(np.float32),
        extent,
        zmin=-limit,
        zmax=limit,
        colorscale=plotly_colorscale(transparent=over_photo),
        opacity=opacity,
        showscale=showscale,
        colorbar=_colorbar(limit, unit),
        customdata=customdata,
        hovertemplate=hover + "<extra></extra>",
        zsmooth="best",
        name="support",
    )


def jpeg_data_uri(pixels: np.ndarray, quality: int = PHOTO_JPEG_QUALITY) -> str:
    """``data:image/jpeg;base64,…`` of ``(h, w, 3)`` uint8 pixels (no EXIF or other metadata)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _photo_trace(pixels: np.ndarray) -> go.Image:
    """The photo (≤ :data:`PHOTO_MAX_SIDE` px, embedded JPEG) spanning ``0..w × 0..h`` photo pixels."""
    shown = display_pixels(pixels)
    sy, sx = pixels.shape[0] / shown.shape[0], pixels.shape[1] / shown.shape[1]
    source = jpeg_data_uri(shown)
    return go.Image(source=source, x0=sx / 2, y0=sy / 2, dx=sx, dy=sy, hoverinfo="skip", name="photo")


def _image_axes(fig: go.Figure, extents: Sequence[tuple[int, int]]) -> go.Figure:
    """Photo-style axes for each subplot: y down, equal aspect, no ticks or grid."""
    hidden = dict(showgrid=False, zeroline=False, showticklabels=False, ticks="")
    for number, (height, width) in enumerate(extents, start=1):
        suffix = "" if number == 1 else str(number)
        fig.update_layout(
            {
                f"xaxis{suffix}": dict(range=[0, width], constrain="domain", **hidden),
                f"yaxis{suffix}": dict(range=[height, 0], scaleanchor=f"x{suffix}", constrain="domain", **hidden),
            }
        )
    return fig


def _title(text: str, caption: str = COLOUR_CAPTION) -> dict:
    return dict(text=f"{text}<br><sup>{caption}</sup>" if caption else text, x=0.01, xanchor="left")


def _result_name(result: SensitivityResult) -> str:
    return f"{plain(result.model_name)}: '{plain(result.target_name)}' ({result.probability:.0%})"


# --------------------------------------------------------------------------- figures


def overlay_figure(
    photo: LoadedImage | np.ndarray,
    result: SensitivityResult,
    *,
    opacity: float = DEFAULT_OPACITY,
    limit: float | None = None,
    class_index: int | None = None,
    title: str | None = None,
    hover_classes: bool = True,
) -> go.Figure:
    """The photo with the support map on top (red supports, blue inhibits, 0 see-through).

    ``class_index`` draws the map of another class from the kept outputs (default: the
    target). ``limit`` (probability difference) fixes the symmetric colour scale. Hovering
    shows the position (photo pixels), the support (pp) and, unless ``hover_classes`` is false
    (a figure a third the size, for maps redrawn while they refine), the class that wins when that
    area is covered (smallest cover size).
    """
    pixels = photo_pixels(photo)
    fig = go.Figure(_overlay_traces(pixels, result, class_index, limit, opacity, hover_classes=hover_classes))
    index = result.target if class_index is None else int(class_index)
    default = f"{plain(result.model_name)}: where covering lowers '{plain(result.labels[index])}'"
    fig.update_layout(title=_title(title or default), **_LAYOUT)
    return _image_axes(fig, [pixels.shape[:2]])


def _overlay_traces(
    pixels: np.ndarray,
    result: SensitivityResult,
    class_index: int | None,
    limit: float | None,
    opacity: float,
    showscale: bool = True,
    hover_classes: bool = True,
) -> list[go.BaseTraceType]:
    grid_map = result.support if class_index is None else result.maps_for(int(class_index))[1]
    values = map_on_photo(result, grid_map, pixels.shape[:2])
    factor, unit = support_unit(result)
    bound = symmetric_limit(grid_map, limit=limit) * factor
    names = winner_names(result, values.shape) if hover_classes else None
    heat = support_heatmap(
        values * factor,
        pixels.shape[:2],
        bound,
        unit,
        showscale=showscale,
        opacity=opacity,
        over_photo=True,
        customdata=names,
    )
    return [_photo_trace(pixels), heat]


BRIGHTNESS_FLOOR = 0.15
"""Brightness (0..1) of the area whose cover drops the class most, so its content stays visible."""


def brightness_factor(support: np.ndarray) -> np.ndarray:
    """Per-pixel brightness 0..1 of the brightness view (NaN where the network saw nothing).

    ``1 − clip(support / max(support), 0, 1)``, scaled to :data:`BRIGHTNESS_FLOOR`..1: 1 (bright)
    where covering keeps the class probability (support ≤ 0), the floor (dark) where covering
    drops it most. Relative to the map's own maximum; all 1 when no area supports the class.
    """
    support = np.asarray(support, dtype=np.float64)
    peak = np.nanmax(support) if np.isfinite(support).any() else 0.0
    drop = np.clip(support / peak, 0.0, 1.0) if peak > 0 else np.where(np.isnan(support), np.nan, 0.0)
    return BRIGHTNESS_FLOOR + (1.0 - BRIGHTNESS_FLOOR) * (1.0 - drop)


def brightness_figure(photo: LoadedImage | np.ndarray, result: SensitivityResult) -> go.Figure:
    """The photo lit by the map: **bright where covering keeps the class probability, dark where
    covering drops it** (darkest = the largest drop, see :func:`brightness_factor`).

    Areas outside the network's crop (``fit="crop"``) are washed out to grey.
    """
    pixels = photo_pixels(photo)
    shown = display_pixels(pixels)
    factor = brightness_factor(map_to_photo(result.support, shown.shape[:2], result.fit))[..., None]
    lit = np.where(np.isnan(factor), shown * 0.3 + 160.0, shown * np.nan_to_num(factor, nan=1.0))
    fig = go.Figure(_photo_trace(np.clip(np.rint(lit), 0, 255).astype(np.uint8)))
    factor_unit = support_unit(result)
    peak = format_value(float(np.nanmax(result.support)) * factor_unit[0], factor_unit[1], sign=False)
    caption = f"bright: covering keeps the probability · dark: covering drops it (darkest = {peak} drop)"
    fig.update_layout(title=_title(f"{_result_name(result)}, brightness view", caption), **_LAYOUT)
    return _image_axes(fig, [pixels.shape[:2]])


def per_size_figure(result: SensitivityResult, limit: float | None = None) -> go.Figure:
    """One map per cover size on the network grid, on one shared symmetric colour scale."""
    count = len(result.sizes)
    fig = make_subplots(
        rows=1, cols=count, subplot_titles=[cover_title(result, i) for i in range(count)], horizontal_spacing=0.02
    )
    factor, unit = support_unit(result)
    bound = symmetric_limit(result.per_size, limit=limit) * factor
    extent = result.input_size
    shape = fit_within(extent, PANEL_MAX_SIDE)
    for i in range(count):
        values = map_to_photo(result.per_size[i], shape) * factor
        fig.add_trace(support_heatmap(values, extent, bound, unit, showscale=i == count - 1), row=1, col=i + 1)
    fig.update_layout(title=_title(f"{_result_name(result)}, per cover size (network grid, shared scale)"), **_LAYOUT)
    return _image_axes(fig, [extent] * count)


MAX_NAMED_CLASSES = len(CLASS_COLOURS)


def label_flip_figure(result: SensitivityResult, size: int = -1) -> go.Figure:
    """Which class wins when each area is covered (cover size at index ``size``), one colour per class.

    The :data:`MAX_NAMED_CLASSES` classes covering most area are named; the rest are "other".
    """
    extent = result.input_size
    shape = fit_within(extent, PANEL_MAX_SIDE)
    classes, _ = nearest_to_photo(result.label_flip(size)[0], shape)
    ranked = [c for c, _ in sorted(Counter(classes.ravel().tolist()).items(), key=lambda item: (-item[1], item[0]))]
    named = ranked[:MAX_NAMED_CLASSES]
    names = [plain(result.labels[c]) + (" (target)" if c == result.target else "") for c in named]
    colours = list(CLASS_COLOURS[: len(named)])
    if len(ranked) > len(named):
        names.append(f"other ({len(ranked) - len(named)} classes)")
        colours.append(OTHER_COLOUR)
    lookup = {c: i for i, c in enumerate(named)}
    category = np.vectorize(lambda c: lookup.get(c, len(named)))(classes)
    count = len(colours)
    scale = [[edge / count, colour] for i, colour in enumerate(colours) for edge in (i, i + 1)]
    fig = go.Figure(
        _heatmap(
            category.astype(np.float32),
            extent,
            zmin=-0.5,
            zmax=count - 0.5,
            colorscale=scale,
            colorbar=dict(tickvals=list(range(count)), ticktext=names, title=dict(text="wins when covered")),
            customdata=winner_names(result, shape, size, fit="squash"),
            hovertemplate="x %{x:.0f} px, y %{y:.0f} px<br>if covered, top class: %{customdata}<extra></extra>",
            name="label flip",
        )
    )
    index = range(len(result.sizes))[size]
    caption = f"{cover_title(result, index)}; per pixel, the cover that lowers '{plain(result.target_name)}' most"
    fig.update_layout(
        title=_title(f"{plain(result.model_name)}: which class wins when the area is covered", caption), **_LAYOUT
    )
    return _image_axes(fig, [extent])


def compare_figure(
    photo: LoadedImage | np.ndarray,
    result_a: SensitivityResult,
    result_b: SensitivityResult,
    *,
    opacity: float = DEFAULT_OPACITY,
    limit: float | None = None,
) -> go.Figure:
    """Two networks' maps over the same photo on ONE symmetric colour scale, and their difference.

    The third panel is ``support(A) − support(B)`` (each resampled to the photo grid): red where
    A relies on the area more than B, blue where B relies on it more. ``limit`` (probability
    difference) fixes the shared scale; by default the largest ``|support|`` of either map.
    """
    pixels = photo_pixels(photo)
    factor, unit = _check_units([result_a, result_b])
    maps = [map_on_photo(r, r.support, pixels.shape[:2]) for r in (result_a, result_b)]
    bound = symmetric_limit(result_a.support, result_b.support, limit=limit)
    titles = [_compare_title(r) for r in (result_a, result_b)] + [
        f"difference {plain(result_a.model_name)} − {plain(result_b.model_name)}"
    ]
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.02)
    for column, result in enumerate((result_a, result_b), start=1):
        for trace in _overlay_traces(pixels, result, None, bound, opacity, showscale=column == 1):
            fig.add_trace(trace, row=1, col=column)
    difference = (maps[0] - maps[1]) * factor
    difference = support_heatmap(
        difference, pixels.shape[:2], bound * factor, unit, showscale=False, opacity=opacity, over_photo=True
    )
    fig.add_trace(_photo_trace(pixels), row=1, col=3)
    fig.add_trace(difference, row=1, col=3)
    fig.update_layout(title=_title("Two networks, one colour scale"), **_LAYOUT)
    return _image_axes(fig, [pixels.shape[:2]] * 3)


def _compare_title(result: SensitivityResult) -> str:
    _, top_name, top_p = result.top_k(1)[0]
    title = f"{plain(result.model_name)}: {plain(top_name)} {top_p:.0%}"
    return title if result.target_name == top_name else f"{title} (map for '{plain(result.target_name)}')"


# --------------------------------------------------------------------------- trust: faithfulness, stability, pointing

MAP_CURVE_COLOUR = (178, 24, 43)
"""Colour (r, g, b) of the map-order deletion/insertion curves (the PNG report draws them too)."""
RANDOM_CURVE_COLOUR = (120, 120, 120)
"""Colour of the random-order baselines."""
FAITHFUL_READING = "deletion AUC below random and insertion AUC above random = the map is faithful"

# ColorBrewer BuPu (sequential, colour-blind safe): clear = the map is the same at every cover size.
SEQUENTIAL_STOPS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (247, 252, 253)),
    (0.25, (158, 188, 218)),
    (0.5, (140, 150, 198)),
    (0.75, (136, 65, 157)),
    (1.0, (77, 0, 75)),
)


def _rgb(colour: tuple[int, int, int], alpha: float = 1.0) -> str:
    return f"rgba({colour[0]},{colour[1]},{colour[2]},{alpha:g})"


def faithfulness_numbers(result: SensitivityResult) -> dict | None:
    """The :func:`sensmap.faithfulness` numbers kept in the result's metadata, or None."""
    numbers = (result.metadata or {}).get("faithfulness")
    return numbers if isinstance(numbers, dict) and "deletion_auc" in numbers else None


def faithfulness_verdict(numbers: dict) -> str:
    """One sentence reading the four AUCs (deletion: lower is better; insertion: higher is better)."""
    deletion = numbers["deletion_auc"] < numbers["random_deletion_auc"]
    insertion = numbers["insertion_auc"] > numbers["random_insertion_auc"]
    if deletion and insertion:
        return (
            "Faithful. Removing the map's areas first drops the class faster than random orders do, "
            "and restoring them first brings it back faster."
        )
    if deletion or insertion:
        better = "deletion" if deletion else "insertion"
        return f"Partly faithful. Only the {better} curve beats random orders; read the map with care."
    return "Not faithful. Random orders of the pixels do as well as the map's order; do not trust this map."


def auc_summary(numbers: dict) -> str:
    """``deletion AUC 0.12 (random 0.30) · insertion AUC 0.55 (random 0.41)``."""
    return (
        f"deletion AUC {numbers['deletion_auc']:.2f} (random {numbers['random_deletion_auc']:.2f}) · "
        f"insertion AUC {numbers['insertion_auc']:.2f} (random {numbers['random_insertion_auc']:.2f})"
    )


def faithfulness_figure(result: SensitivityResult) -> go.Figure:
    """Deletion and insertion curves of the map against the random-order baselines.

    x: the fraction of pixels removed (deletion: replaced by the fill in order of decreasing support)
    or inserted (insertion: restored into the blurred photo in that order); y: the probability of the
    target class. The AUCs are in the legend. Needs ``result.metadata["faithfulness"]``
    (:func:`sensmap.faithfulness`).
    """
    numbers = faithfulness_numbers(result)
    if numbers is None:
        raise ParameterError("this result has no faithfulness numbers: run sensmap.faithfulness on it first")
    fractions = np.asarray(numbers["fractions"], dtype=np.float64)
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=["Deletion: lower curve = faithful", "Insertion: higher curve = faithful"],
        horizontal_spacing=0.08,
    )
    for column, kind, verb in ((1, "deletion", "removed"), (2, "insertion", "inserted")):
        for prefix, colour, dash in (("", MAP_CURVE_COLOUR, "solid"), ("random_", RANDOM_CURVE_COLOUR, "dash")):
            order = "map order" if not prefix else "random order"
            fig.add_trace(
                go.Scatter(
                    x=fractions,
                    y=numbers[f"{prefix}{kind}_curve"],
                    mode="lines+markers",
                    line=dict(color=_rgb(colour), dash=dash, width=2.5 if not prefix else 2),
                    marker=dict(size=4),
                    name=f"{kind}, {order} (AUC {numbers[f'{prefix}{kind}_auc']:.3f})",
                    hovertemplate=f"%{{x:.0%}} of the pixels {verb}<br>p = %{{y:.1%}}<extra>{order}</extra>",
                ),
                row=1,
                col=column,
            )
        fig.update_xaxes(title_text=f"fraction of pixels {verb}", tickformat=".0%", range=[0, 1], row=1, col=column)
    fig.update_yaxes(title_text=f"probability of '{plain(result.target_name)}'", row=1, col=1)
    fig.update_yaxes(range=[-0.02, 1.02], tickformat=".0%")
    caption = FAITHFUL_READING + f" · {numbers.get('random_orders', '?')} random orders averaged"
    fig.update_layout(
        title=_title(f"{_result_name(result)}, faithfulness", caption),
        legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
        **{**_LAYOUT, "margin": dict(l=10, r=10, t=100, b=10)},
    )
    return fig


def sequential_colorscale(transparent: bool = True, steps: int = 11) -> list[list]:
    """:data:`SEQUENTIAL_STOPS` as a Plotly colour scale; ``transparent`` fades linearly from see-through at 0
    (a spread map is high over large areas: a steeper ramp would hide the photo)."""
    positions = np.linspace(0.0, 1.0, steps)
    stops = np.array([p for p, _ in SEQUENTIAL_STOPS])
    colours = np.array([c for _, c in SEQUENTIAL_STOPS], dtype=np.float64)
    rgb = np.stack([np.interp(positions, stops, colours[:, i]) for i in range(3)], axis=-1)
    return _colorscale(positions, rgb, positions if transparent else np.ones_like(positions))


def stability_figure(
    photo: LoadedImage | np.ndarray,
    result: SensitivityResult,
    *,
    spread: np.ndarray | None = None,
    score: float | None = None,
    across: str = "cover sizes",
    opacity: float = 0.75,
) -> go.Figure:
    """Where the map is unreliable: the per-pixel spread across cover sizes over the photo.

    ``spread`` (network grid, arrays' units) and ``score`` default to
    :func:`sensmap.metrics.stability` of ``result.per_size``; pass them to show the spread across
    several maps (e.g. cover sizes and fills, described by ``across``). Shown in pp (or log-odds);
    clear where every map agrees, dark where they disagree.
    """
    from .metrics import stability

    if spread is None or score is None:
        spread, score = stability(result.per_size)
    pixels = photo_pixels(photo)
    factor, unit = support_unit(result)
    values = map_on_photo(result, np.asarray(spread, dtype=np.float64), pixels.shape[:2]) * factor
    finite = values[np.isfinite(values)]
    peak = float(finite.max()) if finite.size and finite.max() > 0 else FALLBACK_LIMIT * factor
    digits = 1 if unit == "pp" else 2
    heat = _heatmap(
        values.astype(np.float32),
        pixels.shape[:2],
        zmin=0.0,
        zmax=peak,
        colorscale=sequential_colorscale(),
        opacity=opacity,
        colorbar=dict(title=dict(text=f"spread ({unit})", side="right"), len=0.9, thickness=14),
        hovertemplate=f"x %{{x:.0f}} px, y %{{y:.0f}} px<br>spread %{{z:.{digits}f}} {unit}<extra></extra>",
        zsmooth="best",
        name="spread",
    )
    fig = go.Figure([_photo_trace(pixels), heat])
    headline = f"{_result_name(result)}, stability: mean spread {format_value(score * factor, unit, sign=False)}"
    caption = f"spread of the map across {plain(across)} · dark: the explanation changes (unreliable there)"
    fig.update_layout(title=_title(headline, caption), **_LAYOUT)
    return _image_axes(fig, [pixels.shape[:2]])


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


BOX_COLOUR = "#FFB000"
"""Outline of the pointing-check box (amber: visible on most photos, not a map colour)."""


def pointing_figure(
    photo: LoadedImage | np.ndarray,
    box: tuple[float, float, float, float] | None = None,
    result: SensitivityResult | None = None,
) -> go.Figure:
    """The photo to draw a box on (drag mode "select"), with the current box and the map's peak.

    ``box`` is ``(y0, x0, y1, x1)`` in fractions of the photo; with ``result`` its strongest
    supporting point is marked. Box selections come back in photo pixels (x right, y down).
    """
    pixels = photo_pixels(photo)
    height, width = pixels.shape[:2]
    traces: list[go.BaseTraceType] = [_photo_trace(pixels)]
    if result is not None:
        y, x = peak_on_photo(result)
        traces.append(
            go.Scatter(
                x=[x],
                y=[y],
                mode="markers",
                marker=dict(symbol="x", size=14, color=_rgb(MAP_CURVE_COLOUR), line=dict(width=2, color="white")),
                name="strongest support",
                hovertemplate="strongest support of the map<extra></extra>",
            )
        )
    fig = go.Figure(traces)
    if box is not None:
        y0, x0, y1, x1 = box
        fig.add_shape(
            type="rect",
            x0=x0 * width,
            x1=x1 * width,
            y0=y0 * height,
            y1=y1 * height,
            line=dict(color=BOX_COLOUR, width=3),
        )
    fig.update_layout(
        title=_title("Drag a box around the object", "✕ = the map's strongest support" if result else ""),
        dragmode="select",
        newselection=dict(line=dict(color=BOX_COLOUR, width=2)),
        showlegend=False,
        **_LAYOUT,
    )
    return _image_axes(fig, [(height, width)])
