"""The Streamlit dashboard through AppTest: pages render, photos, networks, maps, comparison, reports, errors."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, shared_photo
from streamlit.testing.v1 import AppTest

from sensmap import ui
from sensmap.engine import plan_passes, prepare_incremental
from sensmap.result import SensitivityResult
from sensmap.windows import window_grids

APP = REPO / "app.py"
TIMEOUT = 120  # seconds per script run: the first run of a test session imports TensorFlow
SMALL = "MobileNet α0.25 128px"  # the fastest real network in ../shared/weights
PAGES = ["pages/home.py", "pages/photos.py", "pages/networks.py", "pages/map.py", "pages/compare.py",
         "pages/methods.py", "pages/report.py"]  # fmt: skip


@pytest.fixture(autouse=True)
def dashboard_env(monkeypatch, shared_weights_dir: Path) -> None:
    monkeypatch.setenv("SENSMAP_WEIGHTS_DIR", str(shared_weights_dir))
    monkeypatch.delenv("SENSMAP_MODELS_DIR", raising=False)


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def go(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def button(at: AppTest, label: str):
    found = [b for b in at.button if b.label.startswith(label)]
    assert found, f"no button {label!r} among {[b.label for b in at.button]}"
    return found[0]


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def run_small_map(at: AppTest) -> AppTest:
    """Network A = the smallest shared MobileNet, covers 1/2 and 1/4, Run map: no error."""
    go(at, "pages/networks.py")
    at.selectbox(key="w.network.A").select(SMALL).run()
    go(at, "pages/map.py")
    at.multiselect(key="w.sizes").set_value(["1/2", "1/4"]).run()
    button(at, "Run map").click().run()
    assert not at.exception and not errors(at), errors(at)
    return at


def add_sample(at: AppTest, name: str = "chelsea.jpg") -> AppTest:
    go(at, "pages/photos.py")
    button(at, f"Add {name}").click().run()
    assert not at.exception
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_a_fresh_session(page):
    at = open_app(page)
    assert at.title, "every page has a title"
    assert not errors(at)


def test_home_lists_the_ready_networks():
    at = open_app()
    text = " ".join(m.value for m in at.markdown)
    assert "snow" in text and "MobileNet α0.25 128px" in text


def test_photos_page_adds_a_sample_photo():
    at = add_sample(open_app())
    photos = at.session_state[ui.K_PHOTOS]
    assert [entry.name for entry in photos.values()] == ["chelsea.jpg"]
    assert at.session_state[ui.K_ACTIVE] == next(iter(photos))
    assert len(at.image) >= 1, "the thumbnail is shown"
    assert any("CC0" in m.value for m in at.markdown), "the licence of the samples is shown"


def test_a_bad_upload_shows_an_error_and_keeps_the_good_photos():
    at = add_sample(open_app())
    uploader = at.file_uploader[0]
    assert uploader.accept_multiple_files
    uploader.set_value(
        [
            ("notes.jpg", b"these are my notes, not a photo\n" * 20, "image/jpeg"),
            ("hot_dog.jpg", shared_photo("hot_dog.jpg").read_bytes(), "image/jpeg"),
        ]
    ).run()
    assert not at.exception
    assert len(at.error) == 1 and "notes.jpg" in at.error[0].value
    assert any("hot" in s.value and "dog.jpg" in s.value for s in at.success)
    names = [entry.name for entry in at.session_state[ui.K_PHOTOS].values()]
    assert names == ["chelsea.jpg", "hot_dog.jpg"]
    assert len(at.file_uploader) == 1 and not at.file_uploader[0].value, "the uploader empties after an upload"


def test_the_active_photo_can_be_changed_and_removed():
    at = add_sample(open_app())
    button(at, "Add coffee.jpg").click().run()
    photos = list(at.session_state[ui.K_PHOTOS])
    button_keys = [b.key for b in at.button if b.label == "Use" and not b.disabled]
    at.button(key=button_keys[0]).click().run()
    assert at.session_state[ui.K_ACTIVE] == photos[1]
    at.button(key=f"w.remove.{photos[1][:16]}").click().run()
    assert list(at.session_state[ui.K_PHOTOS]) == photos[:1]
    assert at.session_state[ui.K_ACTIVE] == photos[0]


def test_networks_page_groups_the_catalogue_and_lists_ready_networks_first():
    at = open_app("pages/networks.py")
    expanders = [e.label for e in at.expander]
    assert expanders[0].startswith(ui.READY_GROUP)
    assert any(label.startswith("ResNet") for label in expanders)
    options = at.selectbox(key="w.network.A").options
    assert options[0].startswith("MobileNetV2") and "ready" in options[0]
    assert any(o.startswith(SMALL) for o in options[:4])


def test_without_ready_networks_network_a_is_mobilenetv2_and_nothing_downloads_unasked(monkeypatch, tmp_path):
    from keras.src.utils import file_utils

    asked = []
    monkeypatch.delenv("SENSMAP_WEIGHTS_DIR")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty Keras cache: every network needs a download
    monkeypatch.setattr(file_utils, "get_file", lambda *args, **kwargs: asked.append(args) or 1 / 0)
    at = open_app("pages/networks.py")
    assert at.selectbox(key="w.network.A").value == "MobileNetV2"
    assert at.selectbox(key="w.network.B").value == "— none —"
    assert not errors(at) and not at.status and asked == []
    assert button(at, "Download and load MobileNetV2 now")
    at.selectbox(key="w.network.B").select("Xception").run()  # choosing is not loading: still nothing downloads
    assert asked == [] and button(at, "Download and load Xception now")


def test_catalogue_parameters_are_counts_of_each_variant():
    entries = ui.choice_labels()
    assert entries[SMALL].params == "0.48 M" and entries["MobileNet α0.75 192px"].params == "2.60 M"
    assert entries["MobileNetV2"].params == "3.54 M" and entries["ResNet50"].params == "25.6 M"
    assert not any("fewer" in entry.params for entry in entries.values())


@pytest.mark.slow
def test_weights_that_cannot_be_downloaded_show_an_error(monkeypatch, tmp_path):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise OSError("network is unreachable (test: offline)")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(file_utils, "get_file", offline)
    at = open_app("pages/networks.py")
    at.selectbox(key="w.network.A").select("ResNet50").run()
    assert not at.exception and not errors(at)  # choosing is not downloading
    button(at, "Download and load ResNet50 now").click().run()
    assert not at.exception
    assert any("could not get the ImageNet weights for ResNet50" in text for text in errors(at)), errors(at)
    assert at.session_state[ui.K_NETWORK["A"]].name == "ResNet50", "the choice stays; the error is shown"
    go(at, "pages/map.py")
    add_sample(at)
    go(at, "pages/map.py")
    assert any("ResNet50" in text for text in errors(at)) and not at.get("plotly_chart")


@pytest.mark.slow
def test_own_models_come_from_the_operators_folder(monkeypatch, tmp_path):
    from conftest import build_random_cnn

    build_random_cnn(48, 64, classes=3).save(tmp_path / "shapes.keras")
    (tmp_path / "shapes.txt").write_text("circle\nsquare\ntriangle\n", encoding="utf-8")
    monkeypatch.setenv("SENSMAP_MODELS_DIR", str(tmp_path))
    at = open_app("pages/networks.py")
    assert any(e.label.startswith(ui.OWN_GROUP) for e in at.expander)
    at.selectbox(key="w.network.B").select("shapes (own model)").run()
    assert not at.exception and not errors(at), errors(at)
    captions = [c.value.replace("\\", "") for c in at.caption]  # shown text: Markdown escapes removed
    assert any("shapes (own model): loaded, input 64×48 px" in c and "3 classes" in c for c in captions), captions
    add_sample(at)
    at.session_state[ui.K_NETWORK["A"]] = at.session_state[ui.K_NETWORK["B"]]
    go(at, "pages/map.py")
    assert set(at.dataframe[0].value["class"]) <= {"circle", "square", "triangle"}


@pytest.mark.slow
def test_map_compare_and_report_with_real_networks():
    at = add_sample(open_app())
    go(at, "pages/networks.py")
    at.selectbox(key="w.network.A").select(SMALL).run()
    at.selectbox(key="w.network.B").select("MobileNetV2").run()
    assert not at.exception and not errors(at)
    assert any("loaded, input 128×128 px" in c.value for c in at.caption)

    go(at, "pages/map.py")
    assert at.dataframe, "the top-5 classes are shown"
    target = at.selectbox(key=[s.key for s in at.selectbox if s.key.startswith("w.target.")][0])
    assert target.value == at.session_state[ui.K_TOP][next(iter(at.session_state[ui.K_TOP]))][0][0]
    at.multiselect(key="w.sizes").set_value(["1/2", "1/4"]).run()
    cost = [c.value for c in at.caption if c.value.startswith("Cost:")]
    assert cost and "58 forward passes for the map" in cost[0] and "then 168 for its faithfulness check" in cost[0]
    button(at, "Run map").click().run()
    assert not at.exception and not errors(at), errors(at)
    assert len(at.get("plotly_chart")) == 2, "the overlay and the photo of the pointing check are drawn"
    assert any("percentage points" in c.value for c in at.caption), "the colour legend is shown"
    (key,) = at.session_state[ui.K_RESULTS]
    assert key.settings[0] == (0.5, 0.25)
    assert ui.K_RUNNING not in at.session_state
    result = at.session_state[ui.K_RESULTS][key]
    assert {"faithfulness", "story", "stability"} <= set(result.metadata)
    assert result.metadata["faithfulness"]["passes"] == ui.faithfulness_passes() == 168
    story = [i.value for i in at.info if "calls this photo" in i.value]
    assert story and "top 3 are" in story[0], "the story in words is shown under the top-5"

    for view in ("Brightness", "Per cover size", "Label flip", "Faithfulness", "Stability"):
        at.session_state["w.view"] = view
        at.run()
        assert not at.exception and len(at.get("plotly_chart")) == 2, view
        if view == "Faithfulness":
            metrics = {m.label: m.value for m in at.metric}
            deletion = result.metadata["faithfulness"]["deletion_auc"]
            assert float(metrics["Deletion AUC"]) == pytest.approx(deletion, abs=1e-3)
            assert {"Deletion AUC, random order", "Insertion AUC", "Insertion AUC, random order"} <= set(metrics)
            assert any("deletion AUC below random and insertion AUC above random" in c.value for c in at.caption)
        if view == "Stability":
            (spread,) = [m.value for m in at.metric if m.label == "Mean spread of the map"]
            assert spread.endswith(" pp") and float(spread.split()[0]) > 0

    # The pointing check through the keyboard: the box's edges in % of the photo.
    assert not [m for m in at.metric if m.label == "Support inside"]
    for label, value in (("top (%)", 10), ("left (%)", 20), ("bottom (%)", 90), ("right (%)", 80)):
        at.number_input(key=[n.key for n in at.number_input if n.label == label][0]).set_value(value).run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    pointing = result.metadata["pointing"]
    assert pointing["box_photo"] == pytest.approx([0.1, 0.2, 0.9, 0.8])
    assert metrics["Support inside"] == f"{pointing['share_inside']:.0%}" and pointing["share_inside"] > 0
    assert metrics["Peak inside"] in ("yes", "no") and metrics["Box area"] == f"{pointing['box_area']:.0%}"
    assert pointing["box_area"] == pytest.approx(0.48, abs=0.03)
    assert at.session_state[ui.K_BOXES][key.photo] == pytest.approx((0.1, 0.2, 0.9, 0.8))

    # A run interrupted by a click (Stop) leaves the marker behind: the page says so and keeps the map.
    at.session_state[ui.K_RUNNING] = {"label": f"{SMALL} on chelsea.jpg", "done": 64, "total": 100}
    at.run()
    assert any("Stopped" in w.value and "64 of 100" in w.value for w in at.warning)
    assert len(at.get("plotly_chart")) == 2, "the last good map stays visible"

    go(at, "pages/compare.py")
    assert not at.metric
    button(at, "Run comparison").click().run()
    assert not at.exception and not errors(at), errors(at)
    labels = [m.label for m in at.metric]
    assert "Spearman rank correlation" in labels and any("IoU" in label for label in labels)
    spearman = float(next(m.value for m in at.metric if m.label.startswith("Spearman")))
    assert -1.0 <= spearman <= 1.0
    assert len(at.get("plotly_chart")) == 1
    assert len(at.session_state[ui.K_RESULTS]) == 2
    aucs = [c.value for c in at.caption if c.value.startswith("deletion AUC")]
    assert len(aucs) == 2 and all("insertion AUC" in text for text in aucs), "each network's AUCs beside its top-1"
    assert all("pointing" in r.metadata for r in at.session_state[ui.K_RESULTS].values()), "the photo's box applies"

    go(at, "pages/report.py")
    downloads = at.get("download_button")
    assert len(downloads) == 4, "PNG, HTML and one .npz per network"
    assert len(at.image) == 1, "the PNG preview"
    ((keys, method_keys, _), png), *_ = at.session_state[ui.K_REPORTS].items()
    assert keys == tuple(at.session_state[ui.K_RESULTS]) and method_keys == () and png.startswith(b"\x89PNG")
    loaded = SensitivityResult.load(at.session_state[ui.K_RESULTS][keys[0]].to_npz_bytes())
    assert {"faithfulness", "pointing", "story", "stability"} <= set(loaded.metadata), "the .npz carries them"


def _cancelled_run_script(weights: str) -> None:
    import streamlit as st

    from sensmap import ui

    ui.add_sample_photo("coffee.jpg")
    photo = ui.active_photo()
    choice = ui.NetworkChoice("MobileNet", (("alpha", 0.25), ("input_shape", (128, 128, 3))), weights=weights)
    network = ui.load_network(choice)
    calls = []

    def cancel() -> bool:  # the first run: stop during the second cover size; the next run: complete it
        calls.append(1)
        return "first run" not in st.session_state and len(calls) > 1

    ui.show_stopped_run()
    settings = ui.MapSettings(sizes=(0.25, 0.125))
    result = ui.run_map_with_progress(choice, network, photo, settings, 0, cancel=cancel)
    key = ui.result_key(choice, photo, settings, 0)
    shown, _ = ui.result_to_show(key)
    st.session_state["first run"] = True
    st.write(f"result: {result is None}, stored: {len(ui.results())}, calls: {len(calls)}")
    st.session_state["shown"] = shown
    st.session_state["partial"] = ui.partial_result(key)


@pytest.mark.slow
def test_a_cancelled_run_keeps_its_partial_map_marked_partial_and_run_again_completes_it(shared_weights_dir):
    weights = str(shared_weights_dir / "mobilenet_v1_0.25_128.weights.h5")
    at = AppTest.from_function(_cancelled_run_script, args=(weights,), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    stopped = [w.value.replace("\\", "") for w in at.warning if "Stopped" in w.value]
    assert stopped and "partial map (1 of 2 cover sizes done: 1/4) is kept and marked partial" in stopped[0], stopped
    assert at.markdown[-1].value.startswith("result: True, stored: 0, calls: 2")
    assert ui.K_RUNNING not in at.session_state
    partial = at.session_state["partial"]
    assert partial is not None and partial.partial and partial.sizes == (0.25,), "the stopped run's last cover size"
    assert at.session_state["shown"] is partial, "the page shows the partial map (marked partial), not a final one"
    assert partial.passes == 49 and partial.metadata["partial"] is True

    at.run()  # Run again: the map completes and replaces its partial map
    assert not at.exception, [e.value for e in at.exception]
    (result,) = at.session_state[ui.K_RESULTS].values()
    assert not result.partial and result.sizes == (0.25, 0.125) and result.passes == 49 + 225
    assert at.session_state["partial"] is None and at.session_state["shown"] is result
    assert list(at.session_state[ui.K_CHECKS]) == list(at.session_state[ui.K_RESULTS]), "its check is queued"


def small_network_map_page() -> AppTest:
    """A session with a sample photo, network A = the small shared MobileNet, on the Map page (default settings)."""
    at = add_sample(open_app())
    go(at, "pages/networks.py")
    at.selectbox(key="w.network.A").select(SMALL).run()
    return go(at, "pages/map.py")


@pytest.mark.slow
def test_a_map_is_drawn_as_it_refines_then_stored_exact_and_then_checked(monkeypatch, mobilenet_025):
    """Run map with the dashboard defaults: the overlay is drawn after each cover size (partial, coarsest first),
    then the final map; its faithfulness check starts only once the final map is stored and drawn. The stored map
    equals the exact dense map."""
    import sensmap
    from sensmap import faithful, render

    events: list[tuple] = []
    real_overlay, real_check = render.overlay_figure, faithful.faithfulness

    def overlay(photo, result, **kwargs):
        events.append(("overlay", result.partial, result.sizes))
        return real_overlay(photo, result, **kwargs)

    def check(model, image, result, **kwargs):  # runs in the script thread: the session's store is readable
        stored = any(stored is result for stored in ui.results().values())
        events.append(("faithfulness", stored, "faithfulness" in result.metadata))
        return real_check(model, image, result, **kwargs)

    monkeypatch.setattr(render, "overlay_figure", overlay)
    monkeypatch.setattr(faithful, "faithfulness", check)
    at = small_network_map_page()
    button(at, "Run map").click().run()
    assert not at.exception and not errors(at), errors(at)

    partial = [i for i, event in enumerate(events) if event[:2] == ("overlay", True)]
    assert [events[i][2] for i in partial] == [(0.5,), (0.5, 0.25), (0.5, 0.25, 0.125)], events
    final = events.index(("overlay", False, ui.DASHBOARD_SIZES))
    checked = [i for i, event in enumerate(events) if event[0] == "faithfulness"]
    assert partial[-1] < final < checked[0] and len(checked) == 1, events
    assert events[checked[0]] == ("faithfulness", True, False), "the check starts on the stored map, without numbers"
    assert events[-1] == ("overlay", False, ui.DASHBOARD_SIZES), "the page is drawn again with the numbers"

    (key, result), *others = at.session_state[ui.K_RESULTS].items()
    assert not others and not result.partial and "faithfulness" in result.metadata
    assert not at.session_state[ui.K_CHECKS] and not at.session_state.get(ui.K_PARTIAL)
    assert key.settings[-2:] == ("exact", "auto") and result.mode == "exact" and result.engine_requested == "auto"
    at.session_state["w.view"] = "Faithfulness"
    at.run()
    assert float(next(m.value for m in at.metric if m.label == "Deletion AUC")) == pytest.approx(
        result.metadata["faithfulness"]["deletion_auc"], abs=1e-3
    )

    photo = next(iter(at.session_state[ui.K_PHOTOS].values()))
    reference = sensmap.sensitivity_map(
        mobilenet_025,
        photo.image,
        sizes=ui.DASHBOARD_SIZES,
        stride=0.5,
        target=key.target,
        mode="exact",
        engine="dense",
    )
    assert result.sizes == reference.sizes and result.passes == reference.passes == 1244
    assert np.abs(result.outputs - reference.outputs).max() <= 1e-4
    assert np.abs(result.support - reference.support).max() <= 1e-4


@pytest.mark.slow
def test_a_stopped_map_is_shown_marked_partial_until_run_map_completes_it(monkeypatch):
    from sensmap import engine

    real_map, stop_after = engine.sensitivity_map, {"batches": 2}

    def stopping_map(*args, cancel=None, **kwargs):  # Stop during the third batch: covers 1/2 and 1/4 are done
        calls = []

        def stop() -> bool:
            calls.append(1)
            return stop_after["batches"] is not None and len(calls) > stop_after["batches"]

        return real_map(*args, cancel=stop, **kwargs)

    monkeypatch.setattr(engine, "sensitivity_map", stopping_map)
    at = small_network_map_page()
    button(at, "Run map").click().run()
    assert not at.exception and not errors(at), errors(at)
    warnings = [w.value.replace("\\", "") for w in at.warning]
    done = "2 of 4 cover sizes done: 1/2, 1/4"
    assert any(w.startswith("Stopped: the map of") and f"partial map ({done}) is kept" in w for w in warnings)
    assert any(w.startswith(f"Partial map: the run was stopped with {done}.") for w in warnings), warnings
    assert at.session_state[ui.K_RESULTS] == {} and not at.session_state.get(ui.K_CHECKS)
    (partial,) = at.session_state[ui.K_PARTIAL].values()
    assert partial.partial and partial.sizes == (0.5, 0.25)
    assert len(at.get("plotly_chart")) == 2, "the partial overlay and the pointing check"
    assert not button(at, "Run map").disabled, "a partial map is not ready: Run map completes it"
    at.session_state["w.view"] = "Faithfulness"
    at.run()
    assert any("partial map gets no faithfulness check" in i.value for i in at.info)
    assert not [b for b in at.button if b.label.startswith("Check faithfulness")]

    stop_after["batches"] = None
    button(at, "Run map").click().run()
    assert not at.exception and not errors(at), errors(at)
    assert not [w for w in at.warning if "Partial map" in w.value]
    (result,) = at.session_state[ui.K_RESULTS].values()
    assert not result.partial and result.sizes == ui.DASHBOARD_SIZES and "faithfulness" in result.metadata
    assert not at.session_state[ui.K_PARTIAL]


@pytest.mark.slow
def test_stopping_the_faithfulness_check_keeps_the_map_and_offers_the_check_again(monkeypatch):
    from sensmap import faithful
    from sensmap.errors import CancelledError

    real_check, calls = faithful.faithfulness, []

    def stopped_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise CancelledError("stopped (test)")
        return real_check(*args, **kwargs)

    monkeypatch.setattr(faithful, "faithfulness", stopped_once)
    at = add_sample(open_app())
    run_small_map(at)
    assert any(w.value.replace("\\", "").startswith("Stopped: the faithfulness check of") for w in at.warning)
    (result,) = at.session_state[ui.K_RESULTS].values()
    assert "faithfulness" not in result.metadata and len(at.get("plotly_chart")) == 2, "the map is kept and drawn"
    at.session_state["w.view"] = "Faithfulness"
    at.run()
    assert any("stopped before it finished" in i.value for i in at.info)
    button(at, "Check faithfulness").click().run()
    assert not at.exception and not errors(at), errors(at)
    assert len(calls) == 2 and "faithfulness" in result.metadata
    assert any(m.label == "Deletion AUC" for m in at.metric)


def test_box_selections_become_photo_fractions():
    selection = {"points": [], "point_indices": [], "lasso": [],
                 "box": [{"xref": "x", "yref": "y", "x": [150.0, 30.0], "y": [10.0, 90.0]}]}  # fmt: skip
    assert ui.box_from_selection(selection, (100, 200)) == (0.1, 0.15, 0.9, 0.75)
    outside = {"box": [{"x": [-20, 260], "y": [120, 50]}]}
    assert ui.box_from_selection(outside, (100, 200)) == (0.5, 0.0, 1.0, 1.0)
    assert ui.box_from_selection({"box": []}, (100, 200)) is None
    assert ui.box_from_selection({"box": [{"x": [10, 10.2], "y": [0, 50]}]}, (100, 200)) is None  # a click
    assert ui.box_from_selection(None, (100, 200)) is None
    assert ui.same_box((0.1, 0.2, 0.3, 0.4), (0.1001, 0.2, 0.3, 0.4)) and not ui.same_box(None, (0, 0, 1, 1))


def test_the_dashboard_default_is_the_detailed_exact_auto_map():
    from sensmap.windows import count_passes

    assert ui.MapSettings() == ui.MapSettings(sizes=(1 / 2, 1 / 4, 1 / 8, 1 / 16), stride=0.5, engine="auto")
    assert ui.MapSettings().mode == "exact" and ui.DASHBOARD_SIZES == ui.MapSettings().sizes
    assert count_passes(224, 224, ui.DASHBOARD_SIZES, 0.5) == count_passes(128, 128, ui.DASHBOARD_SIZES, 0.5) == 1244
    assert ui.describe_settings(ui.MapSettings()) == (
        "covers 1/2, 1/4, 1/8, 1/16 · stride 1/2 · fill gray · probability · exact, auto engine"
    )
    assert ui.MapSettings().key[-2:] == ("exact", "auto") and ui.MapSettings(engine="dense").key[-2:] == (
        "exact",
        "dense",
    )
    assert ui.MapSettings().kwargs()["engine"] == "auto" and ui.MapSettings(mode="fast").kwargs()["mode"] == "fast"


def test_the_map_page_offers_windows_and_engine_and_the_cost_names_the_engine():
    at = add_sample(open_app())
    go(at, "pages/networks.py")
    at.selectbox(key="w.network.A").select(SMALL).run()
    go(at, "pages/map.py")
    assert at.multiselect(key="w.sizes").value == ["1/2", "1/4", "1/8", "1/16"]
    assert at.select_slider(key="w.stride").value == "1/2"
    mode, engine = at.radio(key="w.mode"), at.radio(key="w.engine")
    assert (mode.label, mode.options, mode.value) == ("Windows", ["Exact", "Fast, approximate"], "exact")
    assert (engine.label, engine.options, engine.value) == ("Engine", ["Auto", "Dense", "Incremental"], "auto")

    def cost() -> str:
        (line,) = [c.value for c in at.caption if c.value.startswith("Cost:")]
        return line

    assert cost().startswith("Cost: 1,244 forward passes for the map (exact, auto engine: "), cost()
    assert "then 168 for its faithfulness check" in cost()
    choice = at.session_state[ui.K_NETWORK["A"]]
    network = ui.networks.cached_network(choice)
    prepare_incremental(network, ui.WARM_UP_SIZES, wait=True)  # the warm-up the load started: wait for its end
    # Maps of earlier tests measured this network's passes (a table all sessions share, see the next test); start
    # from none, so that the estimates are the engine's arithmetic ones, whatever ran before and however loaded.
    ui.costs._pass_timings.clear()
    seconds = {}
    for engine in ("dense", "incremental", "auto"):  # the estimates, each engine as it stands now (all prepared)
        at.radio(key="w.engine").set_value(engine).run()
        assert cost().startswith(f"Cost: 1,244 forward passes for the map (exact, {engine} engine"), cost()
        shown = float(re.search(r"about ([\d.]+) s on this machine", cost()).group(1))
        assert at.session_state[ui.K_SETTINGS].engine == engine
        seconds[engine] = ui.costs.cost_preview(choice, network, at.session_state[ui.K_SETTINGS]).map_seconds
        assert shown == pytest.approx(seconds[engine], abs=0.05 if seconds[engine] < 10 else 0.5)
    assert seconds["incremental"] < seconds["dense"] and seconds["auto"] == seconds["incremental"], seconds
    at.radio(key="w.mode").set_value("fast").run()
    fast = plan_passes(network, ui.DASHBOARD_SIZES, 0.5, "fast")
    assert fast < 1244 and cost().startswith(
        f"Cost: {fast} forward passes for the map (fast, approximate, auto engine: "
    ), cost()
    assert at.session_state[ui.K_SETTINGS] == ui.MapSettings(mode="fast", engine="auto")


def test_a_measured_seconds_per_pass_replaces_the_estimate_for_its_cover_size_and_engine():
    at = add_sample(open_app())
    go(at, "pages/networks.py")
    at.selectbox(key="w.network.A").select(SMALL).run()
    choice = at.session_state[ui.K_NETWORK["A"]]
    network = ui.networks.cached_network(choice)
    prepare_incremental(network, ui.WARM_UP_SIZES, wait=True)
    ui.costs._pass_timings.clear()
    settings = ui.MapSettings(engine="dense")
    estimated = ui.costs.cost_preview(choice, network, settings)
    grids = window_grids(*network.input_size, settings.sizes, settings.stride)
    timings = ui.costs._pass_timings(choice)
    timings.record((grids[0].window_y, grids[0].window_x), "dense", 0.5)  # a map measured 0.5 s per pass here
    timings.record((grids[0].window_y, grids[0].window_x), "incremental", 9.0)  # another engine: not this one's
    measured = ui.costs.cost_preview(choice, network, settings)
    dense = ui.costs._seconds_per_pass(choice)
    assert measured.map_seconds == pytest.approx(estimated.map_seconds + grids[0].count * (0.5 - dense))
    assert measured.check_seconds == estimated.check_seconds  # the check's estimate stays the probe's
    ui.costs._pass_timings.clear()


def test_the_cost_line_says_when_the_faster_engine_is_still_being_prepared():
    text, preparing = ui.costs._engine_text("auto", [("1/2", "incremental"), ("1/4", "preparing")])
    assert (
        preparing
        and text == "auto engine: incremental for 1/2, dense for 1/4 while the faster engine is being prepared"
    )
    text, preparing = ui.costs._engine_text("auto", [("1/2", "preparing"), ("1/4", "preparing")])
    assert preparing and text == "auto engine: dense for now: preparing the faster engine…"
    text, preparing = ui.costs._engine_text("incremental", [("1/2", "waits"), ("1/4", "incremental")])
    assert preparing and "waits for the faster engine being prepared" in text
    assert ui.costs._engine_text("dense", [("1/2", "dense")]) == ("dense engine", False)
    text, _ = ui.costs._engine_text("auto", [("1/2", "no gain"), ("1/4", "incremental")])
    assert text == "auto engine: incremental for 1/4, dense for 1/2 (no gain)"


def test_cost_preview_counts_the_faithfulness_check():
    assert ui.faithfulness_passes() == 2 * (20 + 1) * (1 + 3) == 168
    assert ui.faithfulness_passes(10, 1) == 44


def _trust_script() -> None:
    import types

    import streamlit as st
    from test_render import synthetic_result, with_faithfulness

    from sensmap import ui
    from sensmap.result import SensitivityResult

    gray, blur = with_faithfulness(synthetic_result()), synthetic_result(seed=5, blob=(0.3, 0.3, 0.2))
    blur.fill = "blur"
    keys = [ui.ResultKey("photo", "net", ((0.5, 0.25), 0.5, fill, "probability"), 0) for fill in ("gray", "blur")]
    ui.store_result(keys[1], blur)
    ui.store_result(keys[0], gray)
    ui.set_pointing_box(types.SimpleNamespace(sha256="photo"), (0.25, 0.2, 0.75, 0.6))
    ui.describe_result(keys[0], gray)
    st.session_state["loaded"] = SensitivityResult.load(gray.to_npz_bytes()).metadata
    st.session_state["blur_pointing"] = blur.metadata.get("pointing")


def test_a_finished_map_keeps_story_stability_and_pointing_in_its_npz():
    at = AppTest.from_function(_trust_script, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    meta = at.session_state["loaded"]
    assert {"faithfulness", "pointing", "story", "stability"} <= set(meta)
    assert meta["faithfulness"]["deletion_auc"] < meta["faithfulness"]["random_deletion_auc"]
    assert meta["story"].startswith("TinyNet calls this photo 'class 0' (70%).")
    assert meta["stability"]["fills"] == ["gray", "blur"] and meta["stability"]["maps"] == 4
    assert meta["stability"]["across"] == "cover sizes 1/2, 1/4 and fills gray, blur"
    assert meta["pointing"]["box_photo"] == [0.25, 0.2, 0.75, 0.6]
    assert meta["pointing"]["box_grid"] == pytest.approx([0.25, 0.2, 0.75, 0.6])
    assert 0 < meta["pointing"]["share_inside"] <= 1 and meta["pointing"]["box_area"] == pytest.approx(0.2, abs=0.02)
    assert at.session_state["blur_pointing"] is not None, "the box applies to every map of the photo"


# --------------------------------------------------------------------------- security: config, uploads, exports

IMAGE_TYPES = {"jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"}
DASHBOARD_SOURCES = [  # every file that may import Streamlit
    REPO / "app.py",
    *sorted((REPO / "sensmap" / "ui").glob("*.py")),
    *sorted((REPO / "pages").glob("*.py")),
]


def test_server_config_states_the_security_settings():
    import tomllib

    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text("utf-8"))
    server = config["server"]
    assert server["address"] == "127.0.0.1" and config["browser"]["serverAddress"] == "127.0.0.1"
    assert isinstance(server["maxUploadSize"], int) and 1 <= server["maxUploadSize"] <= 50, "MB per uploaded photo"
    assert server["enableXsrfProtection"] is True
    assert server["enableCORS"] is True, "stated explicitly; Streamlit keeps CORS protection on with XSRF protection"
    assert config["client"]["showErrorDetails"] == "none", "no tracebacks in the browser"
    assert config["browser"]["gatherUsageStats"] is False


def _calls(text: str, function: str) -> list[str]:
    """The argument text of every call of ``function`` in ``text``."""
    found = []
    for match in re.finditer(rf"\b{function}\(", text):
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        found.append(text[match.end() : end - 1])
    return found


def test_no_page_offers_a_model_upload():
    uploads = []
    for path in DASHBOARD_SOURCES:
        text = path.read_text("utf-8")
        assert not re.search(r"camera_input|audio_input|accept_file", text), f"{path.name}: another upload widget"
        for arguments in _calls(text, "file_uploader"):
            uploads.append(path.name)
            assert re.search(r"\btype=ui\.PHOTO_TYPES\b", arguments), f"{path.name}: an upload not limited to photos"
            assert not re.search(r"keras|h5|pb|onnx|tflite|pickle|pkl", arguments, re.IGNORECASE), arguments
    assert uploads == ["photos.py"], "only the Photos page uploads files"
    assert set(ui.PHOTO_TYPES) <= IMAGE_TYPES

    at = open_app()
    seen = 0
    for page in PAGES:
        go(at, page)
        for uploader in at.file_uploader:
            seen += 1
            accepted = {kind.lstrip(".").lower() for kind in uploader.allowed_type}
            assert accepted and accepted <= IMAGE_TYPES, (page, accepted)
        assert not [w for w in at.get("camera_input")], page
    assert seen == 1, "one photo uploader in the whole dashboard"


def gps_jpeg(source: Path) -> bytes:
    """``source`` re-saved as a JPEG carrying EXIF with a camera make and GPS coordinates."""
    from PIL import Image

    with Image.open(source) as image:
        rgb = image.convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "SpyCam Inc."  # Make
    exif.get_ifd(0x8825).update({1: "N", 2: (51.0, 30.0, 0.0), 3: "E", 4: (0.0, 7.0, 39.0)})  # GPS IFD
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", exif=exif.tobytes(), quality=90)
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as check:  # the upload really carries them
        assert check.getexif().get_ifd(0x8825)[2] == (51.0, 30.0, 0.0) and b"SpyCam" in data
    return data


HARMLESS_IMAGE_INFO = {"dpi", "gamma", "srgb", "jfif", "jfif_version", "jfif_unit", "jfif_density", "progressive",
                       "progression", "transparency"}  # fmt: skip


def assert_no_metadata(data: bytes, what: str) -> None:
    """Decoded image ``data`` carries no EXIF (no GPS, no camera make) and no eXIf/text chunks."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert "exif" not in image.info and not image.getexif(), f"{what}: EXIF"
        assert not set(image.info) - HARMLESS_IMAGE_INFO, (what, image.info)
    assert b"Exif\x00\x00" not in data and b"eXIf" not in data and b"SpyCam" not in data, what


