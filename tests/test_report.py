"""PNG and HTML reports, from synthetic results (no TensorFlow, no browser)."""

from __future__ import annotations

import dataclasses
import io
import re
from datetime import datetime, timezone

import numpy as np
import pytest
from PIL import Image
from test_render import synthetic_photo, synthetic_result, with_faithfulness  # builders live with the figure tests

from sensmap import figures, report
from sensmap.errors import ParameterError
from sensmap.images import load_image
from sensmap.render import MAP_CURVE_COLOUR, blend_overlay, symmetric_limit
from sensmap.result import SensitivityResult

WHEN = datetime(2026, 11, 26, 14, 15, 0, tzinfo=timezone.utc)


def decode_png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG" and image.mode == "RGB"
    assert not image.getexif() and "exif" not in image.info
    assert not {key for key in image.info if key not in ("dpi", "gamma", "srgb")}  # no text chunks
    return image


@pytest.fixture(scope="module")
def photo():
    return load_image(synthetic_photo(), name="/home/someone/private/cat on sofa.jpg")


@pytest.fixture(scope="module")
def pair():
    return (
        synthetic_result("MobileNetV2"),
        synthetic_result("MobileNet α0.75 192px", input_size=(20, 20), seed=3, blob=(0.5, 0.6, 0.2)),
    )


def test_png_report_for_one_result(photo, pair):
    image = decode_png(report.report_png(photo, [pair[0]], generated=WHEN))
    assert image.width == report.PNG_WIDTH
    assert 500 <= image.height <= 1400
    pixels = np.asarray(image)
    assert (pixels[0] == 255).all()  # white header margin
    assert pixels.std() > 20  # photo, overlay and text drawn


def test_png_report_for_two_results_adds_a_difference_panel(photo, pair):
    one = decode_png(report.report_png(photo, [pair[0]], generated=WHEN))
    two = decode_png(report.report_png(photo, list(pair), photo_credit="Jane Doe, CC BY 4.0", generated=WHEN))
    assert two.width == report.PNG_WIDTH
    assert two.height > 2.4 * (one.height - 200)  # header/footer once, three map panels
    assert two.height <= 3200


def test_png_report_survives_hostile_and_unicode_text(photo):
    result = synthetic_result("../../etc/passwd <script>", labels=("猫 ねこ", "Réseau", "a" * 300, "c3", "c4", "c5"))
    mixed = synthetic_result("other", score_kind="log-odds")
    image = decode_png(report.report_png(photo, [result, mixed], title="Tést — ≥ report", photo_credit="© 猫"))
    assert image.width == report.PNG_WIDTH


def test_png_report_accepts_a_plain_array_and_refuses_no_results(pair):
    decode_png(report.report_png(synthetic_photo(), [pair[0]]))
    with pytest.raises(ParameterError):
        report.report_png(synthetic_photo(), [])


def test_overlay_png_is_the_blended_photo_above_a_colour_bar(photo, pair):
    big = np.asarray(Image.fromarray(photo.pixels).resize((640, 480), Image.Resampling.NEAREST))
    image = np.asarray(decode_png(report.overlay_png(big, pair[0])))
    assert image.shape[1] == 640 and image.shape[0] > 480 + figures.BAR_HEIGHT  # the legend strip below
    support = report.map_to_photo(pair[0].support, (480, 640), "squash")
    expected = blend_overlay(big, support, float(np.abs(pair[0].support).max()))
    assert np.array_equal(image[:480], expected)
    assert not np.array_equal(expected, big)
    fixed = np.asarray(decode_png(report.overlay_png(big, pair[0], limit=10.0, opacity=0.0)))
    assert np.array_equal(fixed[:480], big)
    bar = fixed[480:]
    assert (bar[..., 0].astype(int) - bar[..., 2] > 100).any() and (bar[..., 2].astype(int) - bar[..., 0] > 100).any()


def test_overlay_png_enlarges_small_photos_for_a_legible_legend(photo, pair):
    image = decode_png(report.overlay_png(photo, pair[0]))
    assert image.width == report.OVERLAY_MIN_WIDTH and image.height > photo.height


