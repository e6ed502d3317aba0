"""Plotly building blocks shared by every figure: heatmaps over an extent, the support colour bar, the photo
trace, photo-style axes, titles."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from ..result import SensitivityResult
from ..scores import target_text
from .colours import COLOUR_CAPTION, plain, plotly_colorscale
from .photos import display_pixels, jpeg_data_uri

_LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=80, b=10), hoverlabel=dict(namelength=-1))


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
    return f"{plain(result.model_name)}: {plain(target_text(result))}"
