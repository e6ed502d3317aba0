"""The Methods page through AppTest, with the smallest shared network (MobileNet α0.25, 128 px) and few RISE masks:
occlusion, Grad-CAM and RISE side by side, one random baseline, the verdict, the sanity check, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_ui import SMALL, add_sample, button, errors, go, open_app

from sensmap import render, sidebyside, ui

MASKS = 100


@pytest.fixture(autouse=True)
def dashboard_env(monkeypatch, shared_weights_dir: Path) -> None:
    monkeypatch.setenv("SENSMAP_WEIGHTS_DIR", str(shared_weights_dir))
    monkeypatch.delenv("SENSMAP_MODELS_DIR", raising=False)


def captions(at) -> list[str]:
    return [c.value for c in at.caption]


def test_methods_page_asks_for_a_photo_and_a_network_first():
    at = open_app("pages/methods.py")
    assert at.title[0].value == "Methods" and not errors(at)
    assert any("need a photo" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def open_methods(at):
    """Network A = the smallest shared MobileNet, Map settings covers 1/2 and 1/4, the Methods page with few masks."""
    go(at, "pages/networks.py")
    at.selectbox(key="w.network.A").select(SMALL).run()
    at.session_state[ui.K_SETTINGS] = ui.MapSettings(sizes=(0.5, 0.25))
    go(at, "pages/methods.py")
    at.select_slider(key="w.rise.masks").set_value(MASKS).run()
    assert not at.exception and not errors(at), errors(at)
    return at


def test_methods_side_by_side_with_a_verdict_and_the_sanity_check():
    at = open_methods(add_sample(open_app()))
    (cost,) = [c for c in captions(at) if c.startswith("Cost:")]
    # occlusion 9 + 49 windows, Grad-CAM 1 pass, RISE one per mask; a faithfulness check per map
    assert cost.startswith(f"Cost: {58 + 1 + MASKS + 3 * 168:,} forward passes ({58 + 1 + MASKS} for the maps")
    assert not at.get("plotly_chart") and any("Run methods" in i.value for i in at.info)

    button(at, "Run methods").click().run()
    assert not at.exception and not errors(at), errors(at)
    store = at.session_state[ui.K_RESULTS]
    by_method = {key.method: (key, result) for key, result in store.items()}
    assert set(by_method) == {"occlusion", "gradcam", "rise"} and len(store) == 3
    (occlusion_key, occlusion), (_, gradcam), (rise_key, rise) = (
        by_method[m] for m in ("occlusion", "gradcam", "rise")
    )
    assert occlusion_key.settings == ui.MapSettings(sizes=(0.5, 0.25)).key
    assert rise.passes == MASKS and rise.method_parameters["seed"] == 0 and rise.approximate
    assert at.session_state[ui.K_LAST][(occlusion_key.photo, occlusion_key.network)] == occlusion_key
    block = occlusion.detail_px
    numbers = [r.metadata["faithfulness"] for r in (occlusion, gradcam, rise)]
    assert {n["block"] for n in numbers} == {block} and rise.detail_px != block  # RISE: 19 px mask cells
    assert (
        numbers[0]["random_deletion_curve"]
        == numbers[1]["random_deletion_curve"]
        == numbers[2]["random_deletion_curve"]
    ), "one random baseline for the three maps"

    (chart,) = at.get("plotly_chart")
    heatmaps = [trace for trace in json.loads(chart.proto.spec)["data"] if trace["type"] == "heatmap"]
    assert len(heatmaps) == 3, "three maps side by side"
    assert heatmaps[0]["zmax"] == heatmaps[2]["zmax"] != heatmaps[1]["zmax"], "occlusion and RISE share pp"
    comparison = sidebyside.side_by_side([occlusion, gradcam, rise], occlusion.photo_size)
    assert ui.plain(ui.approximate_note(rise)) in [w.value for w in at.warning]
    assert ui.plain(comparison.verdict) in [s.value for s in at.success] + [w.value for w in at.warning]
    (agreement, faithfulness) = at.dataframe[:2]
    assert list(agreement.value["maps"]) == ["occlusion vs Grad-CAM", "occlusion vs RISE", "Grad-CAM vs RISE"]
    assert list(agreement.value["Spearman"]) == [row[1] for row in comparison.agreement_rows()]
    assert list(faithfulness.value["margin over random"]) == [row[3] for row in comparison.faithfulness_rows()]
    keys = [c for c in captions(at) if c.startswith("**")]
    assert len(keys) == 3 and "relative" in keys[1] and "percentage points" in keys[2]

    # The same seed gives the same (cached) map; another seed is a new map, which costs its masks again.
    at.number_input(key="w.rise.seed").set_value(1).run()
    (cost,) = [c for c in captions(at) if c.startswith("Cost:")]
    assert cost.startswith(f"Cost: {MASKS + 168:,} forward passes ({MASKS} for the maps")
    at.number_input(key="w.rise.seed").set_value(0).run()
    assert any(c.endswith("these maps are ready") for c in captions(at))
    assert at.session_state[ui.K_RESULTS][rise_key] is rise

    # The sanity check: a button with its cost, then the curve and a verdict per method.
    (label,) = [b.label for b in at.button if b.label.startswith("Run sanity check")]
    assert "forward passes" in label
    button(at, "Run sanity check").click().run()
    assert not at.exception and not errors(at), errors(at)
    checks = [r.metadata["sanity"] for r in (occlusion, gradcam, rise)]
    assert all(len(check["spearman"]) == len(check["randomised"]) >= 2 for check in checks)
    assert len(at.get("plotly_chart")) == 2, "the side-by-side and the sanity curve"
    verdicts = [s.value for s in at.success] + [e.value for e in at.error]
    assert all(ui.plain(check["verdict"]) in verdicts for check in checks), verdicts
    flagged = [e.value for e in at.error]
    assert len(flagged) == sum(not check["trustworthy"] for check in checks), "failing maps flagged as untrustworthy"
    assert not [b for b in at.button if b.label.startswith("Run sanity check")], "nothing left to check"

    # The Report page includes the three maps and the checks.
    go(at, "pages/report.py")
    assert at.checkbox(key="w.report_methods").value
    ((keys, method_keys, _), png), *_ = at.session_state[ui.K_REPORTS].items()
    assert keys == (occlusion_key,) and set(method_keys) == set(store) and png.startswith(b"\x89PNG")
    labels = [d.label for d in at.get("download_button")]
    assert len(labels) == 5 and any("Grad-CAM" in label for label in labels), labels
    at.checkbox(key="w.report_methods").uncheck().run()
    assert any(k[1] == () for k in at.session_state[ui.K_REPORTS]), "without the methods: the plain report"
    assert render.sanity_numbers(rise) is not None
