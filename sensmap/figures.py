"""Static figures drawn with matplotlib's Agg backend: the pieces of the PNG report and of the CLI overlay.

No pyplot (no global figure state, no display, no browser): every page is its own
:class:`matplotlib.figure.Figure` on a :class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`.
A :class:`Sheet` is a white page of fixed width laid out top-down in **pixels** (x from the left
edge, y from the top edge; font sizes are pixel heights too); it records what to draw and builds
the figure at :data:`DPI` once its height is known, so one layout pixel is one PNG pixel. Images
are placed pixel for pixel (no resampling). Text is drawn in matplotlib's bundled DejaVu Sans,
exactly as given (α, ×, −, ≥ included); characters that font lacks are drawn as U+FFFD (�).

Colours follow :mod:`sensmap.render`: the diverging map runs from ``-limit`` (blue: covering raises
the class score, the area inhibits the class) through white at 0 to ``+limit`` (red: covering
lowers it, the area supports the class); every ``limit`` and map value here is in display units
(e.g. percentage points), the unit named in the labels.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.colorbar import Colorbar
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ft2font import FT2Font
from matplotlib.lines import Line2D
from matplotlib.transforms import Affine2D, Transform

from .errors import ParameterError
from .images import to_png_bytes
from .render import (
    DEFAULT_OPACITY,
    DIVERGING_STOPS,
    MAP_CURVE_COLOUR,
    RANDOM_CURVE_COLOUR,
    blend_overlay,
    format_value,
)

DPI = 100
"""Pixels per inch of every figure: layout pixels are PNG pixels."""
FONT_FILE = Path(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
"""The font of every text (bundled with matplotlib, so the PNGs look the same on every machine)."""
LINE_SPACING = 1.35
"""Height of a text line, as a multiple of the font size."""
BAR_HEIGHT = 16
"""Height of a colour bar, pixels."""
TEXT = "#212529"
MUTED = "#6c757d"
RULE = "#ced4da"
BACKGROUND = "#ffffff"

Line = tuple[str, int, str]
"""One entry of a text block: ``(text, font size in pixels, colour)``; empty text = a gap of that many pixels."""


def _rgb(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    return tuple(c / 255 for c in colour)


DIVERGING_CMAP = LinearSegmentedColormap.from_list(
    "sensmap_diverging", [(position, _rgb(colour)) for position, colour in DIVERGING_STOPS], N=1001
)
""":data:`sensmap.render.DIVERGING_STOPS` as a matplotlib colour map (0 = ``-limit``, 0.5 = 0, 1 = ``+limit``); 1001
levels, so every stop is hit exactly."""

_TEXT_STYLE = dict(parse_math=False, usetex=False)  # "$" and "\" are shown as typed, never as TeX


@lru_cache(maxsize=1)
def _glyphs() -> frozenset[int]:
    return frozenset(FT2Font(str(FONT_FILE)).get_charmap())


@lru_cache(maxsize=32)
def font(size: float) -> FontProperties:
    """DejaVu Sans at ``size`` pixels (matplotlib sizes fonts in points: ``size × 72 / DPI``)."""
    return FontProperties(fname=FONT_FILE, size=points(size))


def points(pixels: float) -> float:
    """A length in pixels as matplotlib points at :data:`DPI` (line widths, font sizes)."""
    return pixels * 72.0 / DPI


def drawable(text: object) -> str:
    """``text`` as one line: white space (newlines, tabs) becomes a space, characters the font lacks U+FFFD."""
    glyphs = _glyphs()
    return "".join(" " if ch.isspace() else ch if ord(ch) in glyphs else "\ufffd" for ch in str(text))


@dataclass(frozen=True)
class _Page:
    """The figure being drawn and its pixel layout (top-down) in matplotlib's terms."""

    fig: Figure
    width: int
    height: int

    @property
    def pixels(self) -> Transform:
        """Layout pixels (x right, y down) to display coordinates, at any dpi the figure is saved with."""
        return Affine2D().scale(1 / self.width, -1 / self.height).translate(0, 1) + self.fig.transFigure

    def axes(self, x: float, y: float, width: float, height: float, label: str = ""):
        """New axes filling the layout rectangle whose top-left corner is ``(x, y)``."""
        rect = (x / self.width, 1 - (y + height) / self.height, width / self.width, height / self.height)
        return self.fig.add_axes(rect, label=label)


