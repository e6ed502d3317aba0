"""Map jobs on a Ray cluster (sensmap.serving.remote): a real local cluster, started as an operator would.

A head node is started with ``ray start --head`` on 127.0.0.1 in its own temporary folder with token
authentication (like tests/test_audit_cluster.py); :class:`RayMaps` reaches it through its gateway child process.
Maps and faithfulness checks computed there must equal local runs; cancels (the caller's, and an exception from a
callback) must stop the remote job; remote errors keep their class; an unreachable or dying cluster gives
ClusterUnavailableError in bounded time, and this process survives.

Each cluster is stopped by killing the processes of its own session (their ``RAY_TMPDIR``), by pid: ``ray stop``
would end every Ray process on the machine, other test runs' clusters included.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import WEIGHTS, shared_photo
from ray_clusters import free_port, kill_cluster, local_cluster

from sensmap.errors import CancelledError, ClusterUnavailableError, ParameterError
from sensmap.serving import ModelWork, NetworkSource, RaySettings, run_work
from sensmap.serving.remote import RayMaps

pytestmark = pytest.mark.slow

SOURCE = NetworkSource("MobileNet", weights=str(WEIGHTS / "mobilenet_v1_0.25_128.weights.h5"))
CHEAP = dict(sizes=(0.5, 0.25), stride=0.5)  # 2 cover sizes, a few dozen forward passes
LONG = dict(sizes=(0.4, 0.3, 0.2, 0.1), stride=0.25)  # thousands of forward passes
LONGER = dict(sizes=(0.4, 0.3, 0.2, 0.1, 0.05), stride=0.25)  # more than ten thousand


@pytest.fixture(scope="module")
def cluster():
    with local_cluster() as running:
        yield running


@pytest.fixture(scope="module")
def maps(cluster):
    address, env, _ = cluster
    client = RayMaps(RaySettings(address=address, actors=2, cpus_per_actor=1, connect_timeout_s=120), env=env)
    client.start()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def photo():
    import sensmap

    return sensmap.load_image(shared_photo("owl.jpg"))


@pytest.fixture(scope="module")
def local_network():
    return SOURCE.load()


def _map_work(photo, **options) -> ModelWork:
    return ModelWork("sensmap.engine:sensitivity_map", args=(photo,), kwargs=options, partials=True)


def _actors_settled(maps: RayMaps, key: str, before: int, timeout: float = 15.0) -> dict:
    """The status once the actors' ``key`` counts add up to ``before + 1`` and no job runs (or fail)."""
    deadline = time.monotonic() + timeout
    while True:
        status = maps.status()
        actors = status["actors"]
        if sum(a[key] for a in actors) == before + 1 and all(a["running"] is None for a in actors):
            return status
        assert time.monotonic() < deadline, f"the actors did not settle: {status}"
        time.sleep(0.2)


def _assert_same(remote, local, where="result") -> None:
    """Equal numbers, arrays and texts, recursively (timings excepted)."""
    if isinstance(local, dict):
        assert set(remote) == set(local), where
        for key in local:
            if "second" not in str(key) and "time" not in str(key):
                _assert_same(remote[key], local[key], f"{where}[{key!r}]")
    elif isinstance(local, (list, tuple)) and not (local and isinstance(local[0], (int, float, np.number))):
        assert len(remote) == len(local), where
        for i, (a, b) in enumerate(zip(remote, local, strict=True)):
            _assert_same(a, b, f"{where}[{i}]")
    elif isinstance(local, (np.ndarray, float, int, np.number, list, tuple)) and not isinstance(local, bool):
        np.testing.assert_allclose(np.asarray(remote, dtype=float), np.asarray(local, dtype=float), atol=1e-5,
                                   err_msg=where)  # fmt: skip
    else:
        assert remote == local, where


