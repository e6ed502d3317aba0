"""The dashboard's shared job queue (AppTest, no browser): every session's maps and checks wait for their turn in
one fair queue; the waiting user sees position and expected wait; Stop while waiting removes the job."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_ui import TIMEOUT
from test_ui_concurrency import sessions_of_one_server

from sensmap import ui
from sensmap.ui import runs

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def dashboard_env(monkeypatch, shared_weights_dir: Path) -> None:
    monkeypatch.setenv("SENSMAP_WEIGHTS_DIR", str(shared_weights_dir))
    monkeypatch.delenv("SENSMAP_RAY_ADDRESS", raising=False)


@pytest.fixture
def wait_texts(monkeypatch) -> list[str]:
    """Every position-and-wait line the progress bars showed."""
    shown: list[str] = []
    original = runs.wait_text

    def recording(label, place):
        text = original(label, place)
        shown.append(text)
        return text

    monkeypatch.setattr(runs, "wait_text", recording)
    return shown


@pytest.fixture
def queue():
    queue = ui.job_queue()
    assert queue.snapshot() == {"running": [], "waiting": []}
    yield queue
    assert queue.snapshot() == {"running": [], "waiting": []}, "every job left the queue"


def _session_script(weights: str, jobs: int, stop_while_waiting: bool) -> None:
    """One user: a photo, the small network, then ``jobs`` small maps one after the other (each a queued job). With
    ``stop_while_waiting`` the user clicks elsewhere while the first map waits for its turn. (AppTest runs this
    function's source alone: helpers live inside.)"""
    import streamlit as st
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    from sensmap import ui
    from sensmap.ui import runs

    if "first run" in st.session_state:
        ui.show_stopped_run()
        return
    st.session_state["first run"] = True
    from ui_scripts import small_network_session

    photo, choice, network = small_network_session(weights)
    st.session_state["queue id"] = ui.session_id()
    if stop_while_waiting:
        shown = runs.wait_text

        def click_elsewhere(label, place):  # what any click does to a running script: stop at its next st call
            get_script_run_ctx().script_requests.request_stop()
            return shown(label, place)

        runs.wait_text = click_elsewhere
    try:
        for size in (0.5, 1 / 3, 0.25)[:jobs]:
            settings = ui.MapSettings(sizes=(size,), stride=1.0, engine="dense")
            ui.run_map_with_progress(choice, network, photo, settings, 0, queue=False)
    finally:
        if stop_while_waiting:
            runs.wait_text = shown
    st.session_state["done"] = True


def _app(weights: str, jobs: int = 2, stop_while_waiting: bool = False) -> AppTest:
    return AppTest.from_function(_session_script, args=(weights, jobs, stop_while_waiting), default_timeout=TIMEOUT)


def test_four_sessions_with_two_jobs_each_take_turns_and_see_where_they_wait(
    monkeypatch, shared_weights_dir, queue, wait_texts
):
    weights = str(shared_weights_dir / "mobilenet_v1_0.25_128.weights.h5")
    _app(weights, jobs=1).run()  # load the network once, outside the measurement
    queue.history.clear()
    blocker = queue.submit("someone else", "a long map", estimate_s=3.0)
    with sessions_of_one_server(monkeypatch), ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(lambda: _app(weights).run()) for _ in range(4)]
        deadline = time.monotonic() + 60
        while len(queue.snapshot()["waiting"]) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(queue.snapshot()["waiting"]) == 4, "all four sessions wait behind the running job"
        threading.Timer(1.0, blocker.release).start()
        sessions = [f.result(timeout=300) for f in futures]
    for at in sessions:
        assert not at.exception, [e.value for e in at.exception]
        assert at.session_state["done"] and len(at.session_state[ui.K_RESULTS]) == 2
    order = [who for who, _ in queue.history[1:]]  # after the blocker
    ids = [at.session_state["queue id"] for at in sessions]
    assert sorted(Counter(order).values()) == [2, 2, 2, 2] and set(order) == set(ids)
    for session in ids:  # between a session's two jobs, every other session gets at most one
        first, second = (i for i, who in enumerate(order) if who == session)
        assert max(Counter(order[first + 1 : second]).values(), default=0) <= 1, order
    assert any(re.search(r"next in the queue \(1 job computing\), about [0-3] s$", t) for t in wait_texts), wait_texts
    assert any("4th of 4 in the queue" in t for t in wait_texts), "positions are shown"


def test_stop_while_waiting_removes_the_job_and_says_so(shared_weights_dir, queue, wait_texts):
    weights = str(shared_weights_dir / "mobilenet_v1_0.25_128.weights.h5")
    blocker = queue.submit("someone else", "a long map", estimate_s=30.0)
    try:
        at = _app(weights, jobs=1, stop_while_waiting=True).run()
        assert not at.exception, [e.value for e in at.exception]
        assert "done" not in at.session_state, "the click stopped the script while it waited"
        assert queue.snapshot() == {"running": [("someone else", "a long map")], "waiting": []}, "the job left"
        assert wait_texts and re.search(r"next in the queue \(1 job computing\), about [123]\d s$", wait_texts[0])
        at.run()  # the run the click asked for
        warnings = [w.value.replace("\\", "") for w in at.warning]
        assert any("left the queue before its turn came" in w for w in warnings), warnings
        assert at.session_state[ui.K_RESULTS] == {}
    finally:
        blocker.release()


def test_a_full_queue_refuses_with_the_operators_limit(monkeypatch, shared_weights_dir, queue):
    from sensmap.serving import QueueLimits

    weights = str(shared_weights_dir / "mobilenet_v1_0.25_128.weights.h5")
    saved = queue.limits
    queue.limits = QueueLimits(max_running=1, max_waiting_per_session=1, max_waiting=1)
    blocker = queue.submit("someone else", "a long map")
    waiting = queue.submit("a third user", "a waiting map")
    try:
        at = _app(weights, jobs=1).run()
        assert not at.exception
        errors = [e.value.replace("\\", "") for e in at.error]
        assert errors and "queue is full (1 jobs waiting, max_waiting = 1)" in errors[0], errors
        assert at.session_state[ui.K_RESULTS] == {}
    finally:
        queue.limits = saved
        waiting.release()
        blocker.release()
