"""Several dashboard sessions at once on one cached network, and stopping runs (AppTest, no browser).

A Streamlit server runs each browser session's script in a thread of its own; the sessions share only
the ``st.cache_resource`` values of :mod:`sensmap.ui` (the loaded networks and the per-pass timing).
Here four AppTest sessions map four photos at the same time in a thread pool, against one cold cache.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import importlib
import os
import pkgutil
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, shared_photo
from streamlit.testing.v1 import AppTest
from test_ui import APP, DASHBOARD_SOURCES, SMALL, TIMEOUT, button, errors, go

from sensmap import ui
from sensmap.errors import CancelledError

PHOTOS = {
    "hot_dog.jpg": "image/jpeg",
    "coffee.png": "image/png",
    "wolf_snow.webp": "image/webp",
    "pets.jpg": "image/jpeg",
}
SIZES = ["1/2", "1/4"]  # 58 forward passes + 168 for the faithfulness check on the 128 px network
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MIB = 2**20


@pytest.fixture(autouse=True)
def dashboard_env(monkeypatch, shared_weights_dir: Path) -> None:
    monkeypatch.setenv("SENSMAP_WEIGHTS_DIR", str(shared_weights_dir))
    monkeypatch.delenv("SENSMAP_MODELS_DIR", raising=False)


class RssSampler:
    """Samples a process's resident set size (``/proc/<pid>/statm``) every ``interval`` s in a thread.

    ``mark(name)`` records the current RSS under a name; ``peak`` is the largest sample so far.
    """

    def __init__(self, pid: int | str = "self", interval: float = 0.02) -> None:
        self.path, self.interval = f"/proc/{pid}/statm", interval
        self.peak = self.current()
        self.marks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def current(self) -> int:
        try:
            with open(self.path) as statm:
                return int(statm.read().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):  # the process ended
            return 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.current())

    def mark(self, name: str) -> int:
        self.marks[name] = value = self.current()
        self.peak = max(self.peak, value)
        return value

    def reset_peak(self) -> None:
        self.peak = self.current()

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def sessions_of_one_server(monkeypatch) -> Iterator[None]:
    """Let AppTest sessions run at the same time in threads, like the sessions of one server.

    Each ``AppTest.run`` swaps process globals: it installs a mock ``Runtime`` singleton and clears it
    when done, and patches ``config.get_option``. Overlapping runs would clear each other's runtime.
    Here one mock runtime (one media-file manager, like one server's) answers for every session, and
    the config patch is applied once around them all.
    """
    from unittest.mock import MagicMock

    import streamlit.testing.v1.app_test as app_test_module
    from streamlit.components.v2.component_manager import BidiComponentManager
    from streamlit.runtime import Runtime
    from streamlit.runtime.caching.storage.dummy_cache_storage import MemoryCacheStorageManager
    from streamlit.runtime.dataframe_source_manager import DataframeSourceManager
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.testing.v1.util import patch_config_options

    shared = MagicMock(spec=Runtime)
    shared.media_file_mgr = MediaFileManager(MemoryMediaFileStorage("/mock/media"))
    shared.dataframe_source_mgr = DataframeSourceManager()
    shared.cache_storage_manager = MemoryCacheStorageManager()
    components = BidiComponentManager()
    components.discover_and_register_components(start_file_watching=False)
    shared.bidi_component_registry = components
    monkeypatch.setattr(Runtime, "instance", classmethod(lambda cls: shared))
    monkeypatch.setattr(Runtime, "exists", classmethod(lambda cls: True))
    monkeypatch.setattr(app_test_module, "patch_config_options", lambda overrides: contextlib.nullcontext())
    with patch_config_options({"global.appTest": True}):
        yield


def map_session(name: str) -> tuple[AppTest, float]:
    """One user's session: upload ``name`` through the upload widget, choose the small network, run a
    small map on the Map page. Returns the session and its wall time."""
    started = time.perf_counter()
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    go(at, "pages/photos.py")
    at.file_uploader[0].set_value([(name, shared_photo(name).read_bytes(), PHOTOS[name])]).run()
    assert not at.exception and not errors(at), errors(at)
    go(at, "pages/networks.py")
    at.selectbox(key="w.network.A").select(SMALL).run()
    assert not at.exception and not errors(at), errors(at)
    go(at, "pages/map.py")
    at.multiselect(key="w.sizes").set_value(SIZES).run()
    at.radio(key="w.engine").set_value("dense").run()  # one engine whatever the warm-up did: identical numbers
    button(at, "Run map").click().run()
    assert not at.exception and not errors(at), (name, errors(at))
    assert len(at.get("plotly_chart")) == 2, f"{name}: the map is drawn"
    return at, time.perf_counter() - started


def only_result(at: AppTest):
    (key,) = at.session_state[ui.K_RESULTS]
    return key, at.session_state[ui.K_RESULTS][key]


def strings_in(value: object, seen: set[int] | None = None) -> set[str]:
    """Every string reachable from ``value`` (dict keys and values, sequences, dataclass fields, attributes)."""
    seen = set() if seen is None else seen
    if isinstance(value, str):
        return {value}
    if value is None or isinstance(value, (bytes, bool, int, float, complex, np.ndarray, np.generic, type)):
        return set()
    if id(value) in seen:
        return set()
    seen.add(id(value))
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    elif dataclasses.is_dataclass(value):
        items = [getattr(value, f.name, None) for f in dataclasses.fields(value)]
    elif hasattr(value, "__dict__"):
        items = list(vars(value).values())
    else:
        return set()
    found: set[str] = set()
    for item in items:
        found |= strings_in(item, seen)
    return found


def session_strings(at: AppTest) -> set[str]:
    state = at.session_state
    return strings_in({key: state[key] for key in state}) | set(state)


def module_constants() -> dict[str, object]:
    """The module-level containers of :mod:`sensmap.ui` and its modules (shared by every session; must never
    change)."""
    modules = [ui, *(importlib.import_module(f"{ui.__name__}.{m.name}") for m in pkgutil.iter_modules(ui.__path__))]
    return {
        f"{module.__name__}.{name}": copy.deepcopy(value)
        for module in modules
        for name, value in vars(module).items()
        if not name.startswith("__") and isinstance(value, (dict, list, set, tuple))
    }


@pytest.mark.slow
def test_four_sessions_mapping_at_once_get_their_own_results(monkeypatch):
    constants = module_constants()
    with RssSampler() as rss:
        rss.mark("start")
        # One session at a time: the reference results (and TensorFlow, the network and its trace warmed up).
        alone: dict[str, AppTest] = {}
        started = time.perf_counter()
        for name in PHOTOS:
            alone[name], _ = map_session(name)
        sequential_s = time.perf_counter() - started
        sequential_peak = rss.peak

        # All four at once, against a cold cache: the first load of the network happens under contention.
        ui.networks.cached_network.clear()
        ui.costs._seconds_per_pass.clear()
        loads: list[str] = []
        original_load = ui.NetworkChoice.load

        def counting_load(choice: ui.NetworkChoice):
            loads.append(threading.current_thread().name)
            return original_load(choice)

        monkeypatch.setattr(ui.NetworkChoice, "load", counting_load)
        gc.collect()
        baseline = rss.mark("before the concurrent sessions")
        rss.reset_peak()
        with sessions_of_one_server(monkeypatch), ThreadPoolExecutor(len(PHOTOS), thread_name_prefix="session") as pool:
            started = time.perf_counter()
            futures = {name: pool.submit(map_session, name) for name in PHOTOS}
            together = {name: future.result(timeout=10 * TIMEOUT) for name, future in futures.items()}
            concurrent_s = time.perf_counter() - started
        concurrent_peak = rss.peak
        rss.mark("after")

    per_session = ", ".join(f"{name} {seconds:.1f} s" for name, (_, seconds) in together.items())
    print(
        f"\n{len(PHOTOS)} AppTest sessions, {SMALL}, covers {'+'.join(SIZES)}: one at a time {sequential_s:.1f} s, "
        f"all at once {concurrent_s:.1f} s ({per_session}); RSS at start {rss.marks['start'] / MIB:.0f} MiB, "
        f"peak one at a time {sequential_peak / MIB:.0f} MiB, before the concurrent sessions {baseline / MIB:.0f} MiB, "
        f"peak with {len(PHOTOS)} at once {concurrent_peak / MIB:.0f} MiB "
        f"(+{(concurrent_peak - baseline) / MIB:.0f} MiB), after {rss.marks['after'] / MIB:.0f} MiB"
    )
    assert len(loads) == 1, f"the shared network is loaded once for all sessions, not {len(loads)} times"

    shas = {name: at.session_state[ui.K_ACTIVE] for name, (at, _) in together.items()}
    assert len(set(shas.values())) == len(PHOTOS)
    for name, (at, _) in together.items():
        key, result = only_result(at)
        ref_key, reference = only_result(alone[name])
        assert key == ref_key and key.photo == shas[name]
        assert result.metadata["photo"]["sha256"] == shas[name] and result.metadata["photo"]["source"] == name
        assert result.target == reference.target and result.target_name == reference.target_name
        for field in ("outputs", "reference_probabilities", "support"):
            difference = np.abs(np.asarray(getattr(result, field)) - np.asarray(getattr(reference, field))).max()
            assert difference <= 1e-6, f"{name}: {field} differs from the single-session map by {difference:g}"
        for number in ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc"):
            assert result.metadata["faithfulness"][number] == pytest.approx(
                reference.metadata["faithfulness"][number], abs=1e-6
            ), (name, number)

        # Nothing of another session: photos, results, top classes, targets, upload messages.
        assert list(at.session_state[ui.K_PHOTOS]) == [shas[name]]
        assert [entry.name for entry in at.session_state[ui.K_PHOTOS].values()] == [name]
        strings = session_strings(at)
        assert shas[name] in strings and any(name in s for s in strings), "the scan sees the session's own photo"
        for other, sha in shas.items():
            if other == name:
                continue
            leaked = {s for s in strings if other in s or sha in s or sha[:16] in s}
            assert not leaked, f"session {name} holds {other}'s photo or results: {sorted(leaked)[:3]}"
        other_results = [
            r for o, (a, _) in together.items() if o != name for r in a.session_state[ui.K_RESULTS].values()
        ]
        assert all(result is not r for r in other_results)

    assert module_constants() == constants, "no session changed sensmap.ui's shared module-level values"
    assert concurrent_peak - baseline < 1536 * MIB, "four small maps at once stay well under 1.5 GiB of extra memory"


def test_the_dashboard_caches_only_shared_read_only_values():
    """Only the loaded networks, the per-pass timings, the upload readers and the serving state (settings, the job
    queue, the cluster link) are cached across sessions (``st.cache_resource``);
    everything else of a session lives in its ``st.session_state``. A new cross-session cache must be
    reviewed for thread safety and added here."""
    sources = {path.relative_to(REPO).as_posix(): path.read_text("utf-8") for path in DASHBOARD_SOURCES}
    cached = {
        (name, match.group(1))
        for name, text in sources.items()
        for match in re.finditer(
            r"@(?:st\.cache_resource|st\.cache_data|\w*\.?lru_cache|\w*\.?cache)\b[^\n]*\ndef (\w+)", text
        )
    }
    assert cached == {
        ("sensmap/ui/networks.py", "cached_network"),
        ("sensmap/ui/costs.py", "_seconds_per_pass"),
        ("sensmap/ui/costs.py", "_pass_timings"),
        ("sensmap/ui/uploads.py", "upload_readers"),
        ("sensmap/ui/scheduling.py", "serving_config"),
        ("sensmap/ui/scheduling.py", "job_queue"),
        ("sensmap/ui/scheduling.py", "cluster_link"),
    }
    for name, text in sources.items():
        assert not re.search(r"^\s*global\s", text, re.MULTILINE), f"{name} rebinds a module global"
        assert "st.experimental_singleton" not in text and "st.singleton" not in text
    # The cached values: a Network (read-only after loading; its compiled call is created under a lock,
    # see test_the_shared_network_is_safe_from_several_threads; its incremental warm-up is the engine's own,
    # thread-safe), a float and a PassTimings (a dict behind a lock).
    assert ui.costs._seconds_per_pass.__wrapped__.__annotations__["return"] in ("float", float)
    assert ui.costs._pass_timings.__wrapped__.__annotations__["return"] in ("PassTimings", ui.PassTimings)
    timings = ui.PassTimings()
    assert isinstance(timings._lock, type(threading.Lock())) and set(vars(timings)) == {"_lock", "_seconds"}
    assert ui.networks.cached_network.__wrapped__.__annotations__["return"] in ("Network", "'Network'")
    # A thread pool (thread-safe; each upload's result goes to its own session), frozen settings, the queue (every
    # change under its condition's lock, see test_serving_queue) and the cluster link (its state under a lock;
    # the gateway client is thread-safe, see test_serving_remote).
    assert ui.uploads.upload_readers.__wrapped__.__annotations__["return"].endswith("ThreadPoolExecutor")
    assert ui.scheduling.serving_config.__wrapped__.__annotations__["return"] == "ServingConfig"
    assert ui.scheduling.job_queue.__wrapped__.__annotations__["return"] == "FairQueue"
    assert ui.scheduling.cluster_link.__wrapped__.__annotations__["return"] == "ClusterLink | None"


@pytest.mark.slow
def test_the_shared_network_is_safe_from_several_threads(shared_weights_dir):
    """The cached network's compiled call is created once under its lock and gives every thread the
    same probabilities as one thread alone."""
    import sensmap

    network = sensmap.load_model("MobileNet", weights=shared_weights_dir / "mobilenet_v1_0.25_128.weights.h5")
    rng = np.random.default_rng(0)
    batches = [rng.uniform(0, 255, (8, 128, 128, 3)).astype(np.float32) for _ in range(6)]
    start = threading.Barrier(len(batches))

    def work(batch: np.ndarray):
        start.wait()
        function = network.compiled_predict
        return function, network.predict(batch)

    with ThreadPoolExecutor(len(batches)) as pool:
        outcomes = list(pool.map(work, batches))
    assert len({id(function) for function, _ in outcomes}) == 1, "one compiled call for all threads"
    for batch, (_, probabilities) in zip(batches, outcomes, strict=True):
        assert np.abs(probabilities - network.predict(batch)).max() <= 1e-6


# --------------------------------------------------------------------------- stopping runs


def live_batches(side: int = 128) -> tuple[int, int]:
    """``(tf.data iterators, batch tensors of (n > 1, side, side, 3))`` alive in this process."""
    gc.collect()
    iterators = tensors = 0
    for obj in gc.get_objects():
        kind = type(obj).__name__
        if kind == "OwnedIterator":
            iterators += 1
        elif (
            kind == "EagerTensor"
            and len(obj.shape) == 4
            and obj.shape[0] > 1
            and tuple(obj.shape[1:]) == (side, side, 3)
        ):
            tensors += 1
    return iterators, tensors


def _interrupted_run_script(weights: str, how: str) -> None:
    """First run: a long map (cover sizes 1/8 and 1/16 at stride 1/4: 4,562 forward passes) on the
    128 px network, stopped after 3 batches: by a stop request (fast reruns), by ``st.rerun`` (what a
    click does with fast reruns off) — both raise at the next ``st`` call, the progress update — or by
    ``run_map_with_progress``'s ``cancel``. ``how="last batch"``: a small map asked to stop while its
    last batch runs (no progress update follows, but reading ``st.session_state`` to store the map is
    a yield point too: only its partial map of cover 1/2 is kept). Second run: what is left. (AppTest runs
    this function's source alone: helpers live inside.)"""
    import streamlit as st
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    from sensmap import engine, ui

    def request_stop() -> None:
        """What Streamlit does to a running script when the user clicks anything (``runner.fastReruns``, the
        default): ask it to stop — it raises at its next ``st`` call — and start the next run at once."""
        get_script_run_ctx().script_requests.request_stop()

    if "first run" in st.session_state:
        ui.show_stopped_run()
        return
    st.session_state["first run"] = True
    from ui_scripts import small_network_session

    photo, choice, network = small_network_session(weights)
    calls = []

    def cancel() -> bool:
        calls.append(1)
        if len(calls) > 3 and how == "stop request":
            request_stop()
        if len(calls) > 3 and how == "rerun":
            st.rerun()  # raises RerunException here, inside the engine's batch loop
        return len(calls) > 3 and how == "cancel"

    settings = ui.MapSettings(sizes=(1 / 8, 1 / 16), stride=0.25)
    if how == "last batch":
        settings, real_map = ui.MapSettings(sizes=(0.5, 0.25)), engine.sensitivity_map

        def map_then_stop_request(*args, **kwargs):
            result = real_map(*args, **kwargs)
            request_stop()  # arrived while the last batch ran: no progress update follows in the engine
            return result

        engine.sensitivity_map = map_then_stop_request
    try:
        result = ui.run_map_with_progress(choice, network, photo, settings, 0, cancel=cancel)
    finally:
        if how == "last batch":
            engine.sensitivity_map = real_map
    st.session_state["returned"] = result is None


def state_arrays(at: AppTest) -> list[str]:
    """Keys of session_state entries that hold arrays or tensors (a stopped run must leave none)."""
    found = []
    for key in at.session_state:
        value = at.session_state[key]
        stack, seen = [value], set()
        while stack:
            item = stack.pop()
            if id(item) in seen:
                continue
            seen.add(id(item))
            if isinstance(item, np.ndarray) or type(item).__name__ in ("EagerTensor", "OwnedIterator"):
                found.append(key)
                break
            if isinstance(item, dict):
                stack += [*item.keys(), *item.values()]
            elif isinstance(item, (list, tuple, set)):
                stack += list(item)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stop request", "rerun", "cancel", "last batch"])
def test_a_stopped_long_map_says_stopped_stores_nothing_and_frees_its_batches(shared_weights_dir, how):
    weights = str(shared_weights_dir / "mobilenet_v1_0.25_128.weights.h5")
    before = live_batches()
    at = AppTest.from_function(_interrupted_run_script, args=(weights, how), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    if how == "stop request" or how == "last batch":
        assert "returned" not in at.session_state, "the stop request ended the script run inside the map"
        at.run()  # the next run, which Streamlit starts at once
    assert not at.exception, [e.value for e in at.exception]
    warnings = [w.value.replace("\\", "") for w in at.warning]
    stopped = [w for w in warnings if w.startswith("Stopped: the map of MobileNet α0.25 128px on coffee.jpg")]
    # A stop request lets the batch in flight finish (256); st.rerun and cancel raise before it (192).
    where = {"stop request": "256 of 4,562", "last batch": "58 of 58"}.get(how, "192 of 4,562")
    assert stopped and f"interrupted after {where} forward passes" in stopped[0], warnings
    assert at.session_state[ui.K_RESULTS] == {} and ui.K_LAST not in at.session_state, "no map is stored as finished"
    partial = at.session_state[ui.K_PARTIAL] if ui.K_PARTIAL in at.session_state else {}
    if how == "last batch":  # the map was done, but not stored: what is kept is its last partial map, marked so
        (kept,) = partial.values()
        assert (
            kept.partial and kept.sizes == (0.5,) and "partial map (1 of 2 cover sizes done: 1/2) is kept" in stopped[0]
        )
    else:
        assert not partial, "no cover size had finished: nothing partial is kept"
    assert ui.K_RUNNING not in at.session_state
    if how == "cancel":
        assert at.session_state["returned"] is True
    elif how == "rerun":
        assert "returned" not in at.session_state, "the rerun ended the first script run inside the map"
    assert not [key for key in state_arrays(at) if key != ui.K_PARTIAL], "no batch or tensor of the stopped run is kept"
    assert live_batches() <= before, "the stopped run's tf.data iterator and batches are released"


@pytest.mark.slow
def test_a_stopped_map_releases_its_batch_and_outputs_even_while_its_exception_is_kept(mobilenet_025):
    from sensmap import sensitivity_map

    before = live_batches()
    calls = []
    with pytest.raises(CancelledError) as stopped:  # ``stopped`` keeps the traceback and so every frame
        sensitivity_map(
            mobilenet_025, shared_photo("coffee.png"), sizes=(1 / 8, 1 / 16), stride=0.25,
            cancel=lambda: calls.append(1) or len(calls) > 3,
        )  # fmt: skip
    assert "cancelled after 192 of 4562 forward passes" in str(stopped.value)
    assert live_batches() <= before
    held: list[str] = []
    traceback = stopped.value.__traceback__
    while traceback is not None:
        frame = traceback.tb_frame
        for name, value in frame.f_locals.items():
            big_array = isinstance(value, np.ndarray) and value.nbytes >= 1_000_000  # the outputs: 4562 × 1000 floats
            tensor = type(value).__name__ in ("EagerTensor", "OwnedIterator") and len(getattr(value, "shape", ())) == 4
            if big_array or tensor or type(value).__name__ == "OwnedIterator":
                held.append(f"{frame.f_code.co_name}.{name}")
        traceback = traceback.tb_next
    assert not held, f"frames of the kept exception still hold {held}"
