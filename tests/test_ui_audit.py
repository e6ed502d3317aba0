"""The Audit page (AppTest): opens an operator's audit folder and browses it, without Ray or TensorFlow: the run in
words, two networks compared, the suspects gallery; no server path and no raw Markdown anywhere on the page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import REPO
from streamlit.testing.v1 import AppTest
from test_audit import fake_audit

from sensmap import audit


def audit_page(monkeypatch, root: Path | None) -> AppTest:
    if root is None:
        monkeypatch.delenv("SENSMAP_AUDITS_DIR", raising=False)
    else:
        monkeypatch.setenv("SENSMAP_AUDITS_DIR", str(root))
    app = AppTest.from_file(str(REPO / "pages" / "audit.py"), default_timeout=60)
    return app.run()


def test_without_an_audits_folder_the_page_says_how_to_make_one(monkeypatch):
    app = audit_page(monkeypatch, None)
    assert not app.exception
    assert "sensmap audit" in app.info[0].value


def test_lists_audit_folders_one_level_down(tmp_path):
    fake_audit(tmp_path / "first")
    fake_audit(tmp_path / "second")
    (tmp_path / "not-an-audit").mkdir()
    assert [p.name for p in audit.list_audit_folders(tmp_path)] == ["first", "second"]
    assert audit.list_audit_folders(tmp_path / "first") == [tmp_path / "first"]
    assert audit.list_audit_folders(tmp_path / "missing") == []


def test_browses_index_filters_means_and_one_image(monkeypatch, tmp_path):
    fake_audit(tmp_path / "toy-audit")
    app = audit_page(monkeypatch, tmp_path)
    assert not app.exception, app.exception
    assert app.selectbox(key="w.audit.folder").value.name == "toy-audit"
    table = app.dataframe[0].value
    assert len(table) == 10 and set(table["status"]) == {"ok", "error"}
    assert table.loc[table["image"] == "broken", "top-1"].item() == "–"  # missing values: a dash, never None
    assert table.loc[table["image"] == "broken", "error"].item() == "no such file: …/nowhere.png"
    assert len(app.get("plotly_chart")) >= 2  # class mean maps and one image's map
    assert "Two networks compared" not in [h.value for h in app.subheader]  # one network: nothing to compare
    app.selectbox(key="w.audit.status").set_value("error").run()
    assert list(app.dataframe[0].value["image"]) == ["broken"]
    assert "No mapped image matches" in app.info[0].value
    app.selectbox(key="w.audit.status").set_value("ok").run()
    app.text_input(key="w.audit.text").set_value("img/1").run()
    assert list(app.dataframe[0].value["image"]) == ["img/1"]
    assert app.selectbox(key="w.audit.image").value == "img/1"
    app.radio(key="w.audit.by").set_value("label").run()
    assert not app.exception


@pytest.mark.parametrize("outside", [0.0, 0.5])
def test_outside_share_filter_keeps_only_boxed_images(monkeypatch, tmp_path, outside):
    fake_audit(tmp_path / "toy-audit")
    app = audit_page(monkeypatch, tmp_path)
    app.slider(key="w.audit.outside").set_value(outside).run()
    shown = app.dataframe[0].value["image"].tolist()
    index = audit.open_audit(tmp_path / "toy-audit")
    expected = audit.filter_index(index, min_outside_share=outside or None)["image_id"].tolist()
    assert shown == expected and (not outside or len(shown) < 10)
    assert not app.exception


def page_texts(app: AppTest) -> list[str]:
    """Everything the page sends the browser, element by element: each element's message as text (labels,
    options, Markdown, captions, figure JSON, table bytes) and, for tables, every cell; each also without
    backslash escapes."""
    texts = []
    for block in (app.main, app.sidebar):
        for node in block:
            texts.append(str(getattr(node, "proto", "")))
            if getattr(node, "type", "") == "arrow_data_frame":
                texts += [str(cell) for cell in node.value.to_numpy().ravel()]
    return texts + [re.sub(r"\\+(.)", r"\1", text) for text in texts]  # and as shown: Markdown escapes removed


def two_network_audit(root: Path) -> Path:
    """A two-network audit as the previous version left it: an index, a last run, no pair table."""
    folder = fake_audit(root, count=12, models=("toy", "toy2"), unlabelled=2)
    audit.rebuild_index(folder)
    state = json.loads((folder / audit.AUDIT_JSON).read_text())
    state["last_run"] = {"finished": "2026-11-26T14:15:00+00:00", "complete": True, "out_dir": str(folder),
                         "index_path": str(folder / audit.INDEX_FILE), "images": 13, "processed": 13, "skipped": 0,
                         "workers": 2, "cluster": "Ray cluster 10.1.2.3:6379", "elapsed_s": 83.0,
                         "images_per_s": 0.25, "summary": {"summary.png": str(folder / "summary.png")}}  # fmt: skip
    (folder / audit.AUDIT_JSON).write_text(json.dumps(state))
    return folder


def test_two_networks_compared_gallery_and_side_by_side_view(monkeypatch, tmp_path):
    folder = two_network_audit(tmp_path / "audits" / "dogs")
    app = audit_page(monkeypatch, tmp_path / "audits")
    assert not app.exception, app.exception
    assert (folder / audit.PAIRS_FILE).is_file()  # computed from the maps when the folder was opened, then kept

    summary = re.sub(r"\\(.)", r"\1", "\n".join(m.value for m in app.markdown))  # as shown: escapes removed
    assert "finished 2026-11-26 14:15 UTC, took 1m23s, 13 images mapped at 0.25 images/s" in summary
    assert "covers 1/2, 1/4 · stride 1/2 · fill gray · probability" in summary and "Ray cluster" in summary
    assert "[see the error rows](#errors)" in summary
    assert {h.value for h in app.subheader} >= {"Two networks compared", "Shortcut suspects", "Errors (1 image)"}

    suspects = audit.shortcut_suspects(audit.open_audit(folder), "toy")
    gallery = [caption for image in app.get("image") for caption in image.captions]
    assert len(gallery) == len(suspects) > 0 and gallery[0].startswith(suspects["image_id"].iloc[0])

    pairs = audit.pairs_of(audit.pair_table(audit.open_audit(folder)), "toy", "toy2")
    opened = app.selectbox(key="w.audit.pair.image")
    assert opened.value == pairs["image_id"].iloc[0] and opened.options[0].startswith(pairs["image_id"].iloc[0])
    assert list(app.dataframe[1].value["image"]) == pairs["image_id"].head(12).tolist()
    charts = {chart.proto.id: chart for chart in app.get("plotly_chart")}
    assert any("chart.audit.compare" in key for key in charts) and any("chart.audit.agreement" in key for key in charts)
    assert any("chart.audit.pair_means" in key for key in charts)
    compare = json.loads(next(c for k, c in charts.items() if "chart.audit.compare" in k).proto.spec)
    assert "Two networks, one colour scale" in compare["layout"]["title"]["text"]

    second = pairs["image_id"].iloc[1]
    app.selectbox(key="w.audit.pair.image").set_value(second).run()
    assert not app.exception and app.selectbox(key="w.audit.pair.image").value == second
    app.radio(key="w.audit.by").set_value("label").run()
    app.radio(key="w.audit.metric").set_value("top_iou").run()
    assert not app.exception


def test_the_page_names_no_server_path_and_shows_no_raw_markdown(monkeypatch, tmp_path):
    folder = two_network_audit(tmp_path / "audits" / "dogs")
    app = audit_page(monkeypatch, tmp_path / "audits")
    for image in ("img/3", "img/7"):
        app.selectbox(key="w.audit.image").set_value(image).run()
        assert not app.exception
        texts = page_texts(app)
        assert len(texts) > 80
        for text in texts:
            for secret in (str(folder), str(tmp_path), "10.1.2.3"):
                assert secret not in text
        for node in app.main:
            value = getattr(node, "value", None) if getattr(node, "type", "") in ("markdown", "caption") else None
            assert value is None or "\\*\\*" not in value  # escaped asterisks: a literal ** on the page
        for image_element in app.get("image"):
            assert all("**" not in caption for caption in image_element.captions)
        cells = [str(c) for table in app.dataframe for c in table.value.to_numpy().ravel()]
        assert cells and all("**" not in c and c != "None" for c in cells)
    one = next(m.value for m in app.markdown if m.value.startswith("**toy**"))
    assert one.startswith("**toy**: '") and "\\" not in one.split("**")[1]
    options = app.selectbox(key="w.audit.folder").options
    assert options == ["dogs"]
