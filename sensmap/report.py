"""Shareable reports of sensitivity results: a PNG (Pillow only) and a self-contained interactive HTML.

Neither needs a browser, Chrome or kaleido to be produced, nor a network connection to be viewed:
the PNG is drawn with Pillow, the HTML embeds plotly.js and the photo inline. Colours are those
of :mod:`sensmap.render` (red: covering lowers the class probability, the area supports the
class; blue: covering raises it, the area inhibits the class); values are shown in percentage
points ("pp", probability difference ×100), or log-odds for ``score_kind="log-odds"``.
No EXIF, GPS or text metadata is written into the PNG, and file names are generated, never
taken from an uploaded file.
"""

from __future__ import annotations

import html
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache

import numpy as np
import plotly.io as pio
from PIL import Image, ImageDraw, ImageFont

from . import __version__
from .errors import ParameterError
from .images import LoadedImage, map_to_photo, to_png_bytes
from .metrics import agreement, stability
from .render import (
    COLOUR_CAPTION,
    DEFAULT_OPACITY,
    FAITHFUL_READING,
    MAP_CURVE_COLOUR,
    RANDOM_CURVE_COLOUR,
    blend_overlay,
    compare_figure,
    cover_title,
    faithfulness_figure,
    faithfulness_numbers,
    faithfulness_verdict,
    format_value,
    label_flip_figure,
    map_on_photo,
    overlay_figure,
    per_size_figure,
    photo_pixels,
    stability_figure,
    support_unit,
    symmetric_limit,
)
from .result import SensitivityResult
from .story import tell_story

DEFAULT_TITLE = "sensmap report"
TOP_K = 5

PNG_WIDTH = 1280
OVERLAY_MIN_WIDTH = 560
MARGIN = 28
IMAGE_BOX = (600, 440)  # (width, height) the photo panels are fitted into, pixels
BAR_HEIGHT = 16
TEXT = (33, 37, 41)
MUTED = (108, 117, 125)
RULE = (206, 212, 218)
BACKGROUND = (255, 255, 255)

_TRANSLIT = {
    "α": "a",
    "β": "b",
    "γ": "g",
    "μ": "u",
    "×": "x",
    "−": "-",
    "–": "-",
    "—": "-",
    "→": "->",
    "←": "<-",
    "↑": "^",
    "↓": "v",
    "≥": ">=",
    "≤": "<=",
    "‘": "'",
    "’": "'",
    "“": '"',
    "”": '"',
}
_PNG_EXTRA_GLYPHS = "·°±…"  # non-ASCII characters the default Pillow font (Aileron) can draw


def ascii_text(text: object, keep: str = "") -> str:
    """``text`` in printable ASCII (plus the characters in ``keep``): α→a, ×→x, accents dropped, rest → ``?``."""
    value = "".join(_TRANSLIT.get(ch, ch) for ch in str(text))
    out = []
    for ch in unicodedata.normalize("NFKD", value):
        if ch in keep or " " <= ch <= "~":
            out.append(ch)
        elif not unicodedata.combining(ch):
            out.append(" " if ch.isspace() else "?")
    return "".join(out)


def _png_text(text: object) -> str:
    return ascii_text(text, keep=_PNG_EXTRA_GLYPHS)


# --------------------------------------------------------------------------- shared content


def mode_text(result: SensitivityResult) -> str:
    """How the map was computed, in words: exact, incremental (exact) or fast (approximate, how much measured)."""
    mode = str((result.metadata or {}).get("mode", "exact"))
    if result.approximate:
        return (
            f"{mode} — approximate: {result.passes:,} of {result.window_total:,} windows measured, "
            "the rest predicted from the measured ones"
        )
    if mode == "incremental":
        return "incremental — exact (only the changed part of each activation recomputed)"
    return "exact"


def parameter_rows(result: SensitivityResult) -> list[tuple[str, str]]:
    """``(name, value)`` rows describing how a map was made (for the PNG and HTML reports)."""
    meta = result.metadata or {}
    timings = meta.get("timings_s") or {}
    total = timings.get("total") if isinstance(timings, dict) else None
    covers = ", ".join(cover_title(result, i).removeprefix("cover ") for i in range(len(result.sizes)))
    return [
        ("target class", f"{result.target_name} (p = {result.probability:.1%})"),
        ("cover sizes (fraction of the side)", covers),
        ("stride (fraction of the cover)", f"{result.stride:g}"),
        ("fill", result.fill),
        ("score", result.score_kind),
        ("photo fitted by", f"{result.fit} to {result.input_size[1]}×{result.input_size[0]} px"),
        ("engine mode", mode_text(result)),
        ("forward passes", f"{result.passes:,} (+1 reference)"),
        ("time", f"{float(total):.2f} s" if isinstance(total, (int, float)) else "not recorded"),
        ("device", str(meta.get("device", "not recorded"))),
        ("versions", versions_text(result)),
    ]