class RecordingMediaFiles:
    """The media files (images, downloads) of AppTest runs: AppTest makes a new in-memory store each run."""

    def __init__(self, monkeypatch) -> None:
        import streamlit.testing.v1.app_test as app_test_module
        from streamlit.runtime.media_file_manager import MediaFileManager

        self.managers: list = []
        managers = self.managers

        class Recording(MediaFileManager):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, **kwargs)
                managers.append(self)

        monkeypatch.setattr(app_test_module, "MediaFileManager", Recording)

    def last_run(self) -> dict:
        """``{file id: MemoryFile}`` stored by the last run."""
        return dict(self.managers[-1]._storage._files_by_id)

    def download(self, button) -> tuple[str, bytes]:
        """What clicking a download button of the last run gives: ``(file name, bytes)``, deferred data included."""
        manager = self.managers[-1]
        url = (
            manager.execute_deferred(button.proto.deferred_file_id)
            if button.proto.deferred_file_id
            else button.proto.url
        )
        stored = manager._storage.get_file(url.rsplit("/", 1)[-1])
        return stored.filename, stored.content


DATA_URI = re.compile(r"data:image/(?:jpeg|png);base64,([A-Za-z0-9+/=]+)")


def embedded_images(text: str) -> list[bytes]:
    """The images inlined as data URIs in HTML or Plotly JSON (which writes ``/`` as ``\\u002f``)."""
    import base64

    return [base64.b64decode(uri) for uri in DATA_URI.findall(text.replace("\\u002f", "/"))]


