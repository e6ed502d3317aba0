"""Shareable reports of sensitivity results: what goes into them, a PNG and a self-contained interactive HTML.

Neither needs a browser or Chrome to be produced, nor a network connection to be viewed: the PNG
is drawn with matplotlib's Agg backend (the pieces live in :mod:`sensmap.figures`), the HTML
embeds plotly.js and the photo inline. Colours are those
of :mod:`sensmap.render` (red: covering lowers the class probability, the area supports the
class; blue: covering raises it, the area inhibits the class); values are shown in each map's
:attr:`~sensmap.SensitivityResult.display_unit`: percentage points ("pp", probability difference ×100),
log-odds for ``score_kind="log-odds"``, or Grad-CAM's relative unit. With ``methods`` (maps of one photo
by several methods, :mod:`sensmap.sidebyside`) both reports add the methods side by side and, when they
were run, the randomisation checks.
No EXIF, GPS or text metadata is written into the PNG, and file names are generated
(:mod:`sensmap.filenames`), never taken from an uploaded file.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import plotly.io as pio
from matplotlib.figure import Figure
from PIL import Image

from . import __version__
from .errors import ParameterError
from .figures import MUTED, TEXT, Line, Sheet, png_bytes
from .filenames import report_filename as report_filename  # re-exported for the dashboard
from .filenames import safe_name as safe_name  # re-exported for the dashboard and the audit
from .filenames import utc
from .images import LoadedImage, map_to_photo
from .metrics import stability
from .render import (
    DEFAULT_OPACITY,
    FAITHFUL_READING,
    METHOD_COLOURS,
    SANITY_READING,
    colour_key,
    compare_figure,
    cover_title,
    faithfulness_figure,
    faithfulness_numbers,
    faithfulness_verdict,
    format_value,
    label_flip_figure,
    methods_figure,
    overlay_figure,
    per_size_figure,
    photo_agreement,
    photo_pixels,
    sanity_curve,
    sanity_figure,
    sanity_numbers,
    stability_figure,
    support_unit,
    symmetric_limit,
    unit_limits,
)
from .result import SensitivityResult
from .scores import supported_views, target_text
from .sidebyside import VERDICT_RULE, SideBySide, side_by_side
from .story import tell_story

DEFAULT_TITLE = "sensmap report"
TOP_K = 5

PNG_WIDTH = 1280
OVERLAY_MIN_WIDTH = 560
MARGIN = 28
IMAGE_BOX = (600, 440)  # (width, height) the photo panels are fitted into, pixels
CURVE_PLOT_SIZE = (IMAGE_BOX[0], 210)
"""(width, height) of the PNG report's deletion/insertion plot, drawn under the photo, pixels."""
METHOD_PANEL_HEIGHT = 320
"""Height the photo panels of the methods side by side are fitted into (their width: a third of the page), pixels."""
SANITY_PLOT_SIZE = (IMAGE_BOX[0], 260)
"""(width, height) of the PNG report's randomisation-check plot, pixels."""


# --------------------------------------------------------------------------- shared content


def mode_text(result: SensitivityResult) -> str:
    """How the map was computed, in words: which windows (exact, or approximate with how:
    :attr:`SensitivityResult.approximation_note`, fast mode's measured windows or RISE's random masks), the engine
    that computed an occlusion map's windows (and the one asked for when it differs), and whether the map is partial."""
    text = f"approximate: {result.approximation_note}" if result.approximate else "exact"
    if result.approximate and result.windowed:
        text = f"fast — {text}"
    if not result.windowed:
        return text
    engine, requested = result.engine, result.engine_requested
    text += f"; {engine} engine" + (f" ({requested} asked)" if requested != engine else "")
    if engine != "dense":
        text += " — only the changed part of each activation recomputed, same numbers"
    if result.partial:
        text += "; PARTIAL: only the cover sizes finished before the run stopped"
    return text


