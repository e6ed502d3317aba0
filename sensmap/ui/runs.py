"""Running maps, faithfulness checks and randomisation checks with a progress bar and a Stop button; stopped runs.

Stopping: any click (Stop, a changed setting, another page) makes Streamlit (``runner.fastReruns``,
the default) ask the running script to stop and start the next run at once in a new thread. The old
run stops at its next Streamlit call — the progress update after the batch being computed, the drawing
of a partial map, or any ``st.session_state`` access — and its batch, ``tf.data`` iterator and outputs
are dropped (:func:`sensmap.engine.predict_batches`). What it keeps is the last partial map it drew
(stored as it is drawn, marked ``partial``; :func:`sensmap.ui.result_cache.keep_partial`), never a map
stored as finished unless it finished.

A map is drawn while it refines (each cover size, coarsest first; :mod:`sensmap.ui.progressive`). A
finished map is stored with the numbers of :mod:`sensmap.ui.trust` and its faithfulness check
(:func:`sensmap.faithfulness`) is queued; the page reruns to draw the map, then runs the queued checks
at its end (:func:`run_pending_checks`) with their own progress bar and Stop. The check never delays the
map, and stopping it keeps the map (:func:`faithfulness_button` then offers the check again).

Maps are described by their settings: the Map page's :class:`~sensmap.ui.map_settings.MapSettings` (occlusion) or
the Methods page's :class:`~sensmap.ui.methods.MethodSettings` (Grad-CAM, RISE); both name their ``method``, cache
``key``, ``options``, ``passes`` and how to ``compute`` the map. The Methods page runs its maps' checks itself,
against one shared random baseline. The randomisation check (:func:`sensmap.randomisation_check`) keeps its numbers
in the map's ``metadata["sanity"]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import streamlit as st

from ..errors import CancelledError, SensmapError
from ..result import METHOD_LABELS
from ..serving import ModelWork
from .costs import FAITHFULNESS_RANDOM_ORDERS, FAITHFULNESS_STEPS, StageClock, faithfulness_passes, passes_cost
from .progressive import covers_done, draw_partial
from .result_cache import keep_partial, result_key, results, store_result
from .scheduling import run_model_work, wait_text
from .session import K_CHECKS, K_RUNNING, state
from .text import plain, show_error
from .trust import describe_result

if TYPE_CHECKING:
    from ..models import Network
    from ..result import SensitivityResult
    from ..serving.queue import Place
    from .map_settings import MapSettings
    from .methods import MethodSettings
    from .networks import NetworkChoice
    from .photo_store import PhotoEntry
    from .result_cache import ResultKey

MAX_QUEUED_CHECKS = 8


def run_map_with_progress(
    choice: NetworkChoice,
    network: Network,
    photo: PhotoEntry,
    value: MapSettings | MethodSettings,
    target: int,
    *,
    preview: Any = None,
    cancel: Callable[[], bool] | None = None,
    queue: bool = True,
) -> SensitivityResult | None:
    """Compute (or fetch) one map with a progress bar, drawing it into ``preview`` (an ``st.empty``) as it
    refines; None when the map failed or was stopped. ``value``: the map's method and settings. ``queue``: queue its
    faithfulness check for the end of the page (:func:`run_pending_checks`; the Methods page checks its maps itself,
    against one shared baseline).

    The progress callback updates the bar, and every Streamlit call is a point where a pending
    stop (the Stop button, or any other click; see the module notes) interrupts the script;
    ``sensmap.running`` then stays set and the next run reports the stop (:func:`show_stopped_run`).
    ``cancel`` (a callable returning True to stop) ends the run with
    :class:`~sensmap.errors.CancelledError`. Each partial map is kept (marked partial) as it is drawn, so
    a stop keeps the last one. A finished map goes into the session's result cache (with its story,
    stability and pointing numbers, see :func:`describe_result`) and its faithfulness check is queued
    for :func:`run_pending_checks`; failures leave earlier results as they are.
    """
    key = result_key(choice, photo, value, target)
    if key in results():
        return results()[key]
    label = _run_label(choice, photo, value.method)
    run = _RunProgress(label, value.passes(network), "map")
    clock = StageClock(choice)

    def keep(partial: SensitivityResult) -> None:
        keep_partial(key, partial)
        run.running["partial"] = covers_done(partial, value.sizes)

    def on_partial(result: SensitivityResult) -> None:
        clock.stage(result)
        if result.partial:
            keep(result)
            if preview is not None:
                draw_partial(preview, label, photo, result, value.sizes)
        clock.resume()

    result = None
    with _reporting(run):
        try:
            result = run.in_turn(choice, network, value.work(photo.image, target), "map", cancel, on_partial)
        except CancelledError as exc:
            if getattr(exc, "partial", None) is not None:
                keep(exc.partial)
            raise
        store_result(key, result)
        describe_result(key, result)
        if queue:
            queue_check(key)
    return result


def _run_label(choice: NetworkChoice, photo: PhotoEntry, method: str) -> str:
    """``MobileNetV2 on cat.jpg``, with the method when it is not occlusion: ``… (RISE)``."""
    return f"{choice.label} on {photo.name}" + ("" if method == "occlusion" else f" ({METHOD_LABELS[method]})")


def queue_check(key: ResultKey) -> None:
    """Queue the faithfulness check of a finished map (run by :func:`run_pending_checks` once it is drawn)."""
    queued = state(K_CHECKS, dict)
    queued[key] = True
    while len(queued) > MAX_QUEUED_CHECKS:
        del queued[next(iter(queued))]


def check_pending(key: ResultKey) -> bool:
    """Whether the map's faithfulness check is queued (it runs at the end of the page that shows the map)."""
    return key in st.session_state.get(K_CHECKS, {})


