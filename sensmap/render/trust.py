"""Plotly figures of the checks on a map: faithfulness (deletion/insertion curves), the randomisation sanity
check, stability across cover sizes, and the pointing check's box on the photo."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import ParameterError
from ..images import LoadedImage
from ..result import SensitivityResult, format_value
from ..scores import target_text
from ..scores import unit as score_unit
from .colours import (
    FALLBACK_LIMIT,
    MAP_CURVE_COLOUR,
    METHOD_COLOURS,
    RANDOM_CURVE_COLOUR,
    _rgb,
    plain,
    sequential_colorscale,
    support_unit,
)
from .photos import map_on_photo, peak_on_photo, photo_pixels
from .traces import _LAYOUT, _heatmap, _image_axes, _photo_trace, _result_name, _title

FAITHFUL_READING = "deletion AUC below random and insertion AUC above random = the map is faithful"


def faithfulness_numbers(result: SensitivityResult) -> dict | None:
    """The :func:`sensmap.faithfulness` numbers kept in the result's metadata, or None."""
    numbers = (result.metadata or {}).get("faithfulness")
    return numbers if isinstance(numbers, dict) and "deletion_auc" in numbers else None


def sanity_numbers(result: SensitivityResult) -> dict | None:
    """The randomisation check's numbers (:meth:`sensmap.SanityCheck.as_dict`) kept in ``metadata["sanity"]``, or
    None."""
    numbers = (result.metadata or {}).get("sanity")
    return numbers if isinstance(numbers, dict) and "spearman" in numbers else None


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
    curve_kind = numbers.get("score_kind", "probability")  # the curves' score: probability, or the map's own
    percent = score_unit(curve_kind)[1] == "pp"
    y_hover = "p = %{y:.1%}" if percent else f"{curve_kind} = %{{y:.3f}}"
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
                    hovertemplate=f"%{{x:.0%}} of the pixels {verb}<br>{y_hover}<extra>{order}</extra>",
                ),
                row=1,
                col=column,
            )
        fig.update_xaxes(title_text=f"fraction of pixels {verb}", tickformat=".0%", range=[0, 1], row=1, col=column)
    what = f"probability of '{plain(result.target_name)}'" if percent else plain(target_text(result))
    fig.update_yaxes(title_text=what, row=1, col=1)
    if percent:
        fig.update_yaxes(range=[-0.02, 1.02], tickformat=".0%")
    caption = FAITHFUL_READING + f" · {numbers.get('random_orders', '?')} random orders averaged"
    fig.update_layout(
        title=_title(f"{_result_name(result)}, faithfulness", caption),
        legend=dict(orientation="h", yanchor="top", y=-0.2, x=0),
        **{**_LAYOUT, "margin": dict(l=10, r=10, t=100, b=10)},
    )
    return fig


SANITY_READING = (
    "the map should change (|ρ| falls) as the weights are randomised; |ρ| ≥ {threshold:g} with every layer random "
    "= not trustworthy (shaded)"
)


def sanity_curve(numbers: dict) -> tuple[list[float], list[float], list[bool]]:
    """``(x, y, flat)`` of a randomisation check (:meth:`sensmap.SanityCheck.as_dict`): x the share of the weighted
    layers randomised (0..1, the original map at 0), y the Spearman correlation with the original map (1 at 0),
    flat True where the randomised map was constant (its ρ set to 0)."""
    total = max(1, int(numbers["total_layers"]))
    x = [0.0] + [count / total for count in numbers["randomised"]]
    return x, [1.0] + [float(v) for v in numbers["spearman"]], [False] + [bool(f) for f in numbers["flat"]]


def sanity_figure(results: Sequence[SensitivityResult]) -> go.Figure:
    """The randomisation checks of several maps: Spearman ρ with the original map against the share of weighted
    layers randomised (output layer first), one line per method; flat steps (a constant map) marked ✕.

    Reads ``metadata["sanity"]`` of each result (results without it are left out); the shaded bands are
    ``|ρ| ≥ threshold``, where a map that stays there at full randomisation is flagged not trustworthy.
    """
    fig = go.Figure()
    threshold = 0.5
    for result in results:
        numbers = sanity_numbers(result)
        if numbers is None:
            continue
        threshold = float(numbers["threshold"])
        x, y, flat = sanity_curve(numbers)
        colour = _rgb(METHOD_COLOURS[result.method])
        outcome = "passes" if numbers["trustworthy"] else "fails"
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers", line=dict(color=colour, width=2.5), marker=dict(size=7),
            name=f"{result.method_label} ({outcome}: ρ {y[-1]:+.2f} at full randomisation)",
            hovertemplate="%{x:.0%} of the weighted layers random<br>ρ = %{y:+.2f}<extra>" + result.method_label
            + "</extra>",
        ))  # fmt: skip
        marks = [(a, b) for a, b, f in zip(x, y, flat, strict=True) if f]
        if marks:
            fig.add_trace(go.Scatter(
                x=[a for a, _ in marks], y=[b for _, b in marks], mode="markers",
                marker=dict(symbol="x", size=13, color=colour, line=dict(width=1, color="white")),
                name=f"{result.method_label}: flat map (output no longer depends on the photo; ρ set to 0)",
                hovertemplate="flat map: ρ set to 0<extra>" + result.method_label + "</extra>",
            ))  # fmt: skip
    for low, high in ((threshold, 1.05), (-1.05, -threshold)):
        fig.add_hrect(y0=low, y1=high, fillcolor=_rgb(MAP_CURVE_COLOUR, 0.07), line_width=0)
    fig.update_xaxes(title_text="share of the weighted layers randomised (from the output down)", tickformat=".0%",
                     range=[-0.03, 1.03])  # fmt: skip
    fig.update_yaxes(title_text="Spearman ρ with the original map", range=[-1.05, 1.05], zeroline=True)
    fig.update_layout(
        title=_title("Randomisation check", SANITY_READING.format(threshold=threshold)),
        legend=dict(orientation="h", yanchor="top", y=-0.25, x=0),
        **{**_LAYOUT, "margin": dict(l=10, r=10, t=90, b=10)},
    )
    return fig


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
    from ..metrics import stability

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