def parameter_rows(result: SensitivityResult) -> list[tuple[str, str]]:
    """``(name, value)`` rows describing how a map was made (for the PNG and HTML reports): the method and its
    settings (occlusion: cover sizes and stride; Grad-CAM and RISE: :attr:`SensitivityResult.method_parameters`)."""
    meta = result.metadata or {}
    timings = meta.get("timings_s") or {}
    total = timings.get("total") if isinstance(timings, dict) else None
    rows = [("target class", target_text(result)), ("method", result.method_label)]
    if result.windowed:
        covers = ", ".join(cover_title(result, i).removeprefix("cover ") for i in range(len(result.sizes)))
        rows.append(("cover sizes (fraction of the side)", covers))
        rows.append(("stride (fraction of the cover)", f"{result.stride:g}"))
    else:
        rows.append((f"{result.method_label} settings", method_settings_text(result)))
    return rows + [
        ("fill", result.fill),
        ("score", result.score_kind),
        ("photo fitted by", f"{result.fit} to {result.input_size[1]}×{result.input_size[0]} px"),
        ("windows and engine", mode_text(result)),
        ("forward passes", f"{result.passes:,} (+1 reference)"),
        ("time", f"{float(total):.2f} s" if isinstance(total, (int, float)) else "not recorded"),
        ("device", str(meta.get("device", "not recorded"))),
        ("versions", versions_text(result)),
    ]


def method_settings_text(result: SensitivityResult) -> str:
    """A per-pixel method's settings in one line, e.g. ``masks 1000 · grid 7 · p 0.5 · seed 0 · cell_px 32×32``
    (:attr:`SensitivityResult.method_parameters`; the passes have their own row)."""

    def value(item: object) -> str:
        if isinstance(item, (list, tuple)):
            return "×".join(value(v) for v in item)
        return f"{item:.4g}" if isinstance(item, float) else str(item)

    shown = [f"{name} {value(item)}" for name, item in result.method_parameters.items() if name != "passes"]
    return " · ".join(shown) or "none"


def story_text(result: SensitivityResult) -> str:
    """The story in words: ``metadata["story"]`` (kept by the dashboard), else :func:`sensmap.tell_story`."""
    story = (result.metadata or {}).get("story")
    return story if isinstance(story, str) and story else tell_story(result)


def trust_rows(result: SensitivityResult) -> list[tuple[str, str]]:
    """``(name, value)`` rows of how far the map can be trusted (for the PNG and HTML reports).

    The deletion and insertion AUCs against random orders (when ``metadata["faithfulness"]`` is
    there), for occlusion maps the stability across cover sizes (and across fills when ``metadata["stability"]``
    says several fills were compared) and the pointing check (when ``metadata["pointing"]`` is there).
    """
    meta = result.metadata or {}
    rows: list[tuple[str, str]] = []
    numbers = faithfulness_numbers(result)
    if numbers is None:
        rows.append(("faithfulness", "not checked (sensmap.faithfulness adds the deletion and insertion AUCs)"))
    else:
        rows += [
            ("deletion AUC", f"{numbers['deletion_auc']:.3f} (random order {numbers['random_deletion_auc']:.3f}; "
                             "lower = faithful)"),
            ("insertion AUC", f"{numbers['insertion_auc']:.3f} (random order {numbers['random_insertion_auc']:.3f}; "
                              "higher = faithful)"),
            ("faithfulness", faithfulness_verdict(numbers)),
        ]  # fmt: skip
    if result.windowed:
        rows += _stability_rows(result)
    pointing = meta.get("pointing")
    if isinstance(pointing, dict) and "share_inside" in pointing:
        y0, x0, y1, x1 = (round(100 * v) for v in pointing["box_photo"])
        rows.append((
            "pointing check",
            f"{pointing['share_inside']:.0%} of the positive support inside the box (rows {y0}-{y1} %, columns "
            f"{x0}-{x1} % of the photo; {pointing['box_area']:.0%} of the image); "
            f"strongest point inside: {'yes' if pointing['peak_inside'] else 'no'}",
        ))  # fmt: skip
    return rows


def _stability_rows(result: SensitivityResult) -> list[tuple[str, str]]:
    """The spread of an occlusion map across its cover sizes (and fills, when ``metadata["stability"]`` says so)."""
    factor, unit = support_unit(result)
    _, spread = stability(result.per_size)
    sizes = len(result.sizes)
    rows = [("stability", f"mean spread {format_value(spread * factor, unit, sign=False)} across {sizes} cover sizes")]
    recorded = (result.metadata or {}).get("stability")
    if isinstance(recorded, dict) and len(recorded.get("fills") or ()) > 1 and "score" in recorded:
        spread_all = format_value(float(recorded["score"]) * factor, unit, sign=False)
        rows.append(("stability with fills", f"mean spread {spread_all} across {recorded.get('across', 'fills')}"))
    return rows


