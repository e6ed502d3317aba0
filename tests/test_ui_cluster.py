"""The dashboard with SENSMAP_RAY_ADDRESS (AppTest against a real local cluster started in the test): maps computed
on the cluster equal local maps, Stop cancels the remote job, and a cluster killed mid-map gives a clear message
and a local rerun, with the user's photos and earlier maps kept."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from ray_clusters import kill_cluster, local_cluster
from streamlit.testing.v1 import AppTest
from test_ui import TIMEOUT

from sensmap import ui

pytestmark = pytest.mark.slow

CLUSTER_ENV = ("RAY_TMPDIR", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_USAGE_STATS_ENABLED")
SMALL_MAP = dict(sizes=(0.5, 0.25), stride=0.5, engine="dense")
LONG_MAP = dict(sizes=(0.25, 0.125), stride=0.25, engine="dense")  # about 1,000 forward passes


@contextlib.contextmanager
def dashboard_on(address: str, env: dict[str, str]) -> Iterator[None]:
    """The dashboard's shared serving state (settings, queue, cluster link) made afresh for this cluster."""
    with pytest.MonkeyPatch.context() as patch:
        for name in CLUSTER_ENV:
            patch.setenv(name, env[name])
        patch.setenv("SENSMAP_RAY_ADDRESS", address)
        patch.setenv("SENSMAP_RAY_ACTORS", "2")
        for cached in (ui.serving_config, ui.job_queue, ui.cluster_link):
            cached.clear()
        try:
            yield
        finally:
            link = ui.cluster_link()
            if link is not None:
                link.close()
            for cached in (ui.serving_config, ui.job_queue, ui.cluster_link):
                cached.clear()


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, dict, str]]:
    with local_cluster(cpus=3) as running:
        yield running


@pytest.fixture(autouse=True)
def dashboard_env(monkeypatch, shared_weights_dir: Path) -> None:
    monkeypatch.setenv("SENSMAP_WEIGHTS_DIR", str(shared_weights_dir))


def _session_script(weights: str, maps: list[dict], stop_after_polls: int) -> None:
    """One user: a photo, the small network, then ``maps`` one after the other on the Map page's machinery; with
    ``stop_after_polls`` the user clicks elsewhere while the last map computes. (AppTest runs this function's
    source alone: helpers live inside.)"""
    import streamlit as st
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    from sensmap import ui

    if "first run" in st.session_state:
        ui.show_stopped_run()
        return
    st.session_state["first run"] = True
    from ui_scripts import small_network_session

    photo, choice, network = small_network_session(weights)
    assert ui.cluster_link().wait_connected(150), ui.cluster_link().describe()
    polls = []

    def click_elsewhere() -> bool:  # what any click does to a running script: stop at its next st call
        polls.append(1)
        if stop_after_polls and len(polls) == stop_after_polls:
            get_script_run_ctx().script_requests.request_stop()
        return False

    for i, options in enumerate(maps):
        last = i == len(maps) - 1
        result = ui.run_map_with_progress(choice, network, photo, ui.MapSettings(**options), 0, queue=False,
                                          cancel=click_elsewhere if last else None)  # fmt: skip
        st.session_state[f"map {i}"] = result
    st.session_state["done"] = True


def _app(weights: str, maps: list[dict], stop_after_polls: int = 0) -> AppTest:
    return AppTest.from_function(_session_script, args=(weights, maps, stop_after_polls), default_timeout=TIMEOUT)


def _local_map(weights: str, options: dict):
    import sensmap

    network = sensmap.load_model("MobileNet", weights=weights, alpha=0.25, input_shape=(128, 128, 3))
    photo = ui.prepare_photo("coffee.jpg", (Path(ui.__file__).parents[1] / "data/samples/coffee.jpg").read_bytes())
    return sensmap.sensitivity_map(network, photo.image, target=0, **options)


def _actor_counts(status: dict, key: str) -> int:
    return sum(actor.get(key, 0) for actor in status["actors"])


