"""Plotly figures of the maps themselves: the overlay on the photo, the brightness view, one map per cover size,
the label-flip map, two networks compared and several methods side by side."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import ParameterError
from ..images import LoadedImage, map_to_photo
from ..result import SensitivityResult, format_value
from ..scores import supported_views
from .colours import (
    CLASS_COLOURS,
    DEFAULT_OPACITY,
    OTHER_COLOUR,
    _check_units,
    colour_caption,
    plain,
    support_unit,
    symmetric_limit,
    unit_limits,
)
from .photos import (
    PANEL_MAX_SIDE,
    cover_title,
    display_pixels,
    fit_within,
    map_on_photo,
    nearest_to_photo,
    photo_pixels,
    winner_names,
)
from .traces import _LAYOUT, _heatmap, _image_axes, _photo_trace, _result_name, _title, support_heatmap


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
    if result.method == "gradcam":
        default = f"{plain(result.model_name)}: Grad-CAM for '{plain(result.labels[index])}'"
    else:
        default = f"{plain(result.model_name)}: where covering lowers '{plain(result.labels[index])}'"
        default += f" ({result.method_label})" if result.method != "occlusion" else ""
    fig.update_layout(title=_title(title or default, colour_caption(result)), **_LAYOUT)
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
    flip = hover_classes and result.windowed and "label-flip" in supported_views(result.score_kind)  # a class
    names = winner_names(result, values.shape) if flip else None
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


def methods_figure(
    photo: LoadedImage | np.ndarray, results: Sequence[SensitivityResult], *, opacity: float = DEFAULT_OPACITY
) -> go.Figure:
    """Maps of one photo by several methods side by side, one colour scale per unit (:func:`unit_limits`).

    Occlusion and RISE (probability points) share a scale; Grad-CAM (relative, 0..1) has its own. Each unit's colour
    bar lies under the first panel in that unit. Panels are titled with the method (and marked approximate).
    """
    pixels = photo_pixels(photo)
    results = list(results)
    if not results:
        raise ParameterError("methods_figure needs at least one map")
    limits = unit_limits(results)
    count = len(results)
    fig = make_subplots(rows=1, cols=count, subplot_titles=[_method_title(r) for r in results], horizontal_spacing=0.02)
    shown: set[tuple[float, str]] = set()
    for column, result in enumerate(results, start=1):
        unit = support_unit(result)
        photo_trace, heat = _overlay_traces(pixels, result, None, limits[unit], opacity, showscale=unit not in shown)
        if unit not in shown:
            peak = heat.colorbar.ticktext[-1].split()[0]  # "+12.3": a horizontal bar has room for numbers only
            heat.colorbar.update(orientation="h", x=(column - 0.5) / count, xanchor="center", y=-0.02,
                                 yanchor="top", len=0.9 / count, thickness=12, title_side="top",
                                 ticktext=[peak.replace("+", "−"), "0", peak])  # fmt: skip
        shown.add(unit)
        fig.add_trace(photo_trace, row=1, col=column)
        fig.add_trace(heat, row=1, col=column)
    units = " · ".join(
        f"{unit}: " + " and ".join(r.method_label for r in results if support_unit(r) == (factor, unit))
        for factor, unit in limits
    )
    fig.update_layout(
        title=_title(f"{_result_name(results[0])}: {count} methods", f"one colour scale per unit ({units})"),
        **{**_LAYOUT, "margin": dict(l=10, r=10, t=90, b=90)},
    )
    return _image_axes(fig, [pixels.shape[:2]] * count)


def _method_title(result: SensitivityResult) -> str:
    """``RISE (pp, approximate)``: the method, its unit and whether the map is approximate."""
    marks = [support_unit(result)[1]] + (["approximate"] if result.approximate else [])
    return f"{result.method_label} ({', '.join(marks)})"


def _compare_title(result: SensitivityResult) -> str:
    if "top-k" not in supported_views(result.score_kind):
        return _result_name(result)
    _, top_name, top_p = result.top_k(1)[0]
    title = f"{plain(result.model_name)}: {plain(top_name)} {top_p:.0%}"
    return title if result.target_name == top_name else f"{title} (map for '{plain(result.target_name)}')"