def test_maps_on_the_cluster_equal_local_maps(maps, photo, local_network):
    work = _map_work(photo, **CHEAP)
    local = run_work(work, local_network)
    events: dict[int, list] = {i: [] for i in range(3)}
    results: dict[int, object] = {}

    def one(i: int) -> None:  # three session threads at once, two actors: one job waits for a free actor
        results[i] = maps.run(
            SOURCE,
            work,
            progress=lambda done, total: events[i].append(("progress", done, total)),
            on_partial=lambda partial: events[i].append(("partial", partial)),
        )

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results) == [0, 1, 2]
    for i, remote in results.items():
        np.testing.assert_allclose(remote.support, local.support, atol=1e-5)
        np.testing.assert_allclose(remote.per_size, local.per_size, atol=1e-5)
        np.testing.assert_allclose(remote.reference_probabilities, local.reference_probabilities, atol=1e-6)
        assert (remote.target, remote.sizes, remote.stride, remote.input_size) == (
            local.target, local.sizes, local.stride, local.input_size)  # fmt: skip
        kinds = [event[0] for event in events[i]]
        done, total = [e for e in events[i] if e[0] == "progress"][-1][1:]
        assert done == total > 0
        partials = [event[1] for event in events[i] if event[0] == "partial"]
        assert partials[0].metadata.get("partial") is True  # the first cover size, before the result
        assert kinds.index("partial") < len(kinds) - 1  # progress went on after it
    status = maps.status()
    assert sum(a["done"] for a in status["actors"]) >= 3
    assert any(a["networks"] for a in status["actors"]) and status["address"] == maps.settings.address


def test_faithfulness_on_the_cluster_equals_local(maps, photo, local_network):
    result = run_work(_map_work(photo, **CHEAP), local_network)
    work = ModelWork("sensmap.faithful:faithfulness", args=(photo, result), kwargs=dict(steps=5, random_orders=1))
    seen = []
    remote = maps.run(SOURCE, work, progress=lambda done, total: seen.append(done))
    local = run_work(work, local_network)
    assert isinstance(remote, dict) and seen
    _assert_same(remote, local)


def test_cancel_stops_the_remote_map_quickly(maps, photo):
    before = sum(a["cancelled"] for a in maps.status()["actors"])
    progressed = threading.Event()
    started = time.monotonic()
    with pytest.raises(CancelledError) as caught:
        maps.run(SOURCE, _map_work(photo, **LONG), progress=lambda done, total: progressed.set(),
                 cancel=progressed.is_set)  # fmt: skip
    elapsed = time.monotonic() - started
    assert elapsed < 15, f"the cancel took {elapsed:.1f} s"
    assert caught.value.partial is None or caught.value.partial.metadata.get("partial")
    status = _actors_settled(maps, "cancelled", before)
    assert not status["running"] and not status["waiting"]
    assert maps.available


def test_an_exception_from_a_callback_cancels_the_remote_map(maps, photo):
    class StopScript(BaseException):  # what Streamlit raises inside callbacks to stop a script
        pass

    def progress(done: int, total: int) -> None:
        raise StopScript

    before = sum(a["cancelled"] for a in maps.status()["actors"])
    started = time.monotonic()
    with pytest.raises(StopScript):
        maps.run(SOURCE, _map_work(photo, **LONG), progress=progress)
    _actors_settled(maps, "cancelled", before)
    assert time.monotonic() - started < 20 and maps.available


