"""Running maps, faithfulness checks and randomisation checks with a progress bar and a Stop button; stopped runs.

Stopping: any click (Stop, a changed setting, another page) makes Streamlit (``runner.fastReruns``,
the default) ask the running script to stop and start the next run at once in a new thread. The old
run stops at its next Streamlit call — the progress update after the batch being computed, or any
``st.session_state`` access, so a stopped run never writes into the session (not even a map whose
last batch was running) — and its batch, ``tf.data`` iterator and partial outputs are dropped
(:func:`sensmap.engine.predict_batches`).

Every finished map also gets ``faithfulness`` (:func:`sensmap.faithfulness`, run through the same
progress bar) in its ``metadata``, beside the numbers of :mod:`sensmap.ui.trust`. Maps are described by
their settings: the Map page's :class:`~sensmap.ui.map_settings.MapSettings` (occlusion) or the Methods page's
:class:`~sensmap.ui.methods.MethodSettings` (Grad-CAM, RISE); both name their ``method``, cache ``key``,
``options``, ``passes`` and how to ``compute`` the map. The randomisation check
(:func:`sensmap.randomisation_check`) keeps its numbers in the map's ``metadata["sanity"]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import streamlit as st

from ..errors import CancelledError, SensmapError
from ..result import METHOD_LABELS
from .costs import FAITHFULNESS_RANDOM_ORDERS, FAITHFULNESS_STEPS, faithfulness_passes
from .result_cache import result_key, results, store_result
from .session import K_RUNNING
from .text import plain, show_error
from .trust import describe_result

if TYPE_CHECKING:
    from ..models import Network
    from ..result import SensitivityResult
    from .map_settings import MapSettings
    from .methods import MethodSettings
    from .networks import NetworkChoice
    from .photo_store import PhotoEntry


def run_map_with_progress(
    choice: NetworkChoice,
    network: Network,
    photo: PhotoEntry,
    value: MapSettings | MethodSettings,
    target: int,
    *,
    cancel: Callable[[], bool] | None = None,
    block: int | None = None,
) -> SensitivityResult | None:
    """Compute (or fetch) one map and its faithfulness check with a progress bar; None when the map
    failed or was stopped. ``value``: the map's method and settings; ``block``: the side of the random patches of
    the faithfulness check (default: the map's ``detail_px``; the Methods page gives all maps the same).

    The progress callback updates the bar, and every Streamlit call is a point where a pending
    stop (the Stop button, or any other click; see the module notes) interrupts the script;
    ``sensmap.running`` then stays set and the next run reports the stop (:func:`show_stopped_run`).
    ``cancel`` (a callable returning True to stop) ends the run with
    :class:`~sensmap.errors.CancelledError`.
    Finished maps go into the session's result cache (with their story, stability and pointing
    numbers, see :func:`describe_result`) before the faithfulness check runs, so stopping the check
    keeps the map; failures leave earlier results as they are.
    """
    key = result_key(choice, photo, value, target)
    if key in results():
        return results()[key]
    map_passes = value.passes(network)
    run = _RunProgress(_run_label(choice, photo, value.method), map_passes + faithfulness_passes(), "map")
    result = None
    with _reporting(run):
        result = value.compute(network, photo.image, target, progress=run.phase("map", 0), cancel=cancel)
        store_result(key, result)
        describe_result(key, result)
        _check_faithfulness(network, photo, result, run.phase("faithfulness check", map_passes), cancel, block)
    return result


def _run_label(choice: NetworkChoice, photo: PhotoEntry, method: str) -> str:
    """``MobileNetV2 on cat.jpg``, with the method when it is not occlusion: ``… (RISE)``."""
    return f"{choice.label} on {photo.name}" + ("" if method == "occlusion" else f" ({METHOD_LABELS[method]})")


def run_faithfulness_with_progress(
    choice: NetworkChoice,
    network: Network,
    photo: PhotoEntry,
    result: SensitivityResult,
    *,
    cancel: Callable[[], bool] | None = None,
    block: int | None = None,
) -> dict | None:
    """The faithfulness check of a finished map (when its automatic run was stopped, or against random patches of
    side ``block``), with a progress bar; None when it failed or was stopped."""
    label = _run_label(choice, photo, result.method)
    run = _RunProgress(label, faithfulness_passes(), "faithfulness check")
    numbers = None
    with _reporting(run):
        numbers = _check_faithfulness(network, photo, result, run.phase("faithfulness check", 0), cancel, block)
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
    from ..methods import randomisation_check, randomisation_passes

    counts = [randomisation_passes(network, value.method, steps, original=True, **value.options()) for value, _ in jobs]
    run = _RunProgress(f"{choice.label} on {photo.name}", sum(counts), "randomisation check")
    finished = False
    with _reporting(run):
        offset = 0
        for (value, result), passes in zip(jobs, counts, strict=True):
            phase = run.phase(f"randomisation check of the {result.method_label} map", offset)
            check = randomisation_check(network, photo.image, method=value.method, steps=steps, original=result,
                                        progress=phase, cancel=cancel, **value.options())  # fmt: skip
            result.metadata["sanity"] = check.as_dict()
            offset += passes
        finished = True
    return finished


def faithfulness_button(
    choice: NetworkChoice, network: Network, photo: PhotoEntry, result: SensitivityResult, key: str
) -> None:
    """For a map without faithfulness numbers (its check was stopped): a button that runs the check."""
    if st.button(f"Check faithfulness ({faithfulness_passes()} forward passes)", key=key, icon=":material/rule:"):
        stop = stop_button()
        numbers = run_faithfulness_with_progress(choice, network, photo, result)
        stop.empty()
        if numbers is not None:
            st.rerun()


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
            done = offset + done
            self.running["done"] = done
            self.bar.progress(
                min(1.0, done / max(self.total, 1)),
                text=plain(f"{self.label}: {done:,} of {self.total:,} forward passes ({name})"),
            )

        return progress

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


def _check_faithfulness(
    network: Network,
    photo: PhotoEntry,
    result: SensitivityResult,
    progress: Callable[[int, int], None] | None,
    cancel: Callable[[], bool] | None,
    block: int | None = None,
) -> dict:
    from ..faithful import faithfulness

    return faithfulness(
        network,
        photo.image,
        result,
        steps=FAITHFULNESS_STEPS,
        random_orders=FAITHFULNESS_RANDOM_ORDERS,
        progress=progress,
        cancel=cancel,
        block=block,
    )


def _stopped_text(running: dict) -> str:
    phase = running.get("phase", "map")
    where = f"after {running['done']:,} of {running['total']:,} forward passes"
    if phase == "map":
        return (
            f"Stopped: the map of {running['label']} was interrupted {where}. "
            "Earlier maps are kept; press Run to start again."
        )
    if phase == "faithfulness check":
        return (
            f"Stopped: the {phase} of {running['label']} was interrupted {where}. "
            "The map is kept; run the check from its Faithfulness tab (or Run on the Methods page)."
        )
    return (
        f"Stopped: the {phase} of {running['label']} was interrupted {where}. "
        "The maps and the checks that finished are kept; press its button to run the rest."
    )
