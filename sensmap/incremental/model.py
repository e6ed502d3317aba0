"""The incremental model of a network: its analysed graph, plans and traced functions per cover size, shared.

:class:`IncrementalModel` is what the engine (:mod:`sensmap.engine`) asks: per cover size in pixels, its plan
(:meth:`~IncrementalModel.cover_plan`), why it runs densely if it does (:meth:`~IncrementalModel.dense_why`), and
its traced batch function (:meth:`~IncrementalModel.function`, traced once, whichever thread asks first);
per photo, the clean activations (:meth:`~IncrementalModel.prepare`). :func:`incremental_model` builds one per
network and shares it with every thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np

from ..models import Network
from .graph import LayerGraph
from .planning import _dense_why, _estimated_speedup, _Plan, _plan
from .runner import CleanState, _batch_function, _prepare
from .tracing import _TRACE_LOCK, _compile, _Traced


class IncrementalModel(LayerGraph):
    """The layer graph of a network prepared for incremental occlusion (see :mod:`sensmap.incremental`)."""

    def __init__(self, network: Network) -> None:
        super().__init__(network)
        self._cover_plans: dict[tuple[int, int], _Plan] = {}
        self._traced: dict[tuple[int, int], _Traced] = {}  # cover size (rows, cols) px → its compiled function
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ planning (numpy)
    def plan(self, boxes: np.ndarray, dense_fraction: float | None = None) -> _Plan:
        """Changed rectangles of every activation for covers ``boxes`` ``(n, 4)`` of one size.

        ``dense_fraction`` (default :data:`~sensmap.incremental.planning.DENSE_FRACTION`): rectangles larger
        than this share of their activation switch the rest of the network to dense computation.
        """
        return _plan(self, boxes, dense_fraction)

    def cover_plan(self, cover: tuple[int, int]) -> _Plan:
        """The plan of a ``cover = (rows, cols)`` px cover at every position of the input (cached per size).

        Rows and columns are planned independently, so one cover per row start and column start (a "diagonal")
        gives the crop sizes every position needs: the plan's function serves any stride, fill, photo, batch
        size and any subset of windows (fast mode), and :meth:`_Plan.start_array` takes the boxes.
        """
        cover = (int(cover[0]), int(cover[1]))
        with self._lock:
            plan = self._cover_plans.get(cover)
        if plan is None:
            height, width = self.network.input_size
            rows, cols = min(cover[0], height), min(cover[1], width)
            index = np.arange(max(height - rows, width - cols) + 1)
            y0, x0 = np.minimum(index, height - rows), np.minimum(index, width - cols)
            plan = _plan(self, np.stack([y0, x0, y0 + rows, x0 + cols], axis=1))
            plan.by_position = True
            with self._lock:
                plan = self._cover_plans.setdefault(cover, plan)
        return plan

    def dense_why(self, plan: _Plan) -> str:
        """Why covers of this plan run densely ('' when computing them incrementally saves arithmetic)."""
        return _dense_why(self, plan)

    def estimated_speedup(self, plan: _Plan) -> float:
        """Dense arithmetic over incremental arithmetic for one cover of ``plan`` (window layers only)."""
        return _estimated_speedup(self, plan)

    # ------------------------------------------------------------------ clean activations
    def prepare(self, pixels: np.ndarray, canvas: np.ndarray) -> CleanState:
        """Clean activations of ``pixels`` (raw 0..255, ``(H, W, 3)``) and the preprocessed ``canvas``."""
        return _prepare(self, pixels, canvas)

    # ------------------------------------------------------------------ traced functions, shared
    def function(
        self, cover: tuple[int, int], state: CleanState | None = None, *, wait: bool = True
    ) -> tuple[Callable | None, str]:
        """The compiled batch function of a cover size: ``(function, "")``, or ``(None, why)`` when its covers
        run densely (no gain, tracing failed, or — with ``wait=False`` — another thread is still tracing it).

        ``function(starts, state)`` takes :meth:`_Plan.start_array` rows of :meth:`cover_plan` and a
        :meth:`prepare` state. Traced once per cover size (any stride, fill, photo, batch size) and shared by
        every thread; the caller traces it when nobody else is (``state``: a prepared state to trace with,
        default a blank one), else waits for the tracer (``wait``: it also takes over a cover a warm-up queued but
        has not reached) or does not (``wait=False``: covers a warm-up is tracing or will trace run densely).
        """
        cover = (int(cover[0]), int(cover[1]))
        plan = self.cover_plan(cover)
        why = self.dense_why(plan)
        if why:
            return None, why
        entry, mine = self._claim(cover, queued=wait)
        if mine:
            self._trace(entry, plan, state)
        elif not entry.settled.is_set():
            if not wait:
                return None, "its incremental function is still being traced (warm-up): dense for now"
            entry.settled.wait()
        return entry.function, entry.why

    def status(self, cover: tuple[int, int]) -> str:
        """``"ready"``, ``"queued"``, ``"tracing"``, ``"failed"``, ``"dense"`` (no gain) or ``"absent"``."""
        cover = (int(cover[0]), int(cover[1]))
        if self.dense_why(self.cover_plan(cover)):
            return "dense"
        with self._lock:
            entry = self._traced.get(cover)
            return "absent" if entry is None else entry.state

    def queue(self, covers: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
        """Mark the covers a warm-up will trace (``"queued"``: others then do not wait for them with
        ``wait=False``); the covers worth tracing that nobody traced yet, in order."""
        mine = []
        for cover in dict.fromkeys((int(c[0]), int(c[1])) for c in covers):
            if self.dense_why(self.cover_plan(cover)):
                continue
            with self._lock:
                if cover not in self._traced:
                    self._traced[cover] = _Traced()
                    mine.append(cover)
        return mine

    def _claim(self, cover: tuple[int, int], *, queued: bool) -> tuple[_Traced, bool]:
        """The cover's entry, and whether this thread is the one to trace it: when nobody asked for it yet,
        or (``queued``) when a warm-up queued it but has not started it."""
        with self._lock:
            entry = self._traced.get(cover)
            if entry is None:
                entry = self._traced[cover] = _Traced()
            elif entry.state != "queued" or not queued:
                return entry, False
            entry.state = "tracing"
            return entry, True

    def _trace(self, entry: _Traced, plan: _Plan, state: CleanState | None) -> None:
        """Trace and instantiate one plan's function (one cover through it); failures are recorded, not raised."""
        try:
            with _TRACE_LOCK:
                if state is None:
                    height, width = self.network.input_size
                    state = self.prepare(np.zeros((height, width, 3), np.float32), np.zeros((height, width, 3)))
                function = _compile(_batch_function(self, plan), plan, state)
            entry.function = function
            entry.state = "ready"
        except Exception as exc:  # a layer that cannot run on crops: the engine runs the covers densely
            entry.why = f"incremental tracing failed ({type(exc).__name__}: {str(exc)[:200]})"
            entry.state = "failed"
        finally:
            entry.settled.set()


_MODELS_LOCK = threading.Lock()
_BUILDING: dict[int, threading.Event] = {}  # id(network) → set when its IncrementalModel is built (or failed)


def incremental_model(network: Network, *, wait: bool = True) -> IncrementalModel | None:
    """The network's :class:`IncrementalModel`, built once per network and shared by every thread (its traced
    functions with it). ``wait=False``: None while another thread is still building it. A graph the analysis
    cannot handle raises its error again at every call."""
    with _MODELS_LOCK:
        built = network._incremental  # noqa: SLF001 - the network owns the cache
        event = _BUILDING.get(id(network))
        builder = built is None and event is None
        if builder:
            event = _BUILDING[id(network)] = threading.Event()
    if builder:
        try:
            built = IncrementalModel(network)
        except Exception as exc:  # kept: every later map says why without analysing again
            built = exc
        with _MODELS_LOCK:
            network._incremental = built  # noqa: SLF001
            del _BUILDING[id(network)]
        event.set()
    elif built is None:
        if not wait:
            return None
        event.wait()
        built = network._incremental  # noqa: SLF001
    if isinstance(built, Exception):
        raise built
    return built