SAFE_FILE_NAME = re.compile(r"^sensmap-(report|map)-[A-Za-z0-9._-]+-\d{8}-\d{6}\.(png|html|npz)$")


@pytest.mark.slow
def test_exports_carry_no_exif_or_gps_and_get_generated_names(monkeypatch):
    media = RecordingMediaFiles(monkeypatch)
    at = open_app("pages/photos.py")
    upload = gps_jpeg(shared_photo("hot_dog.jpg"))
    with pytest.raises(AssertionError):
        assert_no_metadata(upload, "the upload")  # the check sees EXIF where there is some
    at.file_uploader[0].set_value([("../../evil name.jpg", upload, "image/jpeg")]).run()
    assert not at.exception and not errors(at), errors(at)
    assert [entry.name for entry in at.session_state[ui.K_PHOTOS].values()] == ["evil name.jpg"], "no folders"
    run_small_map(at)

    # The Map page: the thumbnail and the photos embedded in the figures (overlay, pointing check).
    images = [f for f in media.last_run().values() if f.mimetype.startswith("image/")]
    assert images, "the thumbnail is served"
    embedded = [data for chart in at.get("plotly_chart") for data in embedded_images(chart.proto.spec)]
    assert len(embedded) >= 2, "the overlay and the pointing check embed the photo"
    for number, data in enumerate([f.content for f in images] + embedded):
        assert_no_metadata(data, f"map page image {number}")

    go(at, "pages/report.py")
    downloads = dict(media.download(b) for b in at.get("download_button"))
    assert len(downloads) == 3, downloads.keys()
    for name in downloads:
        assert SAFE_FILE_NAME.match(name) and "evil" not in name and ".." not in name, name
    (png,) = [data for name, data in downloads.items() if name.endswith(".png")]
    (html,) = [data.decode("utf-8") for name, data in downloads.items() if name.endswith(".html")]
    (npz,) = [data for name, data in downloads.items() if name.endswith(".npz")]
    assert_no_metadata(png, "PNG report")
    photos = embedded_images(html)
    assert photos, "the HTML report embeds the photo"
    for number, data in enumerate(photos):
        assert_no_metadata(data, f"HTML report image {number}")
    assert "SpyCam" not in html and b"SpyCam" not in npz and b"Exif\x00\x00" not in npz
    for number, stored in enumerate(f for f in media.last_run().values() if f.mimetype.startswith("image/")):
        assert_no_metadata(stored.content, f"report page image {number}")  # the preview of the PNG report