def versions_text(result: SensitivityResult) -> str:
    """``sensmap 0.1.0 · tensorflow 2.19.0 · …`` from the result's metadata (what produced the map)."""
    found = (result.metadata or {}).get("versions")
    if not isinstance(found, dict) or not found:
        return "not recorded"
    return " · ".join(f"{name} {version}" for name, version in found.items())


def _photo_name(photo: LoadedImage | np.ndarray, results: Sequence[SensitivityResult]) -> str:
    """The photo's file name (no folders), from the photo or the first result's metadata."""
    source = photo.source if isinstance(photo, LoadedImage) else ""
    if not source or source.startswith("<"):
        recorded = (results[0].metadata or {}).get("photo") if results else None
        source = recorded.get("source", "") if isinstance(recorded, dict) else ""
    name = os.path.basename(str(source).replace("\\", "/")) if source else ""
    return name or "unnamed photo"


def _check_results(results: Sequence[SensitivityResult]) -> list[SensitivityResult]:
    results = list(results)
    if not results:
        raise ParameterError("a report needs at least one sensitivity result")
    return results


def _common_limit(results: Sequence[SensitivityResult]) -> float | None:
    """One colour limit for all results when they share units, else None (each its own)."""
    limits = unit_limits(results)
    return next(iter(limits.values())) if len(limits) == 1 else None


def colour_key_text(results: Sequence[SensitivityResult]) -> str:
    """The reports' colour key: what the colours mean and the unit (:func:`sensmap.render.colour_key`), once per
    kind of map, each named by the networks and methods it applies to when the results differ."""
    keys: dict[str, list[str]] = {}
    for result in results:
        keys.setdefault(colour_key(result), []).append(f"{result.model_name} ({result.method_label})")
    if len(keys) == 1:
        return next(iter(keys))
    return " ".join(f"{', '.join(dict.fromkeys(names))}: {key}" for key, names in keys.items())


@dataclass
class _Content:
    """What both reports show, computed once."""

    pixels: np.ndarray  # (h, w, 3) uint8 photo
    results: list[SensitivityResult]
    limit: float | None  # shared colour limit (probability difference), None when units differ
    stamp: str  # generation time, UTC
    numbers: dict | None  # metrics.agreement of two results' maps on the photo grid
    photo_name: str
    credit: str
    colour_key: str
    method_results: list[SensitivityResult]  # maps of one photo by several methods (side by side), in METHODS order
    methods: SideBySide | None  # their numbers

    def heading(self, number: int, result: SensitivityResult) -> str:
        return f"{number}. {result.model_name}" if len(self.results) > 1 else result.model_name


def _prepare(photo, results, photo_credit: str | None, generated: datetime | None,
             methods: Sequence[SensitivityResult] | None) -> _Content:  # fmt: skip
    results = _check_results(results)
    pixels = photo_pixels(photo)
    limit = _common_limit(results)
    numbers = None
    if len(results) == 2 and limit is not None:
        numbers = photo_agreement(*results, pixels.shape[:2])
    comparison = side_by_side(methods, pixels.shape[:2]) if methods else None
    method_results = sorted(methods or (), key=lambda r: comparison.methods.index(r.method))
    return _Content(
        pixels=pixels,
        results=results,
        limit=limit,
        stamp=utc(generated).strftime("%Y-%m-%d %H:%M UTC"),
        numbers=numbers,
        photo_name=_photo_name(photo, results),
        credit=f"Photo credit: {photo_credit}" if photo_credit else "Photo licence: see source",
        colour_key=colour_key_text([*results, *method_results]),
        method_results=method_results,
        methods=comparison,
    )


# --------------------------------------------------------------------------- PNG


