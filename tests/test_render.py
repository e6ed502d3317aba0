"""Plotly figures of sensitivity results, built from synthetic results (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from sensmap import render
from sensmap.errors import ParameterError
from sensmap.images import load_image
from sensmap.result import SensitivityResult
from sensmap.windows import window_grids

INPUT = (24, 32)
PHOTO = (48, 64)
SIZES = (0.5, 0.25)


def synthetic_result(
    model_name: str = "TinyNet",
    *,
    input_size: tuple[int, int] = INPUT,
    photo_size: tuple[int, int] = PHOTO,
    sizes: tuple[float, ...] = SIZES,
    classes: int = 6,
    fit: str = "squash",
    score_kind: str = "probability",
    seed: int = 0,
    blob: tuple[float, float, float] = (0.45, 0.4, 0.15),
    labels: tuple[str, ...] | None = None,
    strength: float = 0.9,
) -> SensitivityResult:
    """A result whose target (class 0, p = 0.7) drops when a Gaussian blob (cy, cx, sigma as
    fractions of the grid) is covered (by ``strength`` × the blob's share under the cover) and rises
    when the bottom-right corner is covered; the lost probability goes to class
    1 + (window index mod (classes − 1)), which may then win."""
    rng = np.random.default_rng(seed)
    height, width = input_size
    yy, xx = np.mgrid[0:height, 0:width]

    def bump(cy: float, cx: float, sigma: float) -> np.ndarray:
        field = np.exp(-(((yy + 0.5) / height - cy) ** 2 + ((xx + 0.5) / width - cx) ** 2) / (2 * sigma**2))
        return field / field.sum()

    importance = bump(*blob) - 0.4 * bump(0.8, 0.85, 0.1)
    reference = np.full(classes, 0.3 / (classes - 1))
    reference[0] = 0.7
    boxes = np.concatenate([grid.boxes for grid in window_grids(height, width, sizes, 0.5)])
    outputs = np.empty((len(boxes), classes))
    for k, (y0, x0, y1, x1) in enumerate(boxes):
        target = np.clip(0.7 - strength * importance[y0:y1, x0:x1].sum() + rng.normal(0, 0.003), 0.001, 0.99)
        rest = reference[1:] * rng.uniform(0.8, 1.2, classes - 1)
        rest[k % (classes - 1)] += max(0.0, 0.7 - target)
        outputs[k] = np.concatenate([[target], rest / rest.sum() * (1 - target)])
    return SensitivityResult(
        model_name=model_name,
        labels=labels or tuple(f"class {i}" for i in range(classes)),
        input_size=input_size,
        photo_size=photo_size,
        fit=fit,
        sizes=sizes,
        stride=0.5,
        fill="gray",
        score_kind=score_kind,
        target=0,
        reference_probabilities=reference,
        outputs=outputs,
        metadata={
            "versions": {"sensmap": "0.1.0", "numpy": np.__version__},
            "timings_s": {"total": 1.25},
            "device": "CPU",
            "photo": {"source": "/home/someone/private/cat.jpg"},
        },
    )


def synthetic_photo(height: int = PHOTO[0], width: int = PHOTO[1]) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.stack([80 + 100 * yy / height, 120 + 60 * xx / width, 160 - 60 * yy / height], axis=-1)
    pixels[((yy / height - 0.45) / 0.25) ** 2 + ((xx / width - 0.4) / 0.2) ** 2 <= 1] = (220, 160, 80)
    return pixels.astype(np.uint8)


def heatmaps(fig: go.Figure) -> list[go.Heatmap]:
    return [trace for trace in fig.data if trace.type == "heatmap"]


# --------------------------------------------------------------------------- colours


def test_diverging_colours_are_symmetric_and_see_through_at_zero():
    rgb, alpha = render.diverging_rgba(np.array([-2.0, -1.0, 0.0, 1.0, 2.0, np.nan]), 1.0)
    first, middle, last = (np.array(render.DIVERGING_STOPS[i][1]) for i in (0, 5, -1))
    assert np.allclose(rgb[0], first) and np.allclose(rgb[1], first)  # clipped at -limit
    assert np.allclose(rgb[3], last) and np.allclose(rgb[4], last)
    assert np.allclose(rgb[2], middle)
    assert alpha.tolist() == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    assert last[0] > last[2] and first[2] > first[0]  # red supports, blue inhibits


def test_plotly_colorscale_uses_the_shared_stops():
    opaque = render.plotly_colorscale()
    assert opaque[0] == [0.0, "rgba(5,48,97,1.000)"] and opaque[-1] == [1.0, "rgba(103,0,31,1.000)"]
    see_through = render.plotly_colorscale(transparent=True)
    assert see_through[len(see_through) // 2][1].endswith(",0.000)")


def test_blend_overlay_leaves_zero_support_untouched():
    photo = synthetic_photo()
    assert np.array_equal(render.blend_overlay(photo, np.zeros(PHOTO), 0.1), photo)
    red = render.blend_overlay(photo, np.full(PHOTO, 0.1), 0.1, opacity=1.0)
    assert np.all(red == np.array(render.DIVERGING_STOPS[-1][1], dtype=np.uint8))


def test_symmetric_limit():
    assert render.symmetric_limit(np.array([[-0.3, 0.1]])) == pytest.approx(0.3)
    assert render.symmetric_limit(np.zeros((2, 2))) == render.FALLBACK_LIMIT
    assert render.symmetric_limit(np.array([[np.nan]])) == render.FALLBACK_LIMIT
    assert render.symmetric_limit(np.ones((2, 2)), limit=0.5) == 0.5
    with pytest.raises(ParameterError):
        render.symmetric_limit(np.ones((2, 2)), limit=0)


def test_nearest_to_photo_marks_areas_outside_the_crop():
    grid = np.arange(4).reshape(2, 2)
    values, seen = render.nearest_to_photo(grid, (4, 4))
    assert values.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]] and seen.all()
    values, seen = render.nearest_to_photo(grid, (2, 6), "crop")  # centre 2×2 of a 2×6 photo
    assert seen.tolist() == [[False, False, True, True, False, False]] * 2
    assert values[:, 2:4].tolist() == [[0, 1], [2, 3]]


# --------------------------------------------------------------------------- figures


@pytest.mark.parametrize("as_loaded", [False, True])
def test_overlay_figure_structure(as_loaded):
    result = synthetic_result()
    photo = load_image(synthetic_photo(), name="cat.png") if as_loaded else synthetic_photo()
    fig = render.overlay_figure(photo, result)
    assert [trace.type for trace in fig.data] == ["image", "heatmap"]
    heat = fig.data[1]
    peak = float(np.abs(result.support).max()) * 100
    assert heat.zmin == -heat.zmax and heat.zmax == pytest.approx(peak, rel=1e-6)
    assert heat.opacity == 0.6
    assert heat.colorbar.title.text == "support (pp)"
    assert "supports" in heat.colorbar.ticktext[-1] and "inhibits" in heat.colorbar.ticktext[0]
    assert "pp" in heat.hovertemplate and "%{customdata}" in heat.hovertemplate
    assert np.asarray(heat.z).shape == PHOTO  # small photo: map at photo resolution
    assert {str(name).split(" (")[0] for name in np.asarray(heat.customdata).ravel()} <= set(result.labels)
    assert fig.layout.yaxis.range == (PHOTO[0], 0) and fig.layout.yaxis.scaleanchor == "x"
    assert "red" in fig.layout.title.text and "blue" in fig.layout.title.text


def test_overlay_figure_limit_class_and_escaping():
    result = synthetic_result(labels=("<b>cat</b>", "dog & co", "c2", "c3", "c4", "c5"))
    fig = render.overlay_figure(synthetic_photo(), result, limit=0.5, class_index=1, title=None)
    heat = heatmaps(fig)[0]
    assert (heat.zmin, heat.zmax) == (-50.0, 50.0)
    assert "dog &amp; co" in fig.layout.title.text
    assert all("<b>" not in str(text) for text in np.asarray(heat.customdata).ravel())


def test_overlay_figure_keeps_large_photos_light():
    height, width = 1536, 2048
    result = synthetic_result(input_size=(96, 128), photo_size=(height, width))
    fig = render.overlay_figure(synthetic_photo(height, width), result)
    image, heat = fig.data
    assert image.source.startswith("data:image/jpeg;base64,")
    assert image.dx * render.PHOTO_MAX_SIDE == pytest.approx(width)
    assert max(np.asarray(heat.z).shape) == render.HEATMAP_MAX_SIDE
    assert float(np.max(heat.x)) < width and fig.layout.xaxis.range == (0, width)
    assert len(fig.to_json()) < 1_500_000


def test_overlay_figure_crop_marks_unseen_area():
    result = synthetic_result(input_size=(24, 24), photo_size=(48, 96), fit="crop")
    heat = heatmaps(render.overlay_figure(synthetic_photo(48, 96), result))[0]
    z = np.asarray(heat.z)
    assert np.isnan(z[:, 0]).all() and np.isfinite(z[:, 48]).all()
    assert np.asarray(heat.customdata)[0, 0] == "not seen by the network"


def test_brightness_figure_and_factor():
    result = synthetic_result()
    fig = render.brightness_figure(synthetic_photo(), result)
    assert [trace.type for trace in fig.data] == ["image"]
    assert "bright" in fig.layout.title.text and "dark" in fig.layout.title.text
    factor = render.brightness_factor(np.array([[0.2, 0.1, 0.0, -0.3]]))
    assert factor[0].tolist() == pytest.approx([render.BRIGHTNESS_FLOOR, (1 + render.BRIGHTNESS_FLOOR) / 2, 1.0, 1.0])
    assert render.brightness_factor(np.array([[-0.1, 0.0]])).tolist() == [[1.0, 1.0]]


def test_per_size_figure_shares_one_scale():
    result = synthetic_result()
    fig = render.per_size_figure(result)
    maps = heatmaps(fig)
    assert len(maps) == len(SIZES)
    peak = float(np.abs(result.per_size).max()) * 100
    assert {(m.zmin, m.zmax) for m in maps} == {(-peak, peak)}
    assert [m.showscale for m in maps] == [False, True]
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["cover 1/2 (16×12 px)", "cover 1/4 (8×6 px)"]
    limited = heatmaps(render.per_size_figure(result, limit=0.25))
    assert {(m.zmin, m.zmax) for m in limited} == {(-25.0, 25.0)}


def test_label_flip_figure_names_classes():
    result = synthetic_result(blob=(0.5, 0.5, 0.08))
    classes, _ = result.label_flip()
    fig = render.label_flip_figure(result)
    (heat,) = heatmaps(fig)
    names = list(heat.colorbar.ticktext)
    assert len(names) == len(np.unique(classes)) >= 2
    assert "class 0 (target)" in names
    assert heat.zmin == -0.5 and heat.zmax == len(names) - 0.5
    assert "%{customdata}" in heat.hovertemplate


def test_label_flip_figure_groups_rare_classes_as_other():
    result = synthetic_result(classes=16, blob=(0.5, 0.5, 0.3), strength=50.0)
    assert len(np.unique(result.label_flip()[0])) > render.MAX_NAMED_CLASSES
    (heat,) = heatmaps(render.label_flip_figure(result))
    names = list(heat.colorbar.ticktext)
    assert len(names) == render.MAX_NAMED_CLASSES + 1 and names[-1].startswith("other")


def test_compare_figure_shares_one_scale():
    a = synthetic_result("NetA")
    b = synthetic_result("NetB", input_size=(20, 20), seed=3, blob=(0.5, 0.6, 0.2))
    fig = render.compare_figure(synthetic_photo(), a, b)
    assert [trace.type for trace in fig.data] == ["image", "heatmap"] * 3
    peak = 100 * max(float(np.abs(a.support).max()), float(np.abs(b.support).max()))
    assert {(m.zmin, m.zmax) for m in heatmaps(fig)} == {(-peak, peak)}
    assert sum(bool(m.showscale) for m in heatmaps(fig)) == 1
    titles = [annotation.text for annotation in fig.layout.annotations]
    assert titles[0].startswith("NetA: class 0 70%") and titles[1].startswith("NetB: class 0 70%")
    assert "NetA − NetB" in titles[2]
    difference = np.asarray(heatmaps(fig)[2].z, dtype=np.float64)
    expected = render.map_on_photo(a, a.support, PHOTO) - render.map_on_photo(b, b.support, PHOTO)
    assert np.allclose(difference, expected * 100, atol=1e-3)


def test_compare_figure_refuses_mixed_units():
    a = synthetic_result()
    with pytest.raises(ParameterError, match="log-odds"):
        render.compare_figure(synthetic_photo(), a, synthetic_result(score_kind="log-odds"))


def test_log_odds_results_are_labelled_in_log_odds():
    heat = heatmaps(render.overlay_figure(synthetic_photo(), synthetic_result(score_kind="log-odds")))[0]
    assert heat.colorbar.title.text == "support (log-odds)" and "log-odds" in heat.hovertemplate


def test_cover_title_for_odd_sizes():
    result = synthetic_result(sizes=(1.0, 0.3))
    assert render.cover_title(result, 0) == "cover 1 (32×24 px)"
    assert render.cover_title(result, 1).startswith("cover 3/10")


# --------------------------------------------------------------------------- trust: faithfulness, stability, pointing


def with_faithfulness(result: SensitivityResult, faithful: bool = True, steps: int = 20) -> SensitivityResult:
    """The result with a synthetic ``metadata["faithfulness"]`` as :func:`sensmap.faithfulness` stores it:
    map-order curves far better (``faithful``) or worse than the random-order baselines."""
    from sensmap.metrics import curve_auc

    fractions = np.linspace(0.0, 1.0, steps + 1)
    fast, slow = 0.7 * np.exp(-6 * fractions), 0.7 * (1 - fractions)
    deletion, random_deletion = (fast, slow) if faithful else (slow, fast)
    insertion, random_insertion = 0.7 - deletion, 0.7 - random_deletion
    result.metadata["faithfulness"] = {
        "steps": steps,
        "random_orders": 3,
        "seed": 0,
        "fractions": fractions.tolist(),
        "deletion_curve": deletion.tolist(),
        "insertion_curve": insertion.tolist(),
        "random_deletion_curve": random_deletion.tolist(),
        "random_insertion_curve": random_insertion.tolist(),
        "deletion_auc": curve_auc(deletion),
        "insertion_auc": curve_auc(insertion),
        "random_deletion_auc": curve_auc(random_deletion),
        "random_insertion_auc": curve_auc(random_insertion),
        "passes": 2 * (steps + 1) * 4,
    }
    return result


def test_faithfulness_figure_draws_both_curves_against_random_orders():
    result = with_faithfulness(synthetic_result())
    numbers = result.metadata["faithfulness"]
    fig = render.faithfulness_figure(result)
    assert [trace.type for trace in fig.data] == ["scatter"] * 4
    names = [trace.name for trace in fig.data]
    assert names[0] == f"deletion, map order (AUC {numbers['deletion_auc']:.3f})"
    assert names[1] == f"deletion, random order (AUC {numbers['random_deletion_auc']:.3f})"
    assert names[3] == f"insertion, random order (AUC {numbers['random_insertion_auc']:.3f})"
    assert list(fig.data[0].x) == numbers["fractions"] and list(fig.data[2].y) == numbers["insertion_curve"]
    assert fig.data[1].line.dash == "dash" and fig.data[0].line.dash == "solid"
    assert fig.layout.xaxis.title.text == "fraction of pixels removed"
    assert fig.layout.xaxis2.title.text == "fraction of pixels inserted"
    assert fig.layout.yaxis.title.text == "probability of 'class 0'"
    assert render.FAITHFUL_READING in fig.layout.title.text
    with pytest.raises(ParameterError, match="faithfulness"):
        render.faithfulness_figure(synthetic_result())


def test_faithfulness_verdict_and_summary():
    good = with_faithfulness(synthetic_result()).metadata["faithfulness"]
    bad = with_faithfulness(synthetic_result(), faithful=False).metadata["faithfulness"]
    assert render.faithfulness_verdict(good).startswith("Faithful")
    assert render.faithfulness_verdict(bad).startswith("Not faithful")
    assert render.faithfulness_verdict({**good, "insertion_auc": 0.0}).startswith("Partly faithful. Only the deletion")
    assert render.auc_summary(good).startswith(f"deletion AUC {good['deletion_auc']:.2f} (random ")


def test_stability_figure_shows_the_spread_in_pp_over_the_photo():
    from sensmap.metrics import stability

    result = synthetic_result()
    spread, score = stability(result.per_size)
    fig = render.stability_figure(synthetic_photo(), result)
    assert [trace.type for trace in fig.data] == ["image", "heatmap"]
    heat = fig.data[1]
    assert heat.zmin == 0 and heat.zmax == pytest.approx(float(spread.max()) * 100, rel=1e-5)
    assert heat.colorbar.title.text == "spread (pp)" and "pp" in heat.hovertemplate
    assert heat.colorscale[0][1].endswith(",0.000)") and heat.colorscale[-1][1] == "rgba(77,0,75,1.000)"
    assert f"mean spread {score * 100:.1f} pp" in fig.layout.title.text
    across = render.stability_figure(synthetic_photo(), result, spread=spread * 2, score=0.5, across="fills a, b")
    assert "mean spread 50.0 pp" in across.layout.title.text and "fills a, b" in across.layout.title.text


def test_photo_boxes_map_to_the_network_grid():
    squash = synthetic_result()
    assert render.photo_box_to_grid(squash, (0.1, 0.2, 0.5, 0.6)) == pytest.approx((0.1, 0.2, 0.5, 0.6))
    crop = synthetic_result(input_size=(24, 24), photo_size=(48, 96), fit="crop")  # sees columns 24..72 of 96
    assert render.photo_box_to_grid(crop, (0.0, 0.25, 1.0, 0.5)) == pytest.approx((0.0, 0.0, 1.0, 0.5))
    assert render.photo_box_to_grid(crop, (0.5, 0.0, 1.0, 0.3)) == pytest.approx((0.5, 0.0, 1.0, 0.1))
    assert render.photo_box_to_grid(crop, (0.0, 0.0, 1.0, 0.2)) is None  # left of the crop: never seen


def test_pointing_figure_is_a_photo_to_draw_a_box_on():
    result = synthetic_result()
    bare = render.pointing_figure(synthetic_photo())
    assert [trace.type for trace in bare.data] == ["image"] and bare.layout.dragmode == "select"
    assert not bare.layout.shapes
    fig = render.pointing_figure(synthetic_photo(), (0.25, 0.1, 0.75, 0.5), result)
    assert [trace.type for trace in fig.data] == ["image", "scatter"]
    (shape,) = fig.layout.shapes
    height, width = PHOTO
    assert (shape.x0, shape.x1, shape.y0, shape.y1) == (0.1 * width, 0.5 * width, 0.25 * height, 0.75 * height)
    y, x = render.peak_on_photo(result)
    assert (fig.data[1].y[0], fig.data[1].x[0]) == (y, x)
    row, col = np.unravel_index(np.argmax(result.support), result.support.shape)
    assert (y, x) == pytest.approx(((row + 0.5) * PHOTO[0] / INPUT[0], (col + 0.5) * PHOTO[1] / INPUT[1]))