class Sheet:
    """A white page ``width`` pixels wide, laid out top-down in pixels and drawn with matplotlib (Agg).

    Each drawing method takes the top-left corner ``(x, y)`` in pixels and returns the y below what
    it drew; :attr:`bottom` is the lowest y drawn so far: the page's height (:meth:`pad` adds a margin
    below). :meth:`figure` and :meth:`png` build the page.
    """

    def __init__(self, width: int) -> None:
        if int(width) < 1:
            raise ParameterError(f"a figure needs a width of at least 1 pixel, got {width!r}")
        self.width = int(width)
        self.bottom = 0.0
        self._steps: list[Callable[[_Page], object]] = []
        self._measure = RendererAgg(1, 1, DPI)

    def _draw(self, bottom: float, step: Callable[[_Page], object]) -> float:
        self._steps.append(step)
        self.bottom = max(self.bottom, bottom)
        return bottom

    def pad(self, y: float) -> float:
        """Make the page reach down to ``y`` (pixels) even where nothing is drawn there; returns ``y``."""
        self.bottom = max(self.bottom, y)
        return y

    # ------------------------------------------------------------------ text

    def text_width(self, text: str, size: float) -> float:
        """Width in pixels of one line of (drawable) ``text`` at ``size`` pixels."""
        width, _, _ = self._measure.get_text_width_height_descent(text, font(size), ismath=False)
        return float(width)

    def text(
        self,
        x: float,
        y: float,
        text: object,
        size: float = 16,
        colour: str = TEXT,
        width: float | None = None,
        align: str = "left",
    ) -> float:
        """One line at ``(x, y)`` (its top; ``x`` is the left end, centre or right end by ``align``), cut with "…"
        to ``width`` pixels; returns the y below it."""
        line = drawable(text)
        if width is not None and self.text_width(line, size) > width:
            keep = bisect.bisect_right(range(len(line)), width, key=lambda n: self.text_width(line[:n] + "…", size))
            line = line[: max(0, keep - 1)] + "…"

        def step(page: _Page) -> None:
            page.fig.text(x, y, line, transform=page.pixels, fontproperties=font(size), color=colour, ha=align,
                          va="top", **_TEXT_STYLE)  # fmt: skip

        return self._draw(y + round(size * LINE_SPACING), step)

    def paragraph(self, x: float, y: float, text: object, width: float, size: float = 16, colour: str = TEXT) -> float:
        """``text`` wrapped at spaces to ``width`` pixels (a word wider than that is cut); returns the y below it."""
        words = drawable(text).split()
        while words:  # the most words that fit on the line (at least one), found by bisection
            fits = bisect.bisect_right(range(1, len(words) + 1), width, key=lambda n: self._words_width(words, n, size))
            y = self.text(x, y, " ".join(words[: max(1, fits)]), size, colour, width)
            words = words[max(1, fits) :]
        return y

    def _words_width(self, words: Sequence[str], count: int, size: float) -> float:
        return self.text_width(" ".join(words[:count]), size)

    def block(self, x: float, y: float, lines: Sequence[Line], width: float) -> float:
        """A text block: each :data:`Line` wrapped to ``width`` pixels, one under the other; returns the y below."""
        for text, size, colour in lines:
            y = self.paragraph(x, y, text, width, size, colour) if text else y + size
        return y

    def rule(self, y: float, x0: float = 0, x1: float | None = None, colour: str = RULE) -> float:
        """A 1-pixel horizontal line at ``y`` from ``x0`` to ``x1`` (default: the page's width)."""
        end = self.width if x1 is None else x1

        def step(page: _Page) -> None:
            page.fig.add_artist(Line2D([x0, end], [y + 0.5, y + 0.5], transform=page.pixels, color=colour,
                                       linewidth=points(1)))  # fmt: skip

        return self._draw(y + 1, step)

    # ------------------------------------------------------------------ images and maps

    def image(self, x: float, y: float, pixels: np.ndarray) -> float:
        """``(h, w, 3)`` uint8 pixels placed as they are, top-left corner at ``(x, y)``; returns the y below."""
        array = np.asarray(pixels)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8 or not array.size:
            raise ParameterError(f"an image needs (h, w, 3) uint8 pixels, got {array.dtype} {array.shape}")
        height, width = array.shape[:2]

        def step(page: _Page) -> None:
            axes = page.axes(x, y, width, height, label="image")
            axes.set_axis_off()
            axes.imshow(array, interpolation="nearest", aspect="auto")

        return self._draw(y + height, step)

    def colour_bar(
        self, x: float, y: float, width: float, limit: float, unit: str, height: float = BAR_HEIGHT
    ) -> float:
        """A horizontal colour bar from ``-limit`` (blue, inhibits) to ``+limit`` (red, supports), ``limit`` in
        display ``unit`` s (e.g. 12.5 for ±12.5 pp), labelled with both ends and 0 (one label a line when the bar is
        too narrow for them side by side); returns the y below it."""
        if not (math.isfinite(limit) and limit > 0):
            raise ParameterError(f"a colour bar needs a positive limit, got {limit!r}")

        def step(page: _Page) -> None:
            axes = page.axes(x, y, width, height, label="colour bar")
            bar = Colorbar(axes, cmap=DIVERGING_CMAP, norm=Normalize(-limit, limit), orientation="horizontal")
            bar.set_ticks([])
            bar.outline.set_edgecolor(RULE)
            bar.outline.set_linewidth(points(1))

        below, peak = self._draw(y + height, step) + 4, format_value(limit, unit, sign=False)
        labels = (f"-{peak}: inhibits (blue)", f"0 {unit}", f"+{peak}: supports (red)")
        if sum(self.text_width(label, 14) for label in labels) + 24 > width:  # too narrow: one label a line
            return self.block(x, below, [(label, 14, MUTED) for label in labels], max(width, 1))
        self.text(x, below, labels[0], 14, MUTED)
        self.text(x + width / 2, below, labels[1], 14, MUTED, align="center")
        return self.text(x + width, below, labels[2], 14, MUTED, align="right")

    def map_panel(
        self,
        x: float,
        y: float,
        photo: np.ndarray,
        values: np.ndarray,
        limit: float,
        factor: float,
        unit: str,
        opacity: float = DEFAULT_OPACITY,
        *,
        caption: str | None = None,
        bar_width: float | None = None,
    ) -> float:
        """The photo ``(h, w, 3)`` with the map ``values`` ``(h, w)`` blended on it exactly as
        :func:`sensmap.render.blend_overlay` draws it, then a ``caption`` (if any) and the colour bar below, both
        ``bar_width`` pixels wide (centred under a wider photo; default the photo's width); returns the y below.

        ``values`` and ``limit`` are in the result's units (probability difference, or log-odds); the bar is
        labelled ``±limit × factor`` in ``unit`` (``(factor, unit)`` from :func:`sensmap.render.support_unit`).
        """
        bottom = self.image(x, y, blend_overlay(photo, values, limit, opacity))
        width = np.shape(photo)[1]
        bar = width if bar_width is None else bar_width
        left = x + max(0, (width - bar) // 2)
        if caption is not None:
            bottom = self.paragraph(left, bottom + 6, caption, bar, 14, TEXT) - 8
        return self.colour_bar(left, bottom + 10, bar, limit * factor, unit)

    def curves(self, x: float, y: float, numbers: dict, width: float = 600, height: float = 210) -> float:
        """Deletion and insertion curves side by side: the map's order solid, the random orders' mean dashed, their
        AUCs in the legends (``numbers`` from :func:`sensmap.faithfulness`; y: probability of the target class,
        x: fraction of the pixels removed or inserted); returns the y below."""
        fractions = np.asarray(numbers["fractions"], dtype=np.float64)
        gap, left, top, bottom = 24, 44, 24, 72
        panel = (width - gap) / 2
        for number, (kind, verb, better) in enumerate((("deletion", "removed", "lower"),
                                                       ("insertion", "inserted", "higher"))):  # fmt: skip
            x0 = x + number * (panel + gap)
            self.text(x0, y, f"{kind.capitalize()} ({better} curve = faithful)", 15)
            box = (x0 + left, y + top, panel - left - 6, height - top - bottom)
            self._draw(
                y + height,
                lambda page, box=box, kind=kind, verb=verb: _curve_axes(page, box, fractions, numbers, kind, verb),
            )
        return y + height

    def sanity_plot(
        self,
        x: float,
        y: float,
        series: Sequence[tuple[str, tuple[int, int, int], Sequence[float], Sequence[float], Sequence[bool]]],
        threshold: float,
        width: float = 600,
        height: float = 230,
    ) -> float:
        """Randomisation checks: Spearman ρ (y, −1..1) against the share of the weighted layers randomised (x, 0..1),
        one line per ``(label, colour, xs, ys, flat)`` series (flat steps marked ✕), the bands ``|ρ| ≥ threshold``
        shaded, the legend below; returns the y below."""
        self.text(x, y, "Randomisation check (Spearman ρ with the original map)", 15)
        top, left, bottom = 24, 44, 44 + 20 * len(series)
        box = (x + left, y + top, width - left - 6, height - top - bottom)
        return self._draw(y + height, lambda page: _sanity_axes(page, box, series, threshold))

    # ------------------------------------------------------------------ output

    def figure(self) -> Figure:
        """The page as a matplotlib figure, :attr:`width` × ``ceil(bottom)`` pixels at :data:`DPI`."""
        height = max(1, math.ceil(self.bottom))
        fig = Figure(figsize=(self.width / DPI, height / DPI), dpi=DPI, facecolor=BACKGROUND)
        FigureCanvasAgg(fig)
        page = _Page(fig, self.width, height)
        for step in self._steps:
            step(page)
        return fig

    def png(self) -> bytes:
        """The page as PNG bytes without metadata (see :func:`png_bytes`)."""
        return png_bytes(self.figure())


def _curve_axes(page: _Page, box: tuple, fractions: np.ndarray, numbers: dict, kind: str, verb: str) -> None:
    """One deletion or insertion plot in the layout rectangle ``box`` (x, y, width, height), legend below it."""
    axes = page.axes(*box, label=f"{kind} curves")
    for prefix, colour, style, width in (("", MAP_CURVE_COLOUR, "-", 3), ("random_", RANDOM_CURVE_COLOUR, "--", 2)):
        order = "random order" if prefix else "map order"
        values = np.clip(np.asarray(numbers[f"{prefix}{kind}_curve"], dtype=np.float64), 0.0, 1.0)
        axes.plot(fractions, values, style, color=_rgb(colour), linewidth=points(width), zorder=3 if not prefix else 2,
                  label=f"{order}, AUC {numbers[f'{prefix}{kind}_auc']:.3f}")  # fmt: skip
    axes.set_xlim(0, 1)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xticks([0, 0.5, 1], labels=["0", "0.5", "1"], fontproperties=font(12), color=MUTED, **_TEXT_STYLE)
    axes.set_yticks([0, 0.5, 1], labels=["0%", "50%", "100%"], fontproperties=font(12), color=MUTED, **_TEXT_STYLE)
    _plain_axes(axes)
    axes.set_xlabel(f"fraction of pixels {verb}", fontproperties=font(12), color=MUTED, labelpad=points(2))
    _legend_below(page, axes, box)


def _plain_axes(axes) -> None:
    """Light frame and horizontal grid, as in every plot of the reports."""
    axes.tick_params(length=0, pad=points(4))
    axes.grid(axis="y", color=RULE, linewidth=points(1))
    axes.set_axisbelow(True)
    for spine in axes.spines.values():
        spine.set_edgecolor(RULE)
        spine.set_linewidth(points(1))


def _legend_below(page: _Page, axes, box: tuple) -> None:
    """The plot's legend under its x label, left-aligned with the layout rectangle ``box`` of the axes."""
    x, y, _, height = box
    axes.legend(loc="upper left", bbox_to_anchor=(x - 8, y + height + 36), bbox_transform=page.pixels, frameon=False,
                prop=font(13), handlelength=2.2, borderaxespad=0, borderpad=0, labelspacing=0.3)  # fmt: skip


def _sanity_axes(page: _Page, box: tuple, series: Sequence, threshold: float) -> None:
    """The randomisation-check plot in the layout rectangle ``box`` (x, y, width, height), legend below it."""
    axes = page.axes(*box, label="sanity curves")
    for low, high in ((threshold, 1.05), (-1.05, -threshold)):
        axes.axhspan(low, high, color=_rgb(MAP_CURVE_COLOUR), alpha=0.07, linewidth=0)
    for label, colour, xs, ys, flat in series:
        axes.plot(xs, ys, "-o", color=_rgb(colour), linewidth=points(2.5), markersize=points(6), label=label)
        marks = [(a, b) for a, b, f in zip(xs, ys, flat, strict=True) if f]
        if marks:
            axes.plot(
                *zip(*marks, strict=True), "x", color=_rgb(colour), markersize=points(14), markeredgewidth=points(2.5)
            )
    axes.set_xlim(-0.03, 1.03)
    axes.set_ylim(-1.05, 1.05)
    axes.set_xticks([0, 0.5, 1], labels=["0%", "50%", "100%"], fontproperties=font(12), color=MUTED, **_TEXT_STYLE)
    axes.set_yticks([-1, 0, 1], labels=["−1", "0", "1"], fontproperties=font(12), color=MUTED, **_TEXT_STYLE)
    _plain_axes(axes)
    axes.set_xlabel("weighted layers randomised (from the output down); ✕ flat map", fontproperties=font(12),
                    color=MUTED, labelpad=points(2))  # fmt: skip
    _legend_below(page, axes, box)


def figure_pixels(fig: Figure) -> np.ndarray:
    """The figure drawn by Agg at its own dpi: ``(h, w, 3)`` uint8 RGB (opaque background)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3])


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes without metadata (no EXIF, no text chunks, no software tag)."""
    return to_png_bytes(figure_pixels(fig))