def _resized(pixels: np.ndarray, size: tuple[int, int], method: Image.Resampling) -> np.ndarray:
    """The photo resized to ``size`` = (width, height) pixels."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize(size, method))


def _fit_photo(pixels: np.ndarray, box: tuple[int, int] = IMAGE_BOX) -> np.ndarray:
    """The photo resized (up or down) to fit ``box`` = (width, height) pixels, aspect kept."""
    height, width = pixels.shape[:2]
    scale = min(box[0] / width, box[1] / height)
    return _resized(pixels, (max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)


def _map_section(sheet: Sheet, y: float, shown: np.ndarray, values: np.ndarray, limit: float,
                 result: SensitivityResult, lines: Sequence[Line], numbers: dict | None = None) -> float:  # fmt: skip
    """The photo with the map ``values`` (``result``'s units, colour scale ``±limit``) and its colour bar (and the
    deletion/insertion curves when ``numbers`` are given) on the left, the text ``lines`` on the right; returns the
    y below."""
    left = sheet.map_panel(MARGIN, y + MARGIN, shown, values, limit, *support_unit(result), bar_width=IMAGE_BOX[0])
    if numbers is not None:
        left = sheet.curves(MARGIN, left + 18, numbers, *CURVE_PLOT_SIZE)
    text_x = MARGIN * 2 + IMAGE_BOX[0]
    right = sheet.block(text_x, y + MARGIN, lines, PNG_WIDTH - text_x - MARGIN)
    return max(left, right) + MARGIN // 2


def map_caption(result: SensitivityResult) -> str:
    """``map for 'timber_wolf'`` (``Grad-CAM map for …`` for other methods), marked when the map is approximate
    (:attr:`SensitivityResult.approximation_note`: fast mode, RISE)."""
    mark = f" (approximate: {result.approximation_note})" if result.approximate else ""
    method = "" if result.windowed else f"{result.method_label} "
    return f"{method}map for '{result.target_name}'{mark}"


def _result_lines(result: SensitivityResult, heading: str) -> list[Line]:
    lines: list[Line] = [(heading, 24, TEXT), (map_caption(result), 16, MUTED), ("", 12, TEXT)]
    for rank, name, value, marker in _top_rows(result):
        if rank == 1:
            lines.append((f"Top-{TOP_K} classes (whole photo)", 17, TEXT))
        lines.append((f"{rank}. {name}: {value}{' ← target' if marker else ''}", 15, TEXT))
    lines += [("", 12, TEXT), ("In words", 17, TEXT), (story_text(result), 15, TEXT)]
    lines += [("", 12, TEXT), ("Can the map be trusted?", 17, TEXT)]
    lines += [(f"{name}: {value}", 15, TEXT) for name, value in trust_rows(result)]
    if faithfulness_numbers(result) is not None:
        lines.append((f"({FAITHFUL_READING})", 14, MUTED))
    lines += [("", 12, TEXT), ("Parameters", 17, TEXT)]
    lines += [(f"{name}: {value}", 14, MUTED if name == "versions" else TEXT) for name, value in parameter_rows(result)]
    return lines


def _top_rows(result: SensitivityResult) -> list[tuple[int, str, str, str]]:
    """``(rank, class, output, "target" or "")`` of the top classes, empty for scores without classes; the output
    is a probability, or the raw output (logit) for the logit score."""
    if "top-k" not in supported_views(result.score_kind):
        return []
    shown = "{:.2f}" if result.score_kind == "logit" else "{:.1%}"
    return [
        (rank, name, shown.format(value), "target" if index == result.target else "")
        for rank, (index, name, value) in enumerate(result.top_k(TOP_K), start=1)
    ]


def _difference_lines(result_a: SensitivityResult, result_b: SensitivityResult, numbers: dict) -> list[Line]:
    share = f"{numbers['q']:.0%}"
    return [
        (f"Difference: {result_a.model_name} − {result_b.model_name}", 22, TEXT),
        (f"red: {result_a.model_name} relies on the area more; blue: {result_b.model_name} relies on it more", 15,
         MUTED),
        ("", 12, TEXT),
        ("Agreement of the two maps (on the photo grid)", 17, TEXT),
        (f"Spearman rank correlation: {numbers['spearman']:+.2f} (1 = same ranking, 0 = unrelated)", 15, TEXT),
        (f"Overlap of the top {share} areas (IoU): {numbers['top_iou']:.2f} (1 = same area, 0 = disjoint)", 15, TEXT),
    ]  # fmt: skip


def methods_heading(comparison: SideBySide) -> str:
    """``Methods side by side: MobileNetV2, map for 'timber_wolf'``."""
    return f"Methods side by side: {comparison.model_name}, maps for '{comparison.target_name}'"


def methods_note(comparison: SideBySide) -> str:
    """What the side-by-side's panels and numbers are (the colour scales, the shared random baseline)."""
    return (
        "Maps in the same unit share one colour scale; Grad-CAM's relative unit has its own. Agreement on the photo "
        f"grid (Spearman rank correlation; IoU of the top 20 % areas). Deletion and insertion AUCs against one random "
        f"baseline for every map: random orders of {comparison.block} px patches."
    )