def texts(fig) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def fast_result(result: SensitivityResult) -> SensitivityResult:
    """The result as fast mode leaves it: every third window measured, the rest predicted (approximate)."""
    measured = np.arange(result.window_total) % 3 == 0
    return dataclasses.replace(result, measured=measured, metadata={**result.metadata, "mode": "fast"})


def test_png_report_prints_network_names_as_given(photo, pair):
    lines = texts(report.report_figure(photo, list(pair), title="Tést — ≥ report", generated=WHEN))
    assert "2. MobileNet α0.75 192px" in lines and "Tést — ≥ report" in lines
    assert "Difference: MobileNetV2 − MobileNet α0.75 192px" in lines
    assert not any("a0.75" in line for line in lines)
    assert "1. class 0: 70.0% ← target" in lines and "Generated 2026-11-26 14:15 UTC by sensmap 0.1.0" in lines


@pytest.mark.parametrize(
    "kind, shape",
    [("one", (48, 64)), ("one", (37, 11)), ("faithful", (1, 1)), ("two", (3, 500)), ("two faithful", (61, 47)),
     ("fast", (5, 3))],
)  # fmt: skip
def test_png_reports_render_for_any_photo_and_results(kind, shape):
    first = synthetic_result("MobileNetV2", photo_size=shape)
    second = synthetic_result("MobileNet α0.75 192px", input_size=(20, 20), photo_size=shape, seed=3)
    results = {"one": [first], "faithful": [with_faithfulness(first)], "two": [first, second],
               "two faithful": [with_faithfulness(first), with_faithfulness(second, faithful=False)],
               "fast": [fast_result(first)]}[kind]  # fmt: skip
    pixels = synthetic_photo(*shape)
    fig = report.report_figure(pixels, results, generated=WHEN)
    image = decode_png(figures.png_bytes(fig))
    assert image.width == report.PNG_WIDTH and image.height == fig.bbox.height
    lines = texts(fig)
    panels = [ax.get_images()[0].get_array() for ax in fig.axes if ax.get_label() == "image"]
    assert len(panels) == (3 if len(results) == 2 else 1)  # with two results: their difference too
    shown = report._fit_photo(pixels)
    assert max(shown.shape[:2]) >= min(report.IMAGE_BOX) and shown.shape[:2] == panels[0].shape[:2]
    limit = symmetric_limit(*(r.support for r in results))
    maps = [report.map_to_photo(result.support, shown.shape[:2]) for result in results]
    maps += [maps[0] - maps[1]] if len(results) == 2 else []  # the difference A − B, on the same scale
    for panel, values in zip(panels, maps, strict=True):
        assert np.array_equal(panel, blend_overlay(shown, values, limit))
    assert all(any(line.endswith(result.model_name) for line in lines) for result in results)
    curves = [ax for ax in fig.axes if ax.get_label().endswith(" curves")]
    assert len(curves) == 2 * sum(report.faithfulness_numbers(r) is not None for r in results)
    approximate = [line for line in lines if "approximate" in line]
    assert len(approximate) == (2 if kind == "fast" else 0)  # under the heading and in the parameters
    if kind == "fast":
        measured = f"{results[0].passes} of {results[0].window_total} windows measured"
        note = f"{measured}, the rest predicted from the measured"
        assert report.map_caption(results[0]) == f"map for 'class 0' (approximate: {note})"
        assert approximate[0].startswith("map for 'class 0' (approximate: ")  # wrapped to the text column


def test_png_report_colour_bars_match_the_results(photo, pair):
    fig = report.report_figure(photo, list(pair), generated=WHEN)
    bars = [ax.get_xlim() for ax in fig.axes if ax.get_label() == "colour bar"]
    limit = 100 * symmetric_limit(*(r.support for r in pair))  # one scale for both maps and their difference, pp
    assert bars == [pytest.approx((-limit, limit))] * 3
    assert texts(fig).count(f"+{limit:.1f} pp: supports (red)") == 3 and texts(fig).count("0 pp") == 3
    log_odds = synthetic_result("other", score_kind="log-odds")
    fig = report.report_figure(photo, [pair[0], log_odds], generated=WHEN)  # units differ: a scale each
    bars = [ax.get_xlim() for ax in fig.axes if ax.get_label() == "colour bar"]
    own = [100 * np.abs(pair[0].support).max(), np.abs(log_odds.support).max()]
    assert bars == [pytest.approx((-own[0], own[0])), pytest.approx((-own[1], own[1]))]
    assert f"-{own[1]:.2f} log-odds: inhibits (blue)" in texts(fig) and "0 log-odds" in texts(fig)