# --------------------------------------------------------------------------- errors keep the session's work


@pytest.mark.slow
def test_a_bad_upload_and_a_weights_error_keep_the_earlier_photos_settings_and_map(monkeypatch, tmp_path):
    from keras.src.utils import file_utils

    shown: list[BaseException] = []
    real_show_error = ui.show_error

    def recording_show_error(exc: BaseException) -> None:
        shown.append(exc)
        real_show_error(exc)

    monkeypatch.setattr(ui.networks, "show_error", recording_show_error)  # where load_network looks it up
    at = add_sample(open_app())
    run_small_map(at)
    (key,) = at.session_state[ui.K_RESULTS]
    result = at.session_state[ui.K_RESULTS][key]
    photos, settings = list(at.session_state[ui.K_PHOTOS]), at.session_state[ui.K_SETTINGS]

    go(at, "pages/photos.py")  # a file that is not a photo
    at.file_uploader[0].set_value([("notes.jpg", b"not a photo at all\n" * 50, "image/jpeg")]).run()
    assert not at.exception and len(at.error) == 1 and "notes.jpg" in at.error[0].value
    assert list(at.session_state[ui.K_PHOTOS]) == photos

    def offline(*args, **kwargs):
        raise OSError("network is unreachable (test: offline)")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(file_utils, "get_file", offline)
    go(at, "pages/networks.py")  # a network whose weights cannot be had
    at.selectbox(key="w.network.A").select("ResNet50").run()
    button(at, "Download and load ResNet50 now").click().run()
    assert not at.exception
    assert [type(exc).__name__ for exc in shown] == ["WeightsError"], shown
    assert any("ResNet50" in text for text in errors(at))
    go(at, "pages/map.py")
    assert any("ResNet50" in text for text in errors(at)) and not at.get("plotly_chart")

    go(at, "pages/networks.py")  # back to the network of the map: the map is shown again, not recomputed
    at.selectbox(key="w.network.A").select(SMALL).run()
    go(at, "pages/map.py")
    assert not errors(at), errors(at)
    assert list(at.session_state[ui.K_PHOTOS]) == photos and at.session_state[ui.K_SETTINGS] == settings
    assert list(at.session_state[ui.K_RESULTS]) == [key] and at.session_state[ui.K_RESULTS][key] is result
    assert any("this map is ready" in c.value for c in at.caption)
    assert not [i for i in at.info if "Showing the last finished map" in i.value or "Press" in i.value]
    assert len(at.get("plotly_chart")) == 2, "the earlier map is drawn"
    assert at.multiselect(key="w.sizes").value == ["1/2", "1/4"]