def _methods_lines(comparison: SideBySide) -> list[Line]:
    """The text under the side-by-side's maps: agreement, AUCs, verdict and (when run) the randomisation checks."""
    lines: list[Line] = [("Agreement of the maps", 17, TEXT)]
    for pair, rho, iou in comparison.agreement_rows():
        lines.append((f"{pair}: Spearman {rho}, top-20 % IoU {iou}", 15, TEXT))
    lines += [("", 12, TEXT), (f"Faithfulness against one random baseline ({comparison.block} px patches)", 17, TEXT)]
    lines += [(f"{method}: deletion AUC {deletion}; insertion AUC {insertion}; margin over random {margin}", 15, TEXT)
              for method, deletion, insertion, margin in comparison.faithfulness_rows()]  # fmt: skip
    lines += [("", 12, TEXT), ("Which map does the network follow?", 17, TEXT), (comparison.verdict, 15, TEXT)]
    lines.append((VERDICT_RULE, 14, MUTED))
    if comparison.sanity:
        lines += [("", 12, TEXT), ("Randomisation check: Spearman with the original map (layers random)", 17, TEXT)]
        lines += [(f"{method}: {steps}; {outcome}", 15, TEXT) for method, steps, outcome in comparison.sanity_rows()]
        lines.append((f"Reading: {_sanity_reading(comparison)}", 14, MUTED))
    return lines


def _sanity_reading(comparison: SideBySide) -> str:
    return SANITY_READING.format(threshold=next(iter(comparison.sanity.values()))["threshold"])


def _sanity_series(results: Sequence[SensitivityResult]) -> list[tuple]:
    """``(label, colour, xs, ys, flat)`` of each result's randomisation check, for :meth:`Sheet.sanity_plot`."""
    series = []
    for result in results:
        numbers = sanity_numbers(result)
        if numbers is not None:
            series.append((result.method_label, METHOD_COLOURS[result.method], *sanity_curve(numbers)))
    return series


def _methods_section(sheet: Sheet, y: float, content: _Content) -> float:
    """The maps by several methods side by side (one colour bar per unit), their numbers and verdict; returns the
    y below."""
    comparison, results = content.methods, content.method_results
    width = PNG_WIDTH - 2 * MARGIN
    y = sheet.rule(y + 4, MARGIN, PNG_WIDTH - MARGIN)
    y = sheet.paragraph(MARGIN, y + MARGIN, methods_heading(comparison), width, 24, TEXT)
    y = sheet.paragraph(MARGIN, y + 2, methods_note(comparison), width, 15, MUTED)
    gap = 20
    panel = (width - gap * (len(results) - 1)) // len(results)
    shown = _fit_photo(content.pixels, (panel, METHOD_PANEL_HEIGHT))
    limits = unit_limits(results)
    bottom = y
    for column, result in enumerate(results):
        x = MARGIN + column * (panel + gap)
        top = sheet.text(x, y + 14, _method_panel_title(result), 17, TEXT, panel)
        values = map_to_photo(result.support, shown.shape[:2], result.fit)
        unit = support_unit(result)
        bottom = max(bottom, sheet.map_panel(x, top + 4, shown, values, limits[unit], *unit, bar_width=panel))
    y = sheet.block(MARGIN, bottom + 16, _methods_lines(comparison), width)
    series = _sanity_series(results)
    if series:
        threshold = float(next(iter(comparison.sanity.values()))["threshold"])
        y = sheet.sanity_plot(MARGIN, y + 14, series, threshold, *SANITY_PLOT_SIZE)
    return y + MARGIN // 2