def test_png_report_is_deterministic(photo, pair):
    assert report.report_png(photo, list(pair), generated=WHEN) == report.report_png(photo, list(pair), generated=WHEN)


@pytest.mark.parametrize("shape", [(3, 2), (1, 700), (97, 31)])
def test_overlay_png_of_tiny_and_odd_photos(shape, pair):
    pixels = synthetic_photo(*shape)
    result = fast_result(pair[1])
    image = np.asarray(decode_png(report.overlay_png(pixels, result)))
    width = max(shape[1], report.OVERLAY_MIN_WIDTH)
    height = max(1, round(shape[0] * width / shape[1]))
    assert image.shape[1] == width and image.shape[0] > height + figures.BAR_HEIGHT
    shown = np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.NEAREST))
    values = report.map_to_photo(result.support, (height, width), result.fit)
    assert np.array_equal(image[:height], blend_overlay(shown, values, float(np.abs(result.support).max())))
    lines = texts(report._overlay_sheet(pixels, result, 0.6, None).figure())
    caption = f"MobileNet α0.75 192px: class 0 (70.0%), {result.passes} passes"
    caption += f", approximate ({result.approximation_note})"
    assert " ".join(lines).startswith(caption + " -")  # wrapped to the bar's width, above the bar's labels


def test_parameter_rows_describe_the_run(pair):
    rows = dict(report.parameter_rows(pair[0]))
    assert rows["cover sizes (fraction of the side)"] == "1/2 (16×12 px), 1/4 (8×6 px)"
    assert rows["forward passes"].startswith(f"{pair[0].passes} ")
    assert rows["time"] == "1.25 s" and rows["device"] == "CPU"
    assert rows["versions"].startswith("sensmap 0.1.0")


def test_trust_rows_give_the_aucs_stability_and_pointing(pair):
    from sensmap.metrics import stability

    plain = dict(report.trust_rows(pair[0]))
    assert plain["faithfulness"].startswith("not checked") and "pointing check" not in plain
    _, spread = stability(pair[0].per_size)
    assert plain["stability"] == f"mean spread {spread * 100:.1f} pp across 2 cover sizes"
    result = with_faithfulness(synthetic_result())
    numbers = result.metadata["faithfulness"]
    result.metadata["pointing"] = {"box_photo": [0.2, 0.1, 0.6, 0.5], "share_inside": 0.64, "peak_inside": True,
                                   "box_area": 0.16}  # fmt: skip
    result.metadata["stability"] = {"score": 0.031, "fills": ["gray", "blur"], "across": "cover sizes and fills"}
    rows = dict(report.trust_rows(result))
    expected = f"{numbers['deletion_auc']:.3f} (random order {numbers['random_deletion_auc']:.3f}; lower = faithful)"
    assert rows["deletion AUC"] == expected
    assert rows["insertion AUC"].startswith(f"{numbers['insertion_auc']:.3f} (random order ")
    assert rows["faithfulness"].startswith("Faithful")
    assert rows["stability with fills"] == "mean spread 3.1 pp across cover sizes and fills"
    assert rows["pointing check"].startswith("64% of the positive support inside the box (rows 20-60 %, columns 10-50")
    assert rows["pointing check"].endswith("strongest point inside: yes")


def test_html_report_is_self_contained(photo, pair):
    hostile = synthetic_result("<script>alert(1)</script>", input_size=(20, 20), seed=3)
    page = report.report_html(photo, [pair[0], hostile], title="Report <b>", photo_credit="Jane & John", generated=WHEN)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("Plotly.newPlot") == 1 + 2 * 4  # comparison, then overlay, stability, per-size, label flip
    assert re.findall(r"<script[^>]*>", page) == ["<script>"] * (2 + 9)  # plotly config + library, 9 figures
    library = max(re.findall(r"<script>(.*?)</script>", page, flags=re.S), key=len)
    assert library.lstrip().startswith("/**\n* plotly.js v") and len(library) > 3_000_000  # inline, once
    # plotly.js names URLs for features we never use (map tiles, "cdn.plot.ly/un/" topojson); nothing else may
    rest = page.replace(library, "")
    assert "cdn.plot.ly" not in rest and not re.search(r"(https?:)?//[A-Za-z0-9]", rest)
    assert "<script>alert(1)</script>" not in page and "Report &lt;b&gt;" in page
    assert "cat on sofa.jpg" in page and "/home/someone" not in page
    assert "Photo credit: Jane &amp; John" in page and "2026-11-26 14:15 UTC" in page
    assert "Spearman rank correlation" in page


