"""The matplotlib drawing pieces of the PNG reports (sensmap.figures): text, images, colour bars, curves."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.text import Text
from PIL import Image
from test_render import synthetic_photo, synthetic_result, with_faithfulness

from sensmap import figures
from sensmap.errors import ParameterError
from sensmap.render import DIVERGING_STOPS, MAP_CURVE_COLOUR, RANDOM_CURVE_COLOUR, blend_overlay, diverging_rgba


def texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def decoded(sheet: figures.Sheet) -> np.ndarray:
    data = sheet.png()
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.mode == "RGB" and not {k for k in image.info if k not in ("dpi", "gamma")}
    return np.asarray(image)


def test_text_is_drawn_as_given_in_dejavu_sans():
    assert figures.FONT_FILE.is_file() and figures.FONT_FILE.name == "DejaVuSans.ttf"
    name = "MobileNet α0.75 192px · 224×224 − ≥ 5 % → “ok” $x$ \\alpha"
    assert figures.drawable(name) == name
    assert figures.drawable("a\nb\tc 猫") == "a b c \ufffd"  # a glyph DejaVu Sans lacks: U+FFFD
    sheet = figures.Sheet(900)
    assert sheet.text(10, 20, name, 16) == 20 + round(16 * figures.LINE_SPACING)
    fig = sheet.figure()
    (drawn,) = [t for t in fig.findobj(Text) if t.get_text()]
    assert drawn.get_text() == name and not drawn.get_parse_math() and not drawn.get_usetex()  # "$" is not TeX
    assert drawn.get_fontproperties().get_name() == "DejaVu Sans"
    assert decoded(sheet).shape == (20 + round(16 * figures.LINE_SPACING), 900, 3)


def test_long_lines_are_cut_and_paragraphs_wrap_within_the_width():
    sheet = figures.Sheet(400)
    words = [f"word{i}" for i in range(60)]
    bottom = sheet.paragraph(5, 0, " ".join(words), 200, 15)
    sheet.text(5, bottom, "x" * 300, 15, width=120)
    lines = texts(sheet.figure())
    assert lines[-1].endswith("…") and sheet.text_width(lines[-1], 15) <= 120
    assert " ".join(lines[:-1]).split() == words and len(lines) - 1 == bottom / round(15 * figures.LINE_SPACING)
    assert all(sheet.text_width(line, 15) <= 200 for line in lines[:-1])
    full = zip(lines[:-2], lines[1:-1], strict=True)  # each line takes as many words as fit
    assert all(sheet.text_width(f"{line} {after.split()[0]}", 15) > 200 for line, after in full)
    assert figures.Sheet(50).paragraph(0, 0, "", 40) == 0


def test_block_stacks_lines_and_gaps():
    sheet = figures.Sheet(300)
    bottom = sheet.block(0, 10, [("Title", 24, figures.TEXT), ("", 12, figures.TEXT), ("body", 15, figures.MUTED)], 280)
    assert bottom == 10 + round(24 * figures.LINE_SPACING) + 12 + round(15 * figures.LINE_SPACING)
    assert texts(sheet.figure()) == ["Title", "body"]


@pytest.mark.parametrize("shape, at", [((7, 13), (3, 5)), ((1, 1), (0, 0)), ((48, 64), (11, 20)), ((2, 300), (0, 9))])
def test_images_are_placed_pixel_for_pixel(shape, at):
    pixels = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    x, y = at
    sheet = figures.Sheet(shape[1] + x + 4)
    assert sheet.image(x, y, pixels) == y + shape[0]
    drawn = decoded(sheet)
    assert drawn.shape == (y + shape[0], shape[1] + x + 4, 3)
    assert np.array_equal(drawn[y:, x : x + shape[1]], pixels)
    assert (drawn[:, :x] == 255).all() and (drawn[:, x + shape[1] :] == 255).all()


def test_image_and_sheet_refuse_bad_input():
    with pytest.raises(ParameterError):
        figures.Sheet(0)
    for bad in (np.zeros((4, 4)), np.zeros((4, 4, 3)), np.zeros((0, 4, 3), np.uint8)):
        with pytest.raises(ParameterError):
            figures.Sheet(10).image(0, 0, bad)


def test_colour_map_is_the_dashboards():
    for position, rgb in DIVERGING_STOPS:
        assert np.allclose(figures.DIVERGING_CMAP(position)[:3], np.array(rgb) / 255)
    positions = np.linspace(0, 1, 997)
    rgb, _ = diverging_rgba(positions * 2 - 1, 1.0)
    assert np.abs(figures.DIVERGING_CMAP(positions)[:, :3] * 255 - rgb).max() < 1.0


def test_colour_bar_runs_from_minus_to_plus_limit_in_its_unit():
    sheet = figures.Sheet(400)
    bottom = sheet.colour_bar(20, 10, 300, 12.5, "pp")
    fig = sheet.figure()
    (bar,) = [ax for ax in fig.axes if ax.get_label() == "colour bar"]
    assert bar.get_xlim() == (-12.5, 12.5)
    assert texts(fig) == ["-12.5 pp: inhibits (blue)", "0 pp", "+12.5 pp: supports (red)"]
    drawn = decoded(sheet)
    assert drawn.shape[0] == bottom
    row = drawn[10 + figures.BAR_HEIGHT // 2, 20:320].astype(int)
    assert row[3, 2] - row[3, 0] > 50 and row[-4, 0] - row[-4, 2] > 50  # blue left, red right
    assert (row[150] > 230).all()  # white at 0
    assert texts(_log_odds_bar().figure())[-1] == "+1.50 log-odds: supports (red)"
    narrow = figures.Sheet(120)
    assert narrow.colour_bar(0, 0, 100, 12.5, "pp") >= figures.BAR_HEIGHT + 4 + 3 * round(14 * figures.LINE_SPACING)
    lines = texts(narrow.figure())  # one label a line (wrapped), none wider than the bar
    assert " ".join(lines) == "-12.5 pp: inhibits (blue) 0 pp +12.5 pp: supports (red)" and "0 pp" in lines
    assert all(narrow.text_width(line, 14) <= 100 for line in lines)
    for limit in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ParameterError):
            figures.Sheet(100).colour_bar(0, 0, 50, limit, "pp")


def _log_odds_bar() -> figures.Sheet:
    sheet = figures.Sheet(300)
    sheet.colour_bar(0, 0, 300, 1.5, "log-odds")
    return sheet


@pytest.mark.parametrize("height, width", [(48, 64), (37, 11), (1, 1), (5, 3)])
def test_map_panel_is_the_blended_photo_above_its_colour_bar(height, width):
    photo = synthetic_photo(height, width)
    values = np.linspace(-0.3, 0.2, height * width).reshape(height, width)
    sheet = figures.Sheet(max(width, 300) + 40)
    name = "MobileNet α0.75 192px"
    sheet.map_panel(20, 4, photo, values, 0.3, 100.0, "pp", caption=name, bar_width=max(width, 300))
    fig = sheet.figure()
    (bar,) = [ax for ax in fig.axes if ax.get_label() == "colour bar"]
    assert bar.get_xlim() == pytest.approx((-30.0, 30.0))
    assert texts(fig) == [name, "-30.0 pp: inhibits (blue)", "0 pp", "+30.0 pp: supports (red)"]
    assert np.array_equal(decoded(sheet)[4 : 4 + height, 20 : 20 + width], blend_overlay(photo, values, 0.3))


def test_curves_draw_both_orders_with_their_aucs():
    result = with_faithfulness(synthetic_result())
    numbers = result.metadata["faithfulness"]
    sheet = figures.Sheet(640)
    assert sheet.curves(20, 0, numbers) == 210
    fig = sheet.figure()
    for kind in ("deletion", "insertion"):
        (axes,) = [ax for ax in fig.axes if ax.get_label() == f"{kind} curves"]
        solid, dashed = axes.get_lines()
        assert solid.get_linestyle() == "-" and dashed.get_linestyle() == "--"
        assert np.allclose(solid.get_color(), np.array(MAP_CURVE_COLOUR) / 255)
        assert np.allclose(dashed.get_color(), np.array(RANDOM_CURVE_COLOUR) / 255)
        assert np.allclose(solid.get_ydata(), np.clip(numbers[f"{kind}_curve"], 0, 1))
        assert np.allclose(dashed.get_xdata(), numbers["fractions"])
        legend = [t.get_text() for t in axes.get_legend().get_texts()]
        assert legend == [f"map order, AUC {numbers[f'{kind}_auc']:.3f}",
                          f"random order, AUC {numbers[f'random_{kind}_auc']:.3f}"]  # fmt: skip
    assert "Deletion (lower curve = faithful)" in texts(fig) and "fraction of pixels inserted" in texts(fig)
    red = (np.abs(decoded(sheet).astype(int) - MAP_CURVE_COLOUR).sum(axis=-1) < 30).sum()
    assert red > 300


def test_pages_are_deterministic():
    def page() -> bytes:
        sheet = figures.Sheet(300)
        y = sheet.text(0, 0, "MobileNet α0.75", 20)
        y = sheet.map_panel(0, y, synthetic_photo(), np.ones((48, 64)), 1.0, 100.0, "pp")
        sheet.rule(y + 4)
        return sheet.png()

    assert page() == page()