def run_pending_checks(photo: PhotoEntry, jobs: Sequence[tuple[NetworkChoice, Network, ResultKey]]) -> None:
    """Run the queued faithfulness checks of these maps, one after the other, with a progress bar and a Stop
    button; when all are done, rerun the page so their numbers show. Call it at the end of a page, after the maps
    are drawn. A check leaves the queue as it starts: a stop keeps the map, and :func:`faithfulness_button`
    offers the check again."""
    queued = state(K_CHECKS, dict)
    todo = [(choice, network, key) for choice, network, key in jobs if queued.pop(key, None) and key in results()]
    todo = [job for job in todo if "faithfulness" not in results()[job[2]].metadata]
    if not todo:
        return
    stop = stop_button()
    numbers = [run_faithfulness_with_progress(choice, network, photo, results()[key], background=True)
               for choice, network, key in todo]  # fmt: skip
    stop.empty()
    if all(n is not None for n in numbers):
        st.rerun()


def run_faithfulness_with_progress(
    choice: NetworkChoice,
    network: Network,
    photo: PhotoEntry,
    result: SensitivityResult,
    *,
    cancel: Callable[[], bool] | None = None,
    block: int | None = None,
    background: bool = False,
) -> dict | None:
    """The faithfulness check of a finished map (queued, see :func:`run_pending_checks`, or against random patches
    of side ``block`` for the Methods page), with a progress bar; None when it failed or was stopped. ``background``:
    the check was queued after its map (it waits while other users' maps wait)."""
    label = _run_label(choice, photo, result.method)
    run = _RunProgress(label, faithfulness_passes(), "faithfulness check")
    numbers = None
    with _reporting(run):
        work = faithfulness_work(photo, result, block)
        numbers = run.in_turn(choice, network, work, "faithfulness check", cancel, background=background)
    return numbers


def run_sanity_with_progress(
    choice: NetworkChoice,
    network: Network,
    photo: PhotoEntry,
    jobs: Sequence[tuple[MapSettings | MethodSettings, SensitivityResult]],
    steps: int,
    *,
    cancel: Callable[[], bool] | None = None,
) -> bool:
    """The randomisation check (:func:`sensmap.randomisation_check`, ``steps`` cumulative steps) of each finished
    map ``(settings, result)``, one progress bar over all of them; each check's numbers go into its map's
    ``metadata["sanity"]`` as soon as it finishes. False when a check failed or was stopped (finished ones stay)."""
    from ..methods import randomisation_passes

    counts = [randomisation_passes(network, value.method, steps, original=True, **value.options()) for value, _ in jobs]
    run = _RunProgress(f"{choice.label} on {photo.name}", sum(counts), "randomisation check")
    finished = False
    with _reporting(run):
        offset = 0
        for (value, result), passes in zip(jobs, counts, strict=True):
            work = ModelWork("sensmap.methods:randomisation_check", (photo.image,),
                             dict(method=value.method, steps=steps, original=result, **value.options()))  # fmt: skip
            check = run.in_turn(choice, network, work, f"randomisation check of the {result.method_label} map", cancel,
                                offset=offset, passes=passes)  # fmt: skip
            result.metadata["sanity"] = check.as_dict()
            offset += passes
        finished = True
    return finished


def faithfulness_button(key: ResultKey, widget_key: str) -> None:
    """For a finished map without faithfulness numbers (its check was stopped): a button that queues the check
    (the page then runs it at its end, :func:`run_pending_checks`)."""
    st.button(
        f"Check faithfulness ({faithfulness_passes()} forward passes)", key=widget_key, icon=":material/rule:",
        on_click=queue_check, args=(key,),
    )  # fmt: skip


