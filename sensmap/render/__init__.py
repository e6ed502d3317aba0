"""Plotly figures of sensitivity results — plotly, numpy and Pillow only (no TensorFlow, no Streamlit).

Conventions
-----------
* **Support > 0** means covering the area lowers the class score (the area *supports* the
  class, drawn **red**); support < 0 means covering it raises the score (the area *inhibits*
  the class, drawn **blue**); 0 is white (transparent over a photo).
* Result arrays hold probability differences (0..1 scale); figures show them in percentage
  points (×100, "pp"). Results with ``score_kind="log-odds"`` are shown in log-odds units, Grad-CAM
  maps in their own relative unit (0..1): every figure reads :attr:`SensitivityResult.display_unit`.
* Every ``limit`` argument is in the arrays' units (probability difference, e.g. 0.25 for
  25 pp): the colour scale runs symmetrically from ``-limit`` (blue) to ``+limit`` (red).
  Without one, the largest ``|support|`` of the map is used (see :func:`symmetric_limit`); pass the
  same limit to several figures to make their colours comparable.
* Figures use photo pixel coordinates (x right, y down); the photo is shown at most
  :data:`PHOTO_MAX_SIDE` px and maps at most :data:`HEATMAP_MAX_SIDE` px on the long side,
  so the figure JSON stays small.
* The colour lookup (:func:`diverging_rgba`, :func:`blend_overlay`) is numpy, shared with the
  matplotlib PNG report (:mod:`sensmap.figures`), so the PNG and the interactive figures use the same colours.

Layout
------
* :mod:`.colours` — colour maps (diverging and sequential, numpy), colour limits and units, captions and plain text.
* :mod:`.photos` — photo pixels for display, maps resampled onto the photo, boxes and peaks in photo pixels.
* :mod:`.traces` — Plotly building blocks: heatmaps, colour bar, photo trace, image axes, titles.
* :mod:`.maps` — figures of the maps: overlay, brightness, per cover size, label flip, compare, methods.
* :mod:`.trust` — figures of the checks: faithfulness, randomisation sanity, stability, pointing.
"""

from __future__ import annotations

from ..result import format_value
from .colours import (
    CLASS_COLOURS,
    COLOUR_CAPTION,
    DEFAULT_OPACITY,
    DIVERGING_STOPS,
    FALLBACK_LIMIT,
    INHIBIT_COLOUR,
    MAP_CURVE_COLOUR,
    METHOD_CAPTIONS,
    METHOD_COLOURS,
    OTHER_COLOUR,
    OVERLAY_ALPHA_RAMP,
    RANDOM_CURVE_COLOUR,
    SEQUENTIAL_STOPS,
    SUPPORT_COLOUR,
    blend_overlay,
    colour_caption,
    colour_key,
    count_text,
    diverging_rgba,
    plain,
    plotly_colorscale,
    sequential_colorscale,
    shared_limit,
    support_unit,
    symmetric_limit,
    unit_limits,
)
from .maps import (
    BRIGHTNESS_FLOOR,
    MAX_NAMED_CLASSES,
    brightness_factor,
    brightness_figure,
    compare_figure,
    label_flip_figure,
    methods_figure,
    overlay_figure,
    per_size_figure,
)
from .photos import (
    HEATMAP_MAX_SIDE,
    PANEL_MAX_SIDE,
    PHOTO_JPEG_QUALITY,
    PHOTO_MAX_SIDE,
    cover_title,
    display_pixels,
    fit_within,
    jpeg_data_uri,
    map_on_photo,
    nearest_to_photo,
    peak_on_photo,
    photo_agreement,
    photo_box_to_grid,
    photo_pixels,
    winner_names,
)
from .traces import support_heatmap
from .trust import (
    BOX_COLOUR,
    FAITHFUL_READING,
    SANITY_READING,
    auc_summary,
    faithfulness_figure,
    faithfulness_numbers,
    faithfulness_verdict,
    pointing_figure,
    sanity_curve,
    sanity_figure,
    sanity_numbers,
    stability_figure,
)

__all__ = [
    "format_value",
    "DIVERGING_STOPS",
    "SUPPORT_COLOUR",
    "INHIBIT_COLOUR",
    "COLOUR_CAPTION",
    "METHOD_CAPTIONS",
    "OVERLAY_ALPHA_RAMP",
    "DEFAULT_OPACITY",
    "FALLBACK_LIMIT",
    "CLASS_COLOURS",
    "OTHER_COLOUR",
    "METHOD_COLOURS",
    "MAP_CURVE_COLOUR",
    "RANDOM_CURVE_COLOUR",
    "SEQUENTIAL_STOPS",
    "diverging_rgba",
    "blend_overlay",
    "plotly_colorscale",
    "support_unit",
    "colour_caption",
    "colour_key",
    "symmetric_limit",
    "shared_limit",
    "unit_limits",
    "plain",
    "count_text",
    "sequential_colorscale",
    "PHOTO_MAX_SIDE",
    "PHOTO_JPEG_QUALITY",
    "HEATMAP_MAX_SIDE",
    "PANEL_MAX_SIDE",
    "fit_within",
    "photo_pixels",
    "display_pixels",
    "nearest_to_photo",
    "map_on_photo",
    "photo_agreement",
    "winner_names",
    "cover_title",
    "jpeg_data_uri",
    "photo_box_to_grid",
    "peak_on_photo",
    "support_heatmap",
    "overlay_figure",
    "BRIGHTNESS_FLOOR",
    "brightness_factor",
    "brightness_figure",
    "per_size_figure",
    "MAX_NAMED_CLASSES",
    "label_flip_figure",
    "compare_figure",
    "methods_figure",
    "FAITHFUL_READING",
    "faithfulness_numbers",
    "sanity_numbers",
    "faithfulness_verdict",
    "auc_summary",
    "faithfulness_figure",
    "SANITY_READING",
    "sanity_curve",
    "sanity_figure",
    "stability_figure",
    "BOX_COLOUR",
    "pointing_figure",
]