def _settled(link, key: str, at_least: int, timeout_s: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        status = link.status()
        if _actor_counts(status, key) >= at_least and not status["running"]:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def test_the_dashboards_maps_on_the_cluster_equal_local_maps(cluster, shared_weights_dir):
    address, env, _ = cluster
    weights = str(shared_weights_dir / "mobilenet_v1_0.25_128.weights.h5")
    with dashboard_on(address, env):
        at = _app(weights, [SMALL_MAP]).run()
        assert not at.exception, [e.value for e in at.exception]
        status = _settled(ui.cluster_link(), "done", 1)
        assert _actor_counts(status, "done") == 1, "the map was computed by a map actor"
        remote = at.session_state["map 0"]
    local = _local_map(weights, SMALL_MAP)
    np.testing.assert_allclose(remote.support, local.support, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(remote.per_size, local.per_size, rtol=1e-5, atol=1e-6)
    assert remote.target == local.target and remote.sizes == local.sizes and not remote.partial


def test_stop_cancels_the_remote_map(cluster, shared_weights_dir):
    address, env, _ = cluster
    weights = str(shared_weights_dir / "mobilenet_v1_0.25_128.weights.h5")
    with dashboard_on(address, env):
        at = _app(weights, [LONG_MAP], stop_after_polls=10).run()  # about 1 s into the map on the cluster
        assert not at.exception, [e.value for e in at.exception]
        assert "done" not in at.session_state, "the click stopped the script inside the map"
        started = time.monotonic()
        status = _settled(ui.cluster_link(), "cancelled", 1)
        assert _actor_counts(status, "cancelled") == 1 and _actor_counts(status, "done") == 0, status
        assert time.monotonic() - started < 15, "the actor is free again soon after the stop"
        at.run()  # the run the click asked for
        warnings = [w.value.replace("\\", "") for w in at.warning]
        assert any(w.startswith("Stopped: the map of MobileNet α0.25 128px on coffee.jpg") for w in warnings), warnings
        assert at.session_state[ui.K_RESULTS] == {}
        assert ui.job_queue().snapshot() == {"running": [], "waiting": []}


def test_a_cluster_killed_mid_map_is_reported_and_the_map_reruns_here(shared_weights_dir):
    weights = str(shared_weights_dir / "mobilenet_v1_0.25_128.weights.h5")
    with local_cluster(cpus=2) as (address, env, temp), dashboard_on(address, env):
        link = ui.cluster_link()
        killed = threading.Event()

        def kill_when_the_long_map_runs() -> None:
            assert link.wait_connected(150)
            deadline = time.monotonic() + 200
            while time.monotonic() < deadline:
                status = link.status()
                if _actor_counts(status, "done") >= 1 and status["running"]:  # the earlier map is done
                    time.sleep(0.5)
                    kill_cluster(temp, keep={link._maps.info.get("pid", 0)})
                    killed.set()
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_when_the_long_map_runs)
        killer.start()
        at = _app(weights, [SMALL_MAP, LONG_MAP]).run()
        killer.join(30)
        assert killed.is_set()
        assert not at.exception, [e.value for e in at.exception]
        warnings = [w.value.replace("\\", "") for w in at.warning]
        assert any(f"the Ray cluster at {address} went away" in w and "runs on this server" in w for w in warnings), (
            warnings
        )
        assert at.session_state["done"] and not at.session_state["map 1"].partial, "the map was rerun here"
        assert len(at.session_state[ui.K_RESULTS]) == 2, "the earlier map (from the cluster) is kept"
        assert [e.name for e in at.session_state[ui.K_PHOTOS].values()] == ["coffee.jpg"]
        assert link.state == "gone" and ui.job_queue().limits.max_running == 1
        assert "Maps run on this server" in ui.where_maps_run()
        remote_then_local = at.session_state["map 1"]
    local = _local_map(weights, LONG_MAP)
    np.testing.assert_allclose(remote_then_local.support, local.support, rtol=1e-5, atol=1e-6)