def _method_panel_title(result: SensitivityResult) -> str:
    unit = support_unit(result)[1]
    return f"{result.method_label} ({unit}{', approximate' if result.approximate else ''})"


def _header(sheet: Sheet, title: str, content: _Content) -> float:
    width = PNG_WIDTH - 2 * MARGIN
    y = sheet.text(MARGIN, MARGIN, title, 32, TEXT, width)
    y = sheet.text(MARGIN, y + 4, f"Generated {content.stamp} by sensmap {__version__}", 16, MUTED, width)
    y = sheet.paragraph(MARGIN, y + 4, f"Colour key: {content.colour_key}", width, 16, TEXT)
    return sheet.rule(y + 10, MARGIN, PNG_WIDTH - MARGIN)


def _footer(sheet: Sheet, y: float, content: _Content) -> float:
    width = PNG_WIDTH - 2 * MARGIN
    y = sheet.rule(y + 4, MARGIN, PNG_WIDTH - MARGIN)
    y = sheet.text(MARGIN, y + 11, f"Photo: {content.photo_name}", 15, MUTED, width)
    y = sheet.paragraph(MARGIN, y, content.credit, width, 15, MUTED)
    return sheet.pad(y + MARGIN // 2)


def report_figure(
    photo: LoadedImage | np.ndarray,
    results: Sequence[SensitivityResult],
    *,
    title: str = DEFAULT_TITLE,
    photo_credit: str | None = None,
    generated: datetime | None = None,
    methods: Sequence[SensitivityResult] | None = None,
) -> Figure:
    """The one-page report of :func:`report_png` as a matplotlib figure (:data:`PNG_WIDTH` px wide at 100 dpi)."""
    content = _prepare(photo, results, photo_credit, generated, methods)
    shown = _fit_photo(content.pixels)
    sheet = Sheet(PNG_WIDTH)
    y = _header(sheet, title, content)
    for number, result in enumerate(content.results, start=1):
        values = map_to_photo(result.support, shown.shape[:2], result.fit)
        bound = symmetric_limit(result.support, limit=content.limit)
        lines = _result_lines(result, content.heading(number, result))
        y = _map_section(sheet, y, shown, values, bound, result, lines, faithfulness_numbers(result))
    if content.numbers is not None:
        first, second = content.results
        a, b = (map_to_photo(r.support, shown.shape[:2], r.fit) for r in content.results)
        lines = _difference_lines(first, second, content.numbers)
        y = _map_section(sheet, y, shown, a - b, content.limit, first, lines)
    if content.methods is not None:
        y = _methods_section(sheet, y, content)
    _footer(sheet, y, content)
    return sheet.figure()


def report_png(
    photo: LoadedImage | np.ndarray,
    results: Sequence[SensitivityResult],
    *,
    title: str = DEFAULT_TITLE,
    photo_credit: str | None = None,
    generated: datetime | None = None,
    methods: Sequence[SensitivityResult] | None = None,
) -> bytes:
    """A one-page PNG report (matplotlib, no browser), returned as PNG bytes without metadata.

    Per result: the photo with its map (one shared symmetric colour scale when the results
    share units), a colour bar in its unit (pp, log-odds, Grad-CAM's relative unit), the network, its top-5 classes,
    the target, the story in words, the trust checks of :func:`trust_rows` (with the deletion/insertion curves
    against random orders when the faithfulness numbers are there), the parameters and the versions. With two
    results also their difference (A − B) and :func:`sensmap.metrics.agreement` numbers. With ``methods`` (maps of
    the photo by several methods, each with faithfulness numbers against the shared random baseline; see
    :func:`sensmap.sidebyside.side_by_side`) the methods side by side: their maps (one colour scale per unit), their
    agreement, AUCs and margins, the verdict and, when ``metadata["sanity"]`` is there, the randomisation checks.
    ``generated`` (default: now) is shown in UTC. Names are printed as given (DejaVu Sans: "MobileNet α0.75 192px").
    """
    figure = report_figure(photo, results, title=title, photo_credit=photo_credit, generated=generated, methods=methods)
    return png_bytes(figure)


def overlay_png(
    photo: LoadedImage | np.ndarray,
    result: SensitivityResult,
    *,
    opacity: float = DEFAULT_OPACITY,
    limit: float | None = None,
) -> bytes:
    """The photo with the support map blended on it and a caption and colour bar below (PNG bytes, no metadata).

    The photo keeps its own resolution (small photos are enlarged, nearest neighbour, to :data:`OVERLAY_MIN_WIDTH`
    px so the legend stays legible). Same colours as the figures (red supports, blue inhibits, 0
    see-through); ``limit`` (the result's units: probability difference, or log-odds) fixes the symmetric scale,
    default the map's largest ``|support|``. The caption marks approximate maps (fast mode, RISE).
    """
    return _overlay_sheet(photo, result, opacity, limit).png()


def _overlay_sheet(
    photo: LoadedImage | np.ndarray, result: SensitivityResult, opacity: float, limit: float | None
) -> Sheet:
    pixels = photo_pixels(photo)
    height, width = pixels.shape[:2]
    if width < OVERLAY_MIN_WIDTH:
        size = (OVERLAY_MIN_WIDTH, max(1, round(height * OVERLAY_MIN_WIDTH / width)))
        pixels = _resized(pixels, size, Image.Resampling.NEAREST)
    values = map_to_photo(result.support, pixels.shape[:2], result.fit)
    bound = symmetric_limit(result.support, limit=limit)
    caption = f"{result.model_name}: {result.target_name} ({result.probability:.1%}), {result.passes} passes"
    caption += f", approximate ({result.approximation_note})" if result.approximate else ""
    sheet = Sheet(pixels.shape[1])
    factor, unit = support_unit(result)
    bar = min(pixels.shape[1] - 2 * MARGIN, 520)
    sheet.pad(sheet.map_panel(0, 0, pixels, values, bound, factor, unit, opacity, caption=caption, bar_width=bar) + 6)
    return sheet


# --------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #212529; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } .muted { color: #6c757d; } .key { margin: 0.5rem 0 1.5rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; } td, th { padding: 0.2rem 0.8rem 0.2rem 0;
text-align: left; vertical-align: top; border-bottom: 1px solid #dee2e6; } .tables { display: flex; gap: 3rem;
flex-wrap: wrap; } section { margin-bottom: 2.5rem; } .story { max-width: 60rem; font-size: 1.1rem; }
footer { border-top: 1px solid #dee2e6; padding-top: 0.5rem; }
"""


def _table(rows: Sequence[Sequence[object]], header: Sequence[str] | None = None) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


class _Figures:
    """Plotly figures as HTML fragments; plotly.js is inlined once, with the first one."""

    def __init__(self) -> None:
        self.first = True

    def __call__(self, fig, height: int = 520) -> str:
        fragment = pio.to_html(
            fig,
            include_plotlyjs=self.first,
            full_html=False,
            default_height=f"{height}px",
            config={"displaylogo": False, "responsive": True},
        )
        self.first = False
        return f'<div class="figure">{fragment}</div>'


def _result_section(photo, result: SensitivityResult, heading: str, limit: float | None, embed: _Figures) -> str:
    top = _top_rows(result)
    column = "logit" if result.score_kind == "logit" else "probability"
    numbers = faithfulness_numbers(result)
    return "".join(
        [
            f"<section><h2>{html.escape(heading)}</h2>",
            f'<p class="muted">{html.escape(map_caption(result))}</p>',
            embed(overlay_figure(photo, result, limit=limit)),
            f'<h3>In words</h3><p class="story">{html.escape(story_text(result))}</p>',
            '<div class="tables">',
            f"<div><h3>Top classes (whole photo)</h3>{_table(top, ('#', 'class', column, ''))}</div>" if top else "",
            "<div><h3>Can the map be trusted?</h3>",
            _table(trust_rows(result)),
            f'<p class="muted">{html.escape(FAITHFUL_READING)}</p>' if numbers is not None else "",
            "</div><div><h3>Parameters</h3>",
            _table(parameter_rows(result)),
            "</div></div>",
            embed(faithfulness_figure(result), 460) if numbers is not None else "",
            *_window_figures(photo, result, embed),
            "</section>",
        ]
    )


def _window_figures(photo, result: SensitivityResult, embed: _Figures) -> list[str]:
    """An occlusion map's stability, per-size and label-flip figures (per-pixel methods have no windows: none; the
    label flip only for scores with classes, see :func:`sensmap.scores.supported_views`)."""
    if not result.windowed:
        return []
    flip = "label-flip" in supported_views(result.score_kind)
    return [embed(stability_figure(photo, result), 520), embed(per_size_figure(result), 380),
            embed(label_flip_figure(result), 480) if flip else ""]  # fmt: skip


def _methods_html(content: _Content, embed: _Figures) -> str:
    """The methods side by side: their maps, agreement and faithfulness tables, the verdict, the sanity checks."""
    comparison = content.methods
    parts = [
        f"<section><h2>{html.escape(methods_heading(comparison))}</h2>",
        f'<p class="muted">{html.escape(methods_note(comparison))}</p>',
        embed(methods_figure(content.pixels, content.method_results), 520),
        '<div class="tables"><div><h3>Agreement of the maps</h3>',
        _table(comparison.agreement_rows(), ("maps", "Spearman", "top-20 % IoU")),
        f"</div><div><h3>Faithfulness ({comparison.block} px random patches)</h3>",
        _table(comparison.faithfulness_rows(), ("method", "deletion AUC", "insertion AUC", "margin over random")),
        "</div></div>",
        f'<h3>Which map does the network follow?</h3><p class="story">{html.escape(comparison.verdict)}</p>',
        f'<p class="muted">{html.escape(VERDICT_RULE)}</p>',
    ]
    if comparison.sanity:
        parts += [
            "<h3>Randomisation check</h3>",
            embed(sanity_figure(content.method_results), 440),
            _table(comparison.sanity_rows(), ("method", "Spearman per step (layers random)", "outcome")),
            f'<p class="muted">Reading: {html.escape(_sanity_reading(comparison))}</p>',
        ]
    return "".join(parts) + "</section>"


def report_html(
    photo: LoadedImage | np.ndarray,
    results: Sequence[SensitivityResult],
    *,
    title: str = DEFAULT_TITLE,
    photo_credit: str | None = None,
    generated: datetime | None = None,
    methods: Sequence[SensitivityResult] | None = None,
) -> str:
    """A self-contained interactive HTML report (plotly.js and the photo inline; no CDN, no network).

    Per result: the overlay, the story in words, top-k, trust-check and parameter tables, the
    deletion/insertion curves (when the faithfulness numbers are there) and, for occlusion maps, the stability map,
    the per-size maps and the label-flip map; with two results first the side-by-side comparison and
    the agreement numbers. All maps share one colour scale when the results share units. With ``methods`` (as for
    :func:`report_png`) the methods side by side, with their tables, the verdict and the randomisation checks.
    """
    content = _prepare(photo, results, photo_credit, generated, methods)
    embed = _Figures()
    parts = [
        f"<header><h1>{html.escape(title)}</h1>",
        f'<p class="muted">Generated {content.stamp} by sensmap {html.escape(__version__)}</p>',
        f'<p class="key">Colour key: {html.escape(content.colour_key)}</p></header>',
    ]
    if content.numbers is not None:
        numbers = content.numbers
        rows = [
            ("Spearman rank correlation", f"{numbers['spearman']:+.2f}", "1 = same ranking, 0 = unrelated"),
            (f"Overlap of the top {numbers['q']:.0%} areas (IoU)", f"{numbers['top_iou']:.2f}", "1 = same area"),
        ]
        figure = compare_figure(content.pixels, *content.results, limit=content.limit)
        parts += ["<section><h2>Comparison</h2>", embed(figure, 480), _table(rows), "</section>"]
    for number, result in enumerate(content.results, start=1):
        parts.append(_result_section(content.pixels, result, content.heading(number, result), content.limit, embed))
    if content.methods is not None:
        parts.append(_methods_html(content, embed))
    parts.append(
        f'<footer class="muted"><p>Photo: {html.escape(content.photo_name)}</p>'
        f"<p>{html.escape(content.credit)}</p></footer>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>" + "\n".join(parts) + "</body></html>\n"
    )