def story_text(result: SensitivityResult) -> str:
    """The story in words: ``metadata["story"]`` (kept by the dashboard), else :func:`sensmap.tell_story`."""
    story = (result.metadata or {}).get("story")
    return story if isinstance(story, str) and story else tell_story(result)


def trust_rows(result: SensitivityResult) -> list[tuple[str, str]]:
    """``(name, value)`` rows of how far the map can be trusted (for the PNG and HTML reports).

    The deletion and insertion AUCs against random orders (when ``metadata["faithfulness"]`` is
    there), the stability across cover sizes (and across fills when ``metadata["stability"]`` says
    several fills were compared) and the pointing check (when ``metadata["pointing"]`` is there).
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
    factor, unit = support_unit(result)
    _, spread = stability(result.per_size)
    sizes = len(result.sizes)
    rows.append(
        ("stability", f"mean spread {format_value(spread * factor, unit, sign=False)} across {sizes} cover sizes")
    )
    recorded = meta.get("stability")
    if isinstance(recorded, dict) and len(recorded.get("fills") or ()) > 1 and "score" in recorded:
        spread_all = format_value(float(recorded["score"]) * factor, unit, sign=False)
        rows.append(("stability with fills", f"mean spread {spread_all} across {recorded.get('across', 'fills')}"))
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
    if len({support_unit(r) for r in results}) != 1:
        return None
    return symmetric_limit(*(r.support for r in results))


def _timestamp(generated: datetime | None) -> datetime:
    return (generated or datetime.now(timezone.utc)).astimezone(timezone.utc)


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
    unit_note: str

    def heading(self, number: int, result: SensitivityResult) -> str:
        return f"{number}. {result.model_name}" if len(self.results) > 1 else result.model_name


def _prepare(photo, results, photo_credit: str | None, generated: datetime | None) -> _Content:
    results = _check_results(results)
    pixels = photo_pixels(photo)
    limit = _common_limit(results)
    numbers = None
    if len(results) == 2 and limit is not None:
        numbers = agreement(*(map_on_photo(r, r.support, pixels.shape[:2]) for r in results))
    units = {support_unit(r)[1] for r in results}
    unit_note = (
        "Values in percentage points (pp) of class probability."
        if units == {"pp"}
        else "Values in percentage points (pp) of probability or in log-odds, as labelled."
    )
    return _Content(
        pixels=pixels,
        results=results,
        limit=limit,
        stamp=_timestamp(generated).strftime("%Y-%m-%d %H:%M UTC"),
        numbers=numbers,
        photo_name=_photo_name(photo, results),
        credit=f"Photo credit: {photo_credit}" if photo_credit else "Photo licence: see source",
        unit_note=unit_note,
    )


# --------------------------------------------------------------------------- PNG


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


class _Canvas:
    """A white strip of the report that text and images are written onto, top to bottom."""

    def __init__(self, height: int, width: int = PNG_WIDTH) -> None:
        self.image = Image.new("RGB", (width, height), BACKGROUND)
        self.draw = ImageDraw.Draw(self.image)

    def text(self, xy: tuple[int, int], text: object, size: int = 16, fill=TEXT, width: int | None = None) -> int:
        """Write one line (cut with "..." to ``width`` px); returns the y below it."""
        font = _font(size)
        line = _png_text(text)
        if width is not None and self.draw.textlength(line, font=font) > width:
            while line and self.draw.textlength(line + "...", font=font) > width:
                line = line[:-1]
            line += "..."
        self.draw.text(xy, line, font=font, fill=fill)
        return xy[1] + round(size * 1.35)

    def paragraph(self, xy: tuple[int, int], text: object, width: int, size: int = 16, fill=TEXT) -> int:
        """Write ``text`` wrapped at word boundaries to ``width`` px; returns the y below it."""
        x, y = xy
        font = _font(size)
        line = ""
        for word in _png_text(text).split(" "):
            candidate = f"{line} {word}".strip()
            if line and self.draw.textlength(candidate, font=font) > width:
                y = self.text((x, y), line, size, fill, width)
                candidate = word
            line = candidate
        return self.text((x, y), line, size, fill, width) if line else y

    def rule(self, y: int) -> None:
        self.draw.line([(MARGIN, y), (PNG_WIDTH - MARGIN, y)], fill=RULE, width=1)


def _fit_photo(pixels: np.ndarray) -> np.ndarray:
    """The photo resized (up or down) to fit :data:`IMAGE_BOX`, aspect kept."""
    height, width = pixels.shape[:2]
    scale = min(IMAGE_BOX[0] / width, IMAGE_BOX[1] / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize(size, Image.Resampling.LANCZOS))


def _colour_bar(canvas: _Canvas, x: int, y: int, width: int, limit: float, unit: str) -> int:
    """A colour bar ``-limit..+limit`` (display units) with its labels; returns the y below it."""
    ramp = np.linspace(-1.0, 1.0, width)[None, :].repeat(BAR_HEIGHT, axis=0)
    white = np.full((BAR_HEIGHT, width, 3), 255, dtype=np.uint8)
    canvas.image.paste(Image.fromarray(blend_overlay(white, ramp, 1.0, opacity=1.0)), (x, y))
    canvas.draw.rectangle([x, y, x + width - 1, y + BAR_HEIGHT - 1], outline=RULE)
    peak = format_value(limit, unit, sign=False)
    below = y + BAR_HEIGHT + 4
    canvas.text((x, below), f"-{peak}: inhibits (blue)", 14, MUTED)
    middle = f"0 {unit}"
    canvas.text((x + (width - round(canvas.draw.textlength(middle, font=_font(14)))) // 2, below), middle, 14, MUTED)
    right = f"+{peak}: supports (red)"
    end = canvas.text((x + width - round(canvas.draw.textlength(right, font=_font(14))), below), right, 14, MUTED)
    return end


CURVE_PLOT_SIZE = (IMAGE_BOX[0], 210)
"""(width, height) of the PNG report's deletion/insertion plot, drawn under the photo."""


