"""Maps by several methods side by side (sensmap.sidebyside): the shared random baseline, margins, verdict,
agreement — from synthetic results, and from real maps of a small network with faithfulness(block=...)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_random_cnn
from test_render import INPUT, PHOTO, synthetic_photo, synthetic_result

from sensmap import render, sidebyside
from sensmap.errors import ParameterError
from sensmap.images import map_to_photo
from sensmap.metrics import agreement, curve_auc
from sensmap.result import METHOD_LABELS, SensitivityResult

FRACTIONS = np.linspace(0.0, 1.0, 21)
RANDOM_DELETION = 0.7 * (1 - FRACTIONS)  # the shared random baseline: the class fades linearly


def pixel_result(method: str, support: np.ndarray, detail_px: int = 4, **changes) -> SensitivityResult:
    """A Grad-CAM or RISE result of the synthetic photo with this map on the network grid."""
    base = synthetic_result()
    values = dict(model_name=base.model_name, labels=base.labels, input_size=base.input_size,
                  photo_size=base.photo_size, fit=base.fit, sizes=(), stride=0.0, fill=base.fill,
                  score_kind=base.score_kind, target=base.target, reference_probabilities=base.reference_probabilities,
                  outputs=np.empty((0, len(base.labels)), np.float32), method=method, pixel_map=support,
                  method_parameters={"detail_px": detail_px, "passes": 1 if method == "gradcam" else 50})  # fmt: skip
    return SensitivityResult(**{**values, **changes})


def blob(cy: float, cx: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : INPUT[0], 0 : INPUT[1]]
    return np.exp(-(((yy + 0.5) / INPUT[0] - cy) ** 2 + ((xx + 0.5) / INPUT[1] - cx) ** 2) / 0.02).astype(np.float32)


def with_curves(result: SensitivityResult, speed: float, block: int) -> SensitivityResult:
    """Faithfulness numbers whose map-order deletion curve falls ``0.7·exp(−speed·f)`` (insertion mirrored) against
    the shared random baseline, as :func:`sensmap.faithfulness` stores them."""
    deletion = 0.7 * np.exp(-speed * FRACTIONS)
    insertion, random_insertion = 0.7 - deletion, 0.7 - RANDOM_DELETION
    result.metadata["faithfulness"] = {
        "steps": 20, "random_orders": 3, "seed": 0, "block": block, "fractions": FRACTIONS.tolist(),
        "deletion_curve": deletion.tolist(), "insertion_curve": insertion.tolist(),
        "random_deletion_curve": RANDOM_DELETION.tolist(), "random_insertion_curve": random_insertion.tolist(),
        "deletion_auc": curve_auc(deletion), "insertion_auc": curve_auc(insertion),
        "random_deletion_auc": curve_auc(RANDOM_DELETION), "random_insertion_auc": curve_auc(random_insertion),
        "passes": 168,
    }  # fmt: skip
    return result


def three_maps(speeds: tuple[float, float, float] = (6.0, 2.0, 10.0)) -> list[SensitivityResult]:
    """Occlusion (finest cover 6 px), Grad-CAM and RISE of one photo, each checked against the shared baseline."""
    occlusion = synthetic_result()
    block = occlusion.detail_px
    gradcam = pixel_result("gradcam", blob(0.45, 0.4), detail_px=8)
    rise = pixel_result("rise", blob(0.5, 0.45) - 0.3 * blob(0.8, 0.85), detail_px=3)
    return [with_curves(r, s, block) for r, s in zip((occlusion, gradcam, rise), speeds, strict=True)]


def test_the_shared_block_is_the_occlusion_maps_finest_cover():
    occlusion, gradcam, rise = three_maps()
    assert occlusion.detail_px == min(min(g.window_y, g.window_x) for g in occlusion.grids) == 6
    assert sidebyside.shared_block([gradcam, occlusion, rise]) == 6
    assert sidebyside.shared_block([gradcam, rise]) == 8, "without occlusion: the coarsest detail"
    assert sidebyside.checked_with(gradcam, 6) and not sidebyside.checked_with(gradcam, 8)
    with pytest.raises(ParameterError):
        sidebyside.shared_block([])


def test_margins_verdict_and_agreement():
    maps = three_maps()
    comparison = sidebyside.side_by_side(list(reversed(maps)), PHOTO)
    assert comparison.methods == ("occlusion", "gradcam", "rise") and comparison.block == 6
    for result in maps:
        numbers = result.metadata["faithfulness"]
        expected = (numbers["random_deletion_auc"] - numbers["deletion_auc"]) + (
            numbers["insertion_auc"] - numbers["random_insertion_auc"]
        )
        assert comparison.margins[result.method] == pytest.approx(expected)
    assert comparison.best == "rise", "the fastest falling deletion curve (and rising insertion curve) wins"
    assert comparison.verdict.startswith("TinyNet follows the RISE map best on this photo")
    assert f"{comparison.margins['occlusion']:+.3f} for occlusion" in comparison.verdict
    pairs = {(a, b): numbers for a, b, numbers in comparison.agreement}
    assert set(pairs) == {("occlusion", "gradcam"), ("occlusion", "rise"), ("gradcam", "rise")}
    shape = render.fit_within(PHOTO, render.HEATMAP_MAX_SIDE)
    photo_maps = {r.method: map_to_photo(r.support, shape, r.fit) for r in maps}
    assert pairs["gradcam", "rise"] == agreement(photo_maps["gradcam"], photo_maps["rise"])
    rows = comparison.agreement_rows()
    assert rows[0] == ("occlusion vs Grad-CAM", f"{pairs['occlusion', 'gradcam']['spearman']:+.2f}",
                       f"{pairs['occlusion', 'gradcam']['top_iou']:.2f}")  # fmt: skip
    assert [row[0] for row in comparison.faithfulness_rows()] == ["occlusion", "Grad-CAM", "RISE"]
    assert comparison.faithfulness_rows()[2][3] == f"{comparison.margins['rise']:+.3f}"
    assert comparison.as_dict()["best"] == "rise" and comparison.sanity_rows() == []


def test_close_margins_are_called_about_as_faithful_and_no_winner_below_random():
    comparison = sidebyside.side_by_side(three_maps((6.0, 6.05, 2.0)), PHOTO)
    margins = comparison.margins
    assert abs(margins["occlusion"] - margins["gradcam"]) < sidebyside.TIE
    best = comparison.best
    other = {"occlusion", "gradcam"} - {best}
    assert f"{METHOD_LABELS[other.pop()]} is about as faithful" in comparison.verdict
    slow = sidebyside.side_by_side(three_maps((0.2, 0.5, 0.9)), PHOTO)  # slower than the linear random fade
    assert max(slow.margins.values()) <= 0 and slow.best is None
    assert slow.verdict.startswith("No map beats random orders here")


def test_a_failed_sanity_check_of_the_winner_is_named():
    maps = three_maps()
    maps[2].metadata["sanity"] = {"spearman": [0.9, 0.8, 0.7], "randomised": [1, 2, 3], "flat": [False] * 3,
                                  "total_layers": 3, "threshold": 0.5, "trustworthy": False,
                                  "verdict": "Fails"}  # fmt: skip
    comparison = sidebyside.side_by_side(maps, PHOTO)
    assert comparison.best == "rise" and "failed the randomisation check" in comparison.verdict
    assert comparison.sanity_rows() == [("RISE", "+0.90 (1/3), +0.80 (2/3), +0.70 (3/3)", "fails: not trustworthy")]


def test_inconsistent_or_unchecked_maps_are_refused():
    occlusion, gradcam, rise = three_maps()
    with pytest.raises(ParameterError, match="at least two different methods"):
        sidebyside.side_by_side([occlusion], PHOTO)
    with pytest.raises(ParameterError, match="at least two different methods"):
        sidebyside.side_by_side([gradcam, gradcam], PHOTO)
    other_class = pixel_result("rise", rise.support, target=1)
    with pytest.raises(ParameterError, match="one network, photo, class"):
        sidebyside.side_by_side([occlusion, other_class], PHOTO)
    blurred = with_curves(pixel_result("gradcam", gradcam.support, fill="blur"), 2.0, 6)
    with pytest.raises(ParameterError, match="fill"):
        sidebyside.side_by_side([occlusion, blurred], PHOTO)
    other_block = with_curves(pixel_result("rise", rise.support), 2.0, 8)
    with pytest.raises(ParameterError, match=r"RISE: no faithfulness numbers .* block=6"):
        sidebyside.side_by_side([occlusion, other_block], PHOTO)


def test_the_methods_figure_has_one_colour_scale_per_unit():
    maps = three_maps()
    fig = render.methods_figure(synthetic_photo(), maps)
    heats = [trace for trace in fig.data if trace.type == "heatmap"]
    assert len(heats) == 3 and [bool(h.showscale) for h in heats] == [True, True, False]
    pp = 100 * max(np.abs(maps[0].support).max(), np.abs(maps[2].support).max())
    assert heats[0].zmax == pytest.approx(pp) and heats[2].zmax == pytest.approx(pp), "occlusion and RISE share pp"
    assert heats[1].zmax == pytest.approx(np.abs(maps[1].support).max()), "Grad-CAM: its own relative scale"
    assert heats[0].colorbar.orientation == "h"
    assert tuple(heats[0].colorbar.ticktext) == (f"−{pp:.1f}", "0", f"+{pp:.1f}")
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["occlusion (pp)", "Grad-CAM (relative)", "RISE (pp, approximate)"]


def test_the_sanity_figure_marks_flat_steps():
    maps = three_maps()
    maps[0].metadata["sanity"] = {"spearman": [0.6, 0.1, 0.0], "randomised": [1, 5, 10],
                                  "flat": [False, False, True], "total_layers": 10, "threshold": 0.5,
                                  "trustworthy": True, "verdict": "Passes"}  # fmt: skip
    fig = render.sanity_figure(maps)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(lines) == 1 and list(lines[0].x) == [0.0, 0.1, 0.5, 1.0] and list(lines[0].y) == [1.0, 0.6, 0.1, 0.0]
    (flat,) = [t for t in fig.data if t.mode == "markers"]
    assert list(flat.x) == [1.0] and "flat map" in flat.name


# --------------------------------------------------------------------------- real maps of a small network


def test_faithfulness_with_a_shared_block_gives_every_method_one_random_baseline():
    import sensmap
    from sensmap.engine import faithfulness
    from sensmap.methods import explain

    network = sensmap.load_model(build_random_cnn(32, 40, classes=3, seed=2))
    photo = np.random.default_rng(5).integers(0, 256, (32, 40, 3)).astype(np.float32)
    maps = [explain(network, photo, method="occlusion", sizes=(0.5, 0.25)), explain(network, photo, method="gradcam"),
            explain(network, photo, method="rise", masks=40, grid=5)]  # fmt: skip
    assert len({r.detail_px for r in maps}) > 1, "each method's own patches differ"
    block = sidebyside.shared_block(maps)
    assert block == maps[0].detail_px == 8
    for result in maps:
        numbers = faithfulness(network, photo, result, steps=6, random_orders=2, block=block)
        assert numbers["block"] == block and result.metadata["faithfulness"] is numbers
    recorded = [r.metadata["faithfulness"] for r in maps]
    randoms = [(n["random_deletion_curve"], n["random_insertion_curve"]) for n in recorded]
    assert randoms[0] == randoms[1] == randoms[2], "one random baseline for all three"
    comparison = sidebyside.side_by_side(maps, (32, 40))
    assert comparison.block == block and set(comparison.margins) == {"occlusion", "gradcam", "rise"}
    own = faithfulness(network, photo, maps[2], steps=6, random_orders=2)  # without a block: the mask cell
    assert own["block"] == maps[2].detail_px == maps[2].method_parameters["detail_px"] == 7
    assert own["random_deletion_curve"] != randoms[0][0]
    with pytest.raises(ParameterError, match="block"):
        faithfulness(network, photo, maps[1], steps=6, random_orders=1, block=0)