def test_html_report_for_one_result_has_licence_line(photo, pair):
    page = report.report_html(synthetic_photo(), [pair[0]])
    assert "Photo licence: see source" in page and "Comparison" not in page
    assert page.count("Plotly.newPlot") == 4
    assert "deletion AUC" not in page and "faithfulness</td><td>not checked" in page


def test_reports_carry_the_curves_aucs_story_stability_and_pointing(photo):
    from sensmap.story import tell_story

    result = with_faithfulness(synthetic_result())
    result.metadata["pointing"] = {"box_photo": [0.2, 0.1, 0.6, 0.5], "share_inside": 0.64, "peak_inside": False,
                                   "box_area": 0.16}  # fmt: skip
    story = tell_story(result)
    page = report.report_html(photo, [result], generated=WHEN)
    assert page.count("Plotly.newPlot") == 5  # overlay, faithfulness curves, stability, per-size, label flip
    assert "deletion AUC" in page and "insertion AUC" in page and "random order" in page
    assert "fraction of pixels removed" in page and "mean spread" in page
    assert html_text(story) in page and "strongest point inside: no" in page
    plain = decode_png(report.report_png(photo, [synthetic_result()], generated=WHEN))
    image = decode_png(report.report_png(photo, [result], generated=WHEN))
    assert image.height <= 1600
    curves = np.asarray(image)[:, : report.MARGIN + report.IMAGE_BOX[0]]
    red = (np.abs(curves.astype(int) - MAP_CURVE_COLOUR).sum(axis=-1) < 30).sum()
    assert red > 300, "the map-order curves are drawn in their colour under the photo"
    assert image.height >= plain.height


def html_text(text: str) -> str:
    import html

    return html.escape(text)


def test_png_report_text_has_the_story_and_auc_lines(pair):
    result = with_faithfulness(synthetic_result())
    lines = [text for text, _, _ in report._result_lines(result, "TinyNet")]
    assert "In words" in lines and report.story_text(result) in lines
    assert any(line.startswith("deletion AUC: ") for line in lines)
    assert any(line.startswith("stability: mean spread ") for line in lines)
    result.metadata["story"] = "Kept story."
    assert report.story_text(result) == "Kept story."


def test_reports_of_a_photo_with_gps_exif_carry_none_of_it(pair):
    import base64

    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc."  # Make
    exif.get_ifd(0x8825).update({1: "N", 2: (51.0, 30.0, 0.0), 3: "E", 4: (0.0, 7.0, 39.0)})  # GPS
    buffer = io.BytesIO()
    Image.fromarray(synthetic_photo()).save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    assert Image.open(io.BytesIO(buffer.getvalue())).getexif().get_ifd(0x8825), "the photo carries GPS"
    photo = load_image(buffer.getvalue(), name="../../evil name.jpg")

    for data in (report.report_png(photo, [pair[0]]), report.overlay_png(photo, pair[0])):
        decode_png(data)  # no EXIF, no text chunks
        assert b"eXIf" not in data and b"Exif\x00\x00" not in data and b"SpyCam" not in data
    page = report.report_html(photo, list(pair))
    uris = re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", page.replace("\\u002f", "/"))
    assert len(uris) >= 3, "the photo is inlined in the comparison and in each overlay"
    for uri in uris:
        embedded = Image.open(io.BytesIO(base64.b64decode(uri)))
        assert embedded.format == "JPEG" and "exif" not in embedded.info and not embedded.getexif()
    assert "SpyCam" not in page and "evil name.jpg" in page and "../" not in page.split("<footer", 1)[1]