def _dashed(draw: ImageDraw.ImageDraw, points: Sequence[tuple[float, float]], fill, width: int, dash: int = 6) -> None:
    """A dashed polyline (Pillow draws only solid lines)."""
    for (xa, ya), (xb, yb) in zip(points[:-1], points[1:], strict=True):
        pieces = max(1, int(np.hypot(xb - xa, yb - ya) // dash))
        for i in range(0, pieces, 2):
            t0, t1 = i / pieces, min(1.0, (i + 1) / pieces)
            draw.line([(xa + (xb - xa) * t0, ya + (yb - ya) * t0), (xa + (xb - xa) * t1, ya + (yb - ya) * t1)],
                      fill=fill, width=width)  # fmt: skip


def _curve_plot(numbers: dict, size: tuple[int, int] = CURVE_PLOT_SIZE) -> Image.Image:
    """Deletion and insertion curves (map order solid, random order dashed), side by side, with their AUCs."""
    width, height = size
    canvas = _Canvas(height, width)
    fractions = np.asarray(numbers["fractions"], dtype=np.float64)
    panel_w = (width - 24) // 2
    left_pad, top_pad, bottom_pad = 44, 24, 62
    panels = (("deletion", "removed", "lower"), ("insertion", "inserted", "higher"))
    for number, (kind, verb, better) in enumerate(panels):
        x0 = number * (panel_w + 24) + left_pad
        x1, y0, y1 = number * (panel_w + 24) + panel_w - 6, top_pad, height - bottom_pad
        canvas.text((x0 - left_pad, 0), f"{kind.capitalize()} ({better} curve = faithful)", 15, TEXT)
        canvas.draw.rectangle([x0, y0, x1, y1], outline=RULE)
        for level in (0.0, 0.5, 1.0):
            y = y1 - level * (y1 - y0)
            canvas.draw.line([(x0, y), (x1, y)], fill=RULE)
            canvas.text((x0 - left_pad, round(y) - 8), f"{level:.0%}", 12, MUTED)
        canvas.text((x0, y1 + 2), "0", 12, MUTED)
        canvas.text((x1 - 6, y1 + 2), "1", 12, MUTED)
        canvas.text((x0 + 24, y1 + 2), f"fraction of pixels {verb}", 12, MUTED)

        def points(curve: Sequence[float], x0=x0, x1=x1, y0=y0, y1=y1) -> list[tuple[float, float]]:
            values = np.clip(np.asarray(curve, dtype=np.float64), 0.0, 1.0)
            return [(x0 + f * (x1 - x0), y1 - v * (y1 - y0)) for f, v in zip(fractions, values, strict=True)]

        _dashed(canvas.draw, points(numbers[f"random_{kind}_curve"]), RANDOM_CURVE_COLOUR, 2)
        canvas.draw.line(points(numbers[f"{kind}_curve"]), fill=MAP_CURVE_COLOUR, width=3, joint="curve")
        legend_y = y1 + 20
        canvas.draw.line([(x0, legend_y + 8), (x0 + 22, legend_y + 8)], fill=MAP_CURVE_COLOUR, width=3)
        canvas.text((x0 + 28, legend_y), f"map order, AUC {numbers[f'{kind}_auc']:.3f}", 13, TEXT)
        _dashed(canvas.draw, [(x0, legend_y + 27), (x0 + 22, legend_y + 27)], RANDOM_CURVE_COLOUR, 2)
        canvas.text((x0 + 28, legend_y + 19), f"random order, AUC {numbers[f'random_{kind}_auc']:.3f}", 13, TEXT)
    return canvas.image


def _map_panel(
    shown: np.ndarray,
    values: np.ndarray,
    limit: float,
    unit: str,
    lines: Sequence[tuple[str, int, tuple]],
    below: Image.Image | None = None,
) -> Image.Image:
    """Photo with the map ``values`` (display units) blended on it and a colour bar (and ``below`` under
    them); text ``lines`` beside."""
    text_x = MARGIN * 2 + IMAGE_BOX[0]
    canvas = _Canvas(IMAGE_BOX[1] + 1400)
    canvas.image.paste(Image.fromarray(blend_overlay(shown, values, limit, DEFAULT_OPACITY)), (MARGIN, MARGIN))
    bottom = _colour_bar(canvas, MARGIN, MARGIN + shown.shape[0] + 10, shown.shape[1], limit, unit)
    if below is not None:
        canvas.image.paste(below, (MARGIN, bottom + 18))
        bottom += 18 + below.height
    y = MARGIN
    for text, size, colour in lines:
        y = canvas.paragraph((text_x, y), text, PNG_WIDTH - text_x - MARGIN, size, colour) if text else y + size
    return canvas.image.crop((0, 0, PNG_WIDTH, max(bottom, y) + MARGIN // 2))


def _result_lines(result: SensitivityResult, heading: str) -> list[tuple[str, int, tuple]]:
    lines: list[tuple[str, int, tuple]] = [
        (heading, 24, TEXT),
        (f"map for '{result.target_name}'", 16, MUTED),
        ("", 12, TEXT),
    ]
    lines.append((f"Top-{TOP_K} classes (whole photo)", 17, TEXT))
    for rank, (index, name, probability) in enumerate(result.top_k(TOP_K), start=1):
        marker = "  <- target" if index == result.target else ""
        lines.append((f"{rank}. {name}: {probability:.1%}{marker}", 15, TEXT))
    lines += [("", 12, TEXT), ("In words", 17, TEXT), (story_text(result), 15, TEXT)]
    lines += [("", 12, TEXT), ("Can the map be trusted?", 17, TEXT)]
    lines += [(f"{name}: {value}", 15, TEXT) for name, value in trust_rows(result)]
    if faithfulness_numbers(result) is not None:
        lines.append((f"({FAITHFUL_READING})", 14, MUTED))
    lines += [("", 12, TEXT), ("Parameters", 17, TEXT)]
    lines += [(f"{name}: {value}", 14, MUTED if name == "versions" else TEXT) for name, value in parameter_rows(result)]
    return lines


def _difference_lines(result_a: SensitivityResult, result_b: SensitivityResult, numbers: dict) -> list:
    share = f"{numbers['q']:.0%}"
    return [
        (f"Difference: {result_a.model_name} - {result_b.model_name}", 22, TEXT),
        (
            f"red: {result_a.model_name} relies on the area more; blue: {result_b.model_name} relies on it more",
            15,
            MUTED,
        ),
        ("", 12, TEXT),
        ("Agreement of the two maps (on the photo grid)", 17, TEXT),
        (f"Spearman rank correlation: {numbers['spearman']:+.2f} (1 = same ranking, 0 = unrelated)", 15, TEXT),
        (f"Overlap of the top {share} areas (IoU): {numbers['top_iou']:.2f} (1 = same area, 0 = disjoint)", 15, TEXT),
    ]


def _header(title: str, content: _Content) -> Image.Image:
    canvas = _Canvas(400)
    y = canvas.text((MARGIN, MARGIN), title, 32, TEXT, PNG_WIDTH - 2 * MARGIN)
    y = canvas.text((MARGIN, y + 4), f"Generated {content.stamp} by sensmap {__version__}", 16, MUTED)
    key = f"Colour key: {COLOUR_CAPTION}. {content.unit_note}"
    y = canvas.paragraph((MARGIN, y + 4), key, PNG_WIDTH - 2 * MARGIN, 16, TEXT)
    canvas.rule(y + 10)
    return canvas.image.crop((0, 0, PNG_WIDTH, y + 12))


def _footer(content: _Content) -> Image.Image:
    canvas = _Canvas(200)
    canvas.rule(4)
    y = canvas.text((MARGIN, 16), f"Photo: {content.photo_name}", 15, MUTED, PNG_WIDTH - 2 * MARGIN)
    y = canvas.paragraph((MARGIN, y), content.credit, PNG_WIDTH - 2 * MARGIN, 15, MUTED)
    return canvas.image.crop((0, 0, PNG_WIDTH, y + MARGIN // 2))


def report_png(
    photo: LoadedImage | np.ndarray,
    results: Sequence[SensitivityResult],
    *,
    title: str = DEFAULT_TITLE,
    photo_credit: str | None = None,
    generated: datetime | None = None,
) -> bytes:
    """A one-page PNG report (Pillow only), returned as PNG bytes without metadata.

    Per result: the photo with its map (one shared symmetric colour scale when the results
    share units), a colour bar in pp, the network, its top-5 classes, the target, the story in
    words, the trust checks of :func:`trust_rows` (with a small deletion/insertion plot when the
    faithfulness numbers are there), the parameters and the versions. With two results also their difference (A − B) and
    :func:`sensmap.metrics.agreement` numbers. ``generated`` (default: now) is shown in UTC.
    Text is drawn in ASCII (α→a, ×→x) as Pillow's default font has no other glyphs.
    """
    content = _prepare(photo, results, photo_credit, generated)
    shown = _fit_photo(content.pixels)
    strips = [_header(title, content)]
    for number, result in enumerate(content.results, start=1):
        factor, unit = support_unit(result)
        values = map_to_photo(result.support, shown.shape[:2], result.fit) * factor
        bound = symmetric_limit(result.support, limit=content.limit) * factor
        numbers = faithfulness_numbers(result)
        curves = _curve_plot(numbers) if numbers is not None else None
        lines = _result_lines(result, content.heading(number, result))
        strips.append(_map_panel(shown, values, bound, unit, lines, curves))
    if content.numbers is not None:
        first, second = content.results
        factor, unit = support_unit(first)
        a, b = (map_to_photo(r.support, shown.shape[:2], r.fit) for r in content.results)
        lines = _difference_lines(first, second, content.numbers)
        strips.append(_map_panel(shown, (a - b) * factor, content.limit * factor, unit, lines))
    strips.append(_footer(content))
    return to_png_bytes(np.concatenate([np.asarray(strip) for strip in strips], axis=0))


def overlay_png(
    photo: LoadedImage | np.ndarray,
    result: SensitivityResult,
    *,
    opacity: float = DEFAULT_OPACITY,
    limit: float | None = None,
) -> bytes:
    """The photo with the support map blended on it and a colour bar below (PNG bytes, no metadata).

    The photo keeps its own resolution (small photos are enlarged to :data:`OVERLAY_MIN_WIDTH` px so
    the legend stays legible). Same colours as the figures (red supports, blue inhibits, 0
    see-through); ``limit`` (probability difference) fixes the symmetric scale, default the map's
    largest ``|support|``.
    """
    pixels = photo_pixels(photo)
    values = map_to_photo(result.support, pixels.shape[:2], result.fit)
    scale_limit = symmetric_limit(result.support, limit=limit)
    blended = Image.fromarray(blend_overlay(pixels, values, scale_limit, opacity))
    if blended.width < OVERLAY_MIN_WIDTH:
        factor = OVERLAY_MIN_WIDTH / blended.width
        blended = blended.resize((OVERLAY_MIN_WIDTH, max(1, round(blended.height * factor))), Image.Resampling.NEAREST)
    width = blended.width
    legend = _Canvas(BAR_HEIGHT + 64, width)
    bar_width = min(width - 2 * MARGIN, 520)
    x = (width - bar_width) // 2
    caption = f"{result.model_name}: {result.target_name} ({result.probability:.1%}), {result.passes} passes"
    y = legend.text((x, 6), caption, 14, TEXT, bar_width)
    unit_scale, unit = support_unit(result)
    bottom = _colour_bar(legend, x, y + 2, bar_width, scale_limit * unit_scale, unit)
    sheet = Image.new("RGB", (width, blended.height + bottom + 6), BACKGROUND)
    sheet.paste(blended, (0, 0))
    sheet.paste(legend.image.crop((0, 0, width, bottom + 6)), (0, blended.height))
    return to_png_bytes(np.asarray(sheet))


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
    top = [
        (rank, name, f"{p:.1%}", "target" if i == result.target else "")
        for rank, (i, name, p) in enumerate(result.top_k(TOP_K), start=1)
    ]
    numbers = faithfulness_numbers(result)
    return "".join(
        [
            f"<section><h2>{html.escape(heading)}</h2>",
            f"<p class=\"muted\">map for '{html.escape(result.target_name)}'</p>",
            embed(overlay_figure(photo, result, limit=limit)),
            f'<h3>In words</h3><p class="story">{html.escape(story_text(result))}</p>',
            '<div class="tables"><div><h3>Top classes (whole photo)</h3>',
            _table(top, ("#", "class", "probability", "")),
            "</div><div><h3>Can the map be trusted?</h3>",
            _table(trust_rows(result)),
            f'<p class="muted">{html.escape(FAITHFUL_READING)}</p>' if numbers is not None else "",
            "</div><div><h3>Parameters</h3>",
            _table(parameter_rows(result)),
            "</div></div>",
            embed(faithfulness_figure(result), 460) if numbers is not None else "",
            embed(stability_figure(photo, result), 520),
            embed(per_size_figure(result), 380),
            embed(label_flip_figure(result), 480),
            "</section>",
        ]
    )


def report_html(
    photo: LoadedImage | np.ndarray,
    results: Sequence[SensitivityResult],
    *,
    title: str = DEFAULT_TITLE,
    photo_credit: str | None = None,
    generated: datetime | None = None,
) -> str:
    """A self-contained interactive HTML report (plotly.js and the photo inline; no CDN, no network).

    Per result: the overlay, the story in words, top-k, trust-check and parameter tables, the
    deletion/insertion curves (when the faithfulness numbers are there), the stability map, the
    per-size maps and the label-flip map; with two results first the side-by-side comparison and
    the agreement numbers. All maps share one colour scale when the results share units.
    """
    content = _prepare(photo, results, photo_credit, generated)
    embed = _Figures()
    parts = [
        f"<header><h1>{html.escape(title)}</h1>",
        f'<p class="muted">Generated {content.stamp} by sensmap {html.escape(__version__)}</p>',
        f'<p class="key">Colour key: {html.escape(COLOUR_CAPTION)}. {html.escape(content.unit_note)}</p></header>',
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
    parts.append(
        f'<footer class="muted"><p>Photo: {html.escape(content.photo_name)}</p>'
        f"<p>{html.escape(content.credit)}</p></footer>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>" + "\n".join(parts) + "</body></html>\n"
    )


# --------------------------------------------------------------------------- file names

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME_PART = 40
MAX_MODELS_IN_NAME = 4


def safe_name(text: object, fallback: str, limit: int = MAX_NAME_PART) -> str:
    """A file-name part: ASCII (α→a), only ``[A-Za-z0-9._-]``, no ``..``, at most ``limit`` characters."""
    value = _UNSAFE.sub("_", ascii_text(text))
    value = re.sub(r"\.{2,}", ".", value).strip("._-")[:limit].strip("._-")
    return value or fallback


def report_filename(kind: str, model_names: Sequence[str], ext: str, *, when: datetime | None = None) -> str:
    """A safe download name such as ``sensmap-report-MobileNetV2-vs-MobileNet_a0.75_192px-20261126-141500.png``.

    Only ``[A-Za-z0-9._-]``; built from the report kind, the network names (ASCII-folded, at
    most four) and the time (UTC, default now) — never from an uploaded file's name.
    """
    models = "-vs-".join(safe_name(name, "model") for name in list(model_names)[:MAX_MODELS_IN_NAME])
    stamp = _timestamp(when).strftime("%Y%m%d-%H%M%S")
    extension = re.sub(r"[^A-Za-z0-9]", "", str(ext))[:8] or "bin"
    parts = ["sensmap", safe_name(kind, "report"), models, stamp]
    return "-".join(part for part in parts if part) + "." + extension