def test_windows_and_engine_on_the_map_page():
    """Fast windows: fewer passes in the cost line, an approximate-map warning; every engine gives the exact map;
    both choices are in the result keys and in the report rows."""
    from sensmap.report import mode_text

    at = add_sample(open_app())
    run_small_map(at)  # exact windows, auto engine
    assert not [w for w in at.warning if "Approximate" in w.value]
    at.radio(key="w.mode").set_value("fast").run()
    cost = [c.value for c in at.caption if c.value.startswith("Cost:")][0]
    assert cost.startswith("Cost: 19 forward passes for the map (fast, approximate, auto engine"), cost
    button(at, "Run map").click().run()  # covers 1/2 and 1/4: 9 + 49 windows, a third of them
    assert not at.exception and not errors(at), errors(at)
    warnings = [w.value for w in at.warning if "Approximate" in w.value]
    assert warnings and "windows measured" in warnings[0]
    at.radio(key="w.mode").set_value("exact").run()
    for engine in ("dense", "incremental"):
        at.radio(key="w.engine").set_value(engine).run()
        button(at, "Run map").click().run()
        assert not at.exception and not errors(at), errors(at)
        assert not [w for w in at.warning if "Approximate" in w.value]
    results = at.session_state[ui.K_RESULTS]
    by_choice = {key.settings[-2:]: result for key, result in results.items()}
    assert set(by_choice) == {("exact", "auto"), ("fast", "auto"), ("exact", "dense"), ("exact", "incremental")}
    assert (
        by_choice["fast", "auto"].approximate and by_choice["fast", "auto"].passes < by_choice["exact", "auto"].passes
    )
    dense = by_choice["exact", "dense"]
    for engine in ("auto", "incremental"):
        assert by_choice["exact", engine].engine_requested == engine
        assert np.abs(by_choice["exact", engine].outputs - dense.outputs).max() <= 1e-4
    assert mode_text(dense) == "exact; dense engine"
    assert mode_text(by_choice["exact", "incremental"]).startswith("exact; incremental engine — only the changed part")
    assert mode_text(by_choice["fast", "auto"]).startswith("fast — approximate: 19 of 58 windows measured")