def _wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_jobs_beyond_the_actors_wait_and_a_waiting_job_cancels_at_once(maps, photo):
    stop, stop_third = threading.Event(), threading.Event()
    outcomes: dict[str, BaseException] = {}

    def run(name: str, options: dict, cancel: threading.Event) -> None:
        try:
            maps.run(SOURCE, _map_work(photo, **options), cancel=cancel.is_set)
        except BaseException as exc:  # noqa: BLE001 - collected for the asserts below
            outcomes[name] = exc

    busy = [threading.Thread(target=run, args=(f"long{i}", LONGER, stop)) for i in range(2)]
    for thread in busy:
        thread.start()
    try:
        _wait_for(lambda: len(maps.status()["running"]) == 2, "both actors to run a map")
        third = threading.Thread(target=run, args=("third", CHEAP, stop_third))
        third.start()
        _wait_for(lambda: len(maps.status()["waiting"]) == 1, "the third job to wait for a free actor")
        started = time.monotonic()
        stop_third.set()
        third.join(timeout=10)
        assert isinstance(outcomes.get("third"), CancelledError) and outcomes["third"].partial is None
        assert time.monotonic() - started < 2
        assert len(maps.status()["running"]) == 2  # the running maps go on
    finally:
        stop.set()
        for thread in busy:
            thread.join(timeout=30)
    assert isinstance(outcomes.get("long0"), CancelledError) and isinstance(outcomes.get("long1"), CancelledError)
    _wait_for(lambda: not maps.status()["running"], "the actors to be free again")


def test_the_gateway_exits_when_the_dashboard_dies(cluster):
    address, env, _ = cluster
    script = ("import os, sys\n"
              "from sensmap.serving import RaySettings\n"
              "from sensmap.serving.remote import RayMaps\n"
              "maps = RayMaps(RaySettings(address=sys.argv[1], actors=1, connect_timeout_s=120))\n"
              "maps.start()\n"
              "print(maps._process.pid, flush=True)\n"
              "os._exit(0)  # no close(): a dashboard that crashed\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script, address], env=env, capture_output=True, text=True,
                          timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    gateway = int(done.stdout.split()[-1])

    def gone() -> bool:
        try:
            state = Path(f"/proc/{gateway}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        return state in ("Z", "X")

    _wait_for(gone, "the orphaned gateway to exit", timeout=20)


def test_a_remote_sensmap_error_keeps_its_class(maps, photo, local_network):
    work = _map_work(photo, sizes=(2.0,), stride=0.5)
    with pytest.raises(ParameterError) as local:
        run_work(work, local_network)
    with pytest.raises(ParameterError) as remote:
        maps.run(SOURCE, work)
    assert str(remote.value) == str(local.value)
    assert maps.available


def test_an_unreachable_cluster_is_reported_within_the_timeout(cluster):
    _, env, _ = cluster
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    client = RayMaps(RaySettings(address=address, actors=1, connect_timeout_s=20), env=env)
    started = time.monotonic()
    with pytest.raises(ClusterUnavailableError, match=address.replace(".", r"\.")):
        client.start()
    assert time.monotonic() - started < 30
    assert not client.available and address in client.problem
    with pytest.raises(ClusterUnavailableError):
        client.run(SOURCE, ModelWork("sensmap.engine:sensitivity_map"))
    client.close()


def test_a_cluster_that_dies_mid_map_is_reported_and_this_process_survives(photo):
    with local_cluster(cpus=2) as (address, env, temp):
        client = RayMaps(RaySettings(address=address, actors=1, connect_timeout_s=120), env=env)
        client.start()
        try:
            gateway = client._process.pid
            killed = threading.Event()

            def progress(done: int, total: int) -> None:
                if not killed.is_set():
                    killed.set()
                    kill_cluster(temp, keep={gateway})

            started = time.monotonic()
            with pytest.raises(ClusterUnavailableError, match="went away during the map"):
                client.run(SOURCE, _map_work(photo, **LONG), progress=progress)
            elapsed = time.monotonic() - started
            assert killed.is_set() and elapsed < 30, f"{elapsed:.1f} s"
            assert not client.available and "went away" in client.problem
            again = time.monotonic()
            with pytest.raises(ClusterUnavailableError):
                client.run(SOURCE, _map_work(photo, **CHEAP))
            assert time.monotonic() - again < 1
        finally:
            client.close()
    assert os.getpid() > 0  # still here: the driver that Ray ended was the gateway, not this process


def test_the_dashboards_side_imports_no_ray():
    code = "import sys, sensmap.serving.remote; print('ray' in sys.modules, 'streamlit' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stdout + done.stderr
