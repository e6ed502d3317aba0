"""Uploads are never lost: a photo sent just before another page opens is read in the background, and the page
waits for it instead of saying "add a photo" (AppTest; the browser version is in test_browser.py)."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import shared_photo
from test_ui import TIMEOUT, dashboard_env, go, open_app  # noqa: F401 - dashboard_env: the same environment

from sensmap import ui
from sensmap.ui import photo_store

NO_PHOTO = "First add a photo"


@pytest.fixture
def slow_decode(monkeypatch):
    """Reading a photo takes 3 s longer (like a 6000×4000 JPEG on a busy server); records the reading threads."""
    threads: list[str] = []
    original = photo_store.load_image

    def slow(*args, **kwargs):
        threads.append(threading.current_thread().name)
        time.sleep(3.0)
        return original(*args, **kwargs)

    monkeypatch.setattr(photo_store, "load_image", slow)
    return threads


def infos(at) -> list[str]:
    return [i.value for i in at.info]


def test_the_map_page_opened_right_after_an_upload_shows_the_photo(slow_decode):
    at = open_app("pages/photos.py")
    at.file_uploader[0].set_value([("wolf_snow.webp", shared_photo("wolf_snow.webp").read_bytes(), "image/webp")])
    # the upload is sent, and the user opens Map before the Photos page ran again (one coalesced run on Map)
    at.switch_page("pages/map.py")
    started = time.monotonic()
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    assert time.monotonic() - started >= 2.9, "the page waited for the reading"
    assert slow_decode and all(name.startswith("sensmap-upload") for name in slow_decode), "read in the background"
    assert not any(NO_PHOTO in text for text in infos(at)), infos(at)
    assert [e.name for e in at.session_state[ui.K_PHOTOS].values()] == ["wolf_snow.webp"]
    assert len(at.image) >= 1, "the Map page shows the photo"
    assert any(b.label == "Run map" for b in at.button)
    go(at, "pages/photos.py")
    assert any("wolf" in s.value and "snow.webp" in s.value for s in at.success), "the outcome is on Photos"
    assert len(at.file_uploader) == 1 and not at.file_uploader[0].value, "the uploader is empty again"


def test_a_page_that_needs_no_photo_does_not_wait_and_the_photo_joins_later(slow_decode):
    at = open_app("pages/photos.py")
    at.file_uploader[0].set_value([("hot_dog.jpg", shared_photo("hot_dog.jpg").read_bytes(), "image/jpeg")])
    started = time.monotonic()
    at.switch_page("pages/home.py").run()  # Home needs no photo
    assert not at.exception and time.monotonic() - started < 2.5, "Home did not wait for the reading"
    assert [p.name for p in at.session_state[ui.K_PENDING_UPLOADS]] == ["hot_dog.jpg"]
    time.sleep(3.5)
    go(at, "pages/photos.py")
    assert [e.name for e in at.session_state[ui.K_PHOTOS].values()] == ["hot_dog.jpg"]
    assert not at.session_state[ui.K_PENDING_UPLOADS]


def test_a_refused_upload_says_why_on_the_page_that_needed_it(slow_decode):
    at = open_app("pages/photos.py")
    at.file_uploader[0].set_value([("notes.jpg", b"not a photo\n" * 40, "image/jpeg")])
    at.switch_page("pages/map.py").run()
    assert not at.exception
    assert len(at.error) == 1 and "notes.jpg" in at.error[0].value
    assert any(NO_PHOTO in text for text in infos(at))


def test_sessions_asking_for_the_same_network_at_once_share_one_load(monkeypatch):
    """Four sessions ask for a network that takes 2 s to load: one load, and each gets the network once it is
    ready."""
    from concurrent.futures import ThreadPoolExecutor

    from sensmap.ui import networks

    loads: list[float] = []

    class Loaded:
        pass

    def slow_load(self):
        loads.append(time.monotonic())
        time.sleep(2.0)
        return Loaded()

    monkeypatch.setattr(networks.NetworkChoice, "load", slow_load)
    monkeypatch.setattr(networks, "WARM_UP_SIZES", ())
    monkeypatch.setattr("sensmap.engine.prepare_incremental", lambda network, sizes: None)
    choice = networks.NetworkChoice("MobileNetV2", weights=None)
    networks.cached_network.clear()
    try:
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda _: (networks.cached_network(choice), time.monotonic()), range(4)))
    finally:
        networks.cached_network.clear()
    assert len(loads) == 1, "one load for all sessions"
    assert len({id(network) for network, _ in got}) == 1
    assert all(when >= loads[0] + 2.0 for _, when in got), "each session got it when it was ready"


def _sent_but_no_widget_value(data: bytes) -> None:
    """A file whose transfer ended but whose widget value never reached a run (the browser's page switch replaced
    the upload's rerun request, and Streamlit dropped the value): it is only in Streamlit's upload store. The run
    then shows what a page that needs a photo shows. (AppTest runs this function's source alone.)"""
    import streamlit as st
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    from streamlit.runtime.uploaded_file_manager import UploadedFileRec

    from sensmap import ui

    ctx = get_script_run_ctx()
    if "sent" not in st.session_state:
        ctx.uploaded_file_mgr.add_file(ctx.session_id, UploadedFileRec("upload-1", "owl.jpg", "image/jpeg", data))
        st.session_state["sent"] = True
    photo, _ = ui.page_inputs("", "First add a photo (Photos).")
    st.session_state["stored"] = len(ctx.uploaded_file_mgr.get_files(ctx.session_id, ["upload-1"]))
    st.write(f"showing {photo.name}")


def test_a_sent_file_whose_widget_value_was_dropped_is_still_read(slow_decode):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_sent_but_no_widget_value, args=(shared_photo("owl.jpg").read_bytes(),))
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    assert not any(NO_PHOTO in text for text in infos(at))
    assert [m.value for m in at.markdown] == ["showing owl.jpg"]
    assert at.session_state["stored"] == 0, "once read, its bytes leave Streamlit's upload store"
    at.run()
    assert len(at.session_state[ui.K_PHOTOS]) == 1 and len(slow_decode) == 1, "read once"