def stop_button() -> Any:
    """A Stop button shown while maps run (any click reruns the page, which interrupts the run).

    Returns its placeholder: call ``.empty()`` on it when the run is over.
    """
    slot = st.empty()
    slot.button("Stop", icon=":material/stop_circle:", key="w.stop", help="Stop the running map")
    return slot


def show_stopped_run() -> None:
    """If the previous run of the script was interrupted while a map ran, say so (once)."""
    running = st.session_state.pop(K_RUNNING, None)
    if running:
        st.warning(plain(_stopped_text(running)), icon=":material/stop_circle:")


class _RunProgress:
    """One progress bar over several phases (the map, then its faithfulness check) and the run marker."""

    def __init__(self, label: str, total: int, phase: str) -> None:
        self.label, self.total = label, total
        self.running = {"label": label, "done": 0, "total": total, "phase": phase}
        st.session_state[K_RUNNING] = self.running
        self.bar = st.progress(0.0, text=plain(f"{label}: starting…"))

    def phase(self, name: str, offset: int) -> Callable[[int, int], None]:
        """A ``progress(done, total)`` callback for one phase whose passes start at ``offset``."""
        self.running["phase"] = name

        def progress(done: int, _total: int) -> None:
            self.running["queued"] = False
            done = offset + done
            self.running["done"] = done
            self.bar.progress(
                min(1.0, done / max(self.total, 1)),
                text=plain(f"{self.label}: {done:,} of {self.total:,} forward passes ({name})"),
            )

        return progress

    def in_turn(
        self,
        choice: NetworkChoice,
        network: Network,
        work: ModelWork,
        phase: str,
        cancel: Callable[[], bool] | None,
        on_partial: Callable[[Any], Any] | None = None,
        *,
        offset: int = 0,
        passes: int | None = None,
        background: bool = False,
    ) -> Any:
        """Run one phase's model work in its turn of the shared queue (:func:`~sensmap.ui.scheduling.run_model_work`):
        the bar shows the position and expected wait, then the phase's forward passes."""
        passes = self.total - offset if passes is None else passes

        def waiting(place: Place) -> None:
            self.running["queued"] = True
            self.bar.progress(min(1.0, offset / max(self.total, 1)), text=plain(wait_text(self.label, place)))

        return run_model_work(
            choice, network, work, label=f"{self.label} ({phase})", estimate_s=passes_cost(choice, passes, 0).seconds,
            on_wait=waiting, progress=self.phase(phase, offset), cancel=cancel, on_partial=on_partial,
            background=background,
        )  # fmt: skip

    def close(self) -> None:
        st.session_state.pop(K_RUNNING, None)
        self.bar.empty()

    def stopped(self) -> None:
        self.close()
        st.warning(plain(_stopped_text(self.running)), icon=":material/stop_circle:")


@contextlib.contextmanager
def _reporting(run: _RunProgress) -> Iterator[None]:
    """Close the progress bar when the block ends: a stop says so, a sensmap error is shown with
    ``st.error`` (the caller keeps what it had); anything else (Streamlit's own rerun) passes on."""
    try:
        yield
    except CancelledError:
        run.stopped()
    except SensmapError as exc:
        run.close()
        show_error(exc)
    else:
        run.close()


def faithfulness_work(photo: PhotoEntry, result: SensitivityResult, block: int | None = None) -> ModelWork:
    """The faithfulness check of a map as model work (:func:`sensmap.faithfulness` with the dashboard's steps and
    random orders; against random patches of side ``block`` when given)."""
    return ModelWork(
        "sensmap.faithful:faithfulness", (photo.image, result),
        dict(steps=FAITHFULNESS_STEPS, random_orders=FAITHFULNESS_RANDOM_ORDERS, block=block),
    )  # fmt: skip


def _stopped_text(running: dict) -> str:
    phase = running.get("phase", "map")
    if running.get("queued"):
        return (
            f"Stopped: the {phase} of {running['label']} left the queue before its turn came. Earlier maps are "
            "kept; press its button to queue it again."
        )
    where = f"after {running['done']:,} of {running['total']:,} forward passes"
    if phase == "map" and running.get("partial"):
        return (
            f"Stopped: the map of {running['label']} was interrupted {where}. Its partial map "
            f"({running['partial']}) is kept and marked partial; press Run to complete it."
        )
    if phase == "map":
        return (
            f"Stopped: the map of {running['label']} was interrupted {where}. "
            "Earlier maps are kept; press Run to start again."
        )
    if phase == "faithfulness check":
        return (
            f"Stopped: the {phase} of {running['label']} was interrupted {where}. "
            "The map is kept; its Check faithfulness button runs the check again (or Run on the Methods page)."
        )
    return (
        f"Stopped: the {phase} of {running['label']} was interrupted {where}. "
        "The maps and the checks that finished are kept; press its button to run the rest."
    )
