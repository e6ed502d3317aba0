"""What pressing Run costs: forward passes of the maps and of their checks, and the time.

Seconds per forward pass, per network (both cached for all sessions): one dense batch timed once, and what
finished maps measured per cover size and engine (:class:`PassTimings`, recorded by :class:`StageClock`).
Where no map measured a cover size yet, an incremental pass is estimated as a dense one over the engine's
arithmetic estimate (:meth:`sensmap.incremental.IncrementalModel.estimated_speedup`, which the README's
benchmarks show to be conservative).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from .. import metrics
from .map_settings import ENGINE_CHOICES, MODE_CHOICES, SIZE_CHOICES, label_for
from .networks import NetworkChoice, cached_network

if TYPE_CHECKING:
    from ..models import Network
    from ..result import SensitivityResult
    from .map_settings import MapSettings

FAITHFULNESS_STEPS = 20
FAITHFULNESS_RANDOM_ORDERS = 3


@st.cache_resource(show_spinner="Timing one batch of the network for the cost estimate…", max_entries=16)
def _seconds_per_pass(choice: NetworkChoice) -> float:
    """Seconds per forward pass: one compiled batch of the network timed after a warm-up batch."""
    from ..engine import auto_batch_size

    network = cached_network(choice)
    height, width = network.input_size
    batch = np.full((auto_batch_size(height, width), height, width, 3), 127.5, dtype=np.float32)
    network.predict(batch)  # traces the compiled function and warms it up
    started = time.perf_counter()
    network.predict(batch)
    return (time.perf_counter() - started) / len(batch)


class PassTimings:
    """Seconds per forward pass that finished maps measured, per cover size in pixels and engine
    (``"dense"`` or ``"incremental"``); the latest measurement wins. Shared by all sessions (a lock guards it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[tuple[tuple[int, int], str], float] = {}

    def record(self, cover: tuple[int, int], engine: str, seconds_per_pass: float) -> None:
        with self._lock:
            self._seconds[(cover, engine)] = float(seconds_per_pass)

    def get(self, cover: tuple[int, int], engine: str) -> float | None:
        with self._lock:
            return self._seconds.get((cover, engine))


@st.cache_resource(show_spinner=False, max_entries=16)
def _pass_timings(choice: NetworkChoice) -> PassTimings:
    """The network's measured seconds per pass (see :class:`PassTimings`), one table for all sessions."""
    return PassTimings()


class StageClock:
    """Times the stages of one map as they finish (each ``on_partial`` call: a cover size, coarsest first) and
    records seconds per pass per cover size and engine in :class:`PassTimings`. Call :meth:`stage` first thing in
    ``on_partial`` and :meth:`resume` when the partial map is drawn (drawing is not the engine's time)."""

    def __init__(self, choice: NetworkChoice) -> None:
        self.timings = _pass_timings(choice)
        self.seen: set[float] = set()
        self.last = time.perf_counter()

    def stage(self, result: SensitivityResult) -> None:
        elapsed = time.perf_counter() - self.last
        new = [i for i, size in enumerate(result.sizes) if round(size, 6) not in self.seen]
        self.seen.update(round(size, 6) for size in result.sizes)
        if not new or result.approximate:  # a fast-mode round: measured windows of several sizes, not recorded
            return
        ran = {tuple(group["cover_px"]): group["ran"] for group in result.metadata.get("incremental_groups", [])}
        grids = [result.grids[i] for i in new]
        windows = sum(grid.count for grid in grids)
        for grid in grids:
            cover = (grid.window_y, grid.window_x)
            self.timings.record(cover, ran.get(cover, "dense"), elapsed / max(windows, 1))

    def resume(self) -> None:
        self.last = time.perf_counter()


def faithfulness_passes(steps: int = FAITHFULNESS_STEPS, random_orders: int = FAITHFULNESS_RANDOM_ORDERS) -> int:
    """Forward passes of the faithfulness check run after each map (see :func:`sensmap.metrics.faithfulness_passes`)."""
    return metrics.faithfulness_passes(steps, random_orders)


@dataclass(frozen=True)
class Cost:
    """What pressing Run map costs: the map's passes and seconds (with the chosen settings and engine), then
    the faithfulness check's; ``engine`` says how the engine will compute the map (see :func:`cost_preview`)."""

    map_passes: int
    check_passes: int
    map_seconds: float
    check_seconds: float
    engine: str = ""
    preparing: bool = False  # the faster engine is still being prepared: this map runs (partly) dense

    @property
    def passes(self) -> int:
        return self.map_passes + self.check_passes

    @property
    def seconds(self) -> float:
        return self.map_seconds + self.check_seconds


def cost_preview(choice: NetworkChoice, network: Network, settings: MapSettings) -> Cost:
    """Forward passes and estimated seconds of a map with these settings on this network, with the chosen engine
    as it stands now (traced cover sizes, warm-up in progress), plus its faithfulness check (dense)."""
    from ..engine import plan_passes
    from ..windows import window_grids

    dense = _seconds_per_pass(choice)
    timings = _pass_timings(choice)
    passes = plan_passes(network, settings.sizes, settings.stride, settings.mode)
    grids = window_grids(*network.input_size, settings.sizes, settings.stride)
    counts = [grid.count for grid in grids]
    if settings.mode == "fast":  # every window of the coarser sizes, the finest size within the budget
        finest = int(np.argmin([grid.window_y * grid.window_x for grid in grids]))
        counts[finest] = max(0, passes - (sum(counts) - counts[finest]))
    seconds, kinds = 0.0, []
    for grid, count in zip(grids, counts, strict=True):
        cover = (grid.window_y, grid.window_x)
        kind, speedup = _how_cover_runs(network, cover, settings.engine)
        ran = "incremental" if kind in ("incremental", "traced now", "waits") else "dense"
        measured = timings.get(cover, ran)
        seconds += count * (measured if measured is not None else dense / (speedup if ran == "incremental" else 1.0))
        kinds.append((label_for(SIZE_CHOICES, grid.size), kind))
    check = faithfulness_passes()
    engine, preparing = _engine_text(settings.engine, kinds)
    return Cost(passes, check, seconds, check * dense, engine, preparing)


def _how_cover_runs(network: Network, cover: tuple[int, int], engine: str) -> tuple[str, float]:
    """How a map with ``engine`` would compute this cover size now, and the estimated arithmetic speed-up:
    ``dense``, ``no gain`` (dense), ``incremental`` (traced), ``traced now`` (this map traces it first),
    ``preparing`` (auto: dense while the warm-up traces it) or ``waits`` (incremental: waits for the warm-up)."""
    from ..incremental import incremental_model

    if engine == "dense":
        return "dense", 1.0
    try:
        model = incremental_model(network, wait=False)
    except Exception:  # noqa: BLE001 - a graph the analysis cannot handle: the engine runs it dense and says why
        return "no gain", 1.0
    if model is None:  # the analysis itself is still running (warm-up)
        return ("waits" if engine == "incremental" else "preparing"), 1.0
    plan = model.cover_plan(cover)
    speedup = model.estimated_speedup(plan)
    state = model.status(cover)
    if state in ("dense", "failed"):
        return "no gain", 1.0
    if state == "ready":
        return "incremental", speedup
    if state == "absent":
        return "traced now", speedup
    return ("waits" if engine == "incremental" else "preparing"), speedup


def _engine_text(engine: str, kinds: list[tuple[str, str]]) -> tuple[str, bool]:
    """The engine part of the cost line, and whether the faster engine is still being prepared."""
    if engine == "dense":
        return "dense engine", False
    preparing = any(kind in ("preparing", "waits") for _, kind in kinds)
    fast = [label for label, kind in kinds if kind in ("incremental", "traced now", "waits")]
    slow = [label for label, kind in kinds if kind not in ("incremental", "traced now", "waits")]
    name = ENGINE_CHOICES[engine].lower()
    if any(kind == "waits" for _, kind in kinds):
        how = "waits for the faster engine being prepared (seconds, once per network)"
    elif preparing and fast:
        how = (
            f"incremental for {', '.join(fast)}, dense for {', '.join(slow)} while the faster engine is being prepared"
        )
    elif preparing:
        how = "dense for now: preparing the faster engine…"
    elif not fast:
        how = "dense (incremental gains nothing on this network)"
    elif slow:
        how = f"incremental for {', '.join(fast)}, dense for {', '.join(slow)} (no gain)"
    else:
        how = "incremental"
    if any(kind == "traced now" for _, kind in kinds):
        how += "; its first map traces it (seconds, once)"
    return f"{name} engine: {how}", preparing


def cost_text(cost: Cost, mode: str) -> str:
    """The cost line under the Map page's settings."""
    return (
        f"Cost: {cost.map_passes:,} forward passes for the map ({MODE_CHOICES[mode].lower()}, {cost.engine}), about "
        f"{_seconds(cost.map_seconds)} on this machine; then {cost.check_passes} for its faithfulness check, about "
        f"{_seconds(cost.check_seconds)}"
    )


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def passes_cost(choice: NetworkChoice, map_passes: int, check_passes: int) -> Cost:
    """:class:`Cost` of so many dense map and check passes on this network (seconds from the per-pass probe), for
    the Methods page's Grad-CAM and RISE maps and randomisation checks."""
    dense = _seconds_per_pass(choice)
    return Cost(map_passes, check_passes, map_passes * dense, check_passes * dense, "dense engine")
