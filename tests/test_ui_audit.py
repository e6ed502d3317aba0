"""The Audit page (AppTest): opens an operator's audit folder and browses it, without Ray or TensorFlow."""

from __future__ import annotations

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
    assert len(app.get("plotly_chart")) >= 2  # class mean maps and one image's map
    app.selectbox(key="w.audit.status").set_value("error").run()
    assert list(app.dataframe[0].value["image_id"]) == ["broken"]
    assert "No mapped image matches" in app.info[0].value
    app.selectbox(key="w.audit.status").set_value("ok").run()
    app.text_input(key="w.audit.text").set_value("img/1").run()
    assert list(app.dataframe[0].value["image_id"]) == ["img/1"]
    assert app.selectbox(key="w.audit.image").value == "img/1"
    app.radio(key="w.audit.by").set_value("label").run()
    assert not app.exception


@pytest.mark.parametrize("outside", [0.0, 0.5])
def test_outside_share_filter_keeps_only_boxed_images(monkeypatch, tmp_path, outside):
    fake_audit(tmp_path / "toy-audit")
    app = audit_page(monkeypatch, tmp_path)
    app.slider(key="w.audit.outside").set_value(outside).run()
    table = app.dataframe[0].value
    if outside:
        assert (table["outside_share"] >= outside).all()
    assert not app.exception
