"""Where the dashboard's model work runs: one fair queue for all sessions, then this server or a Ray cluster.

Every map, faithfulness check and randomisation check of every session waits for its turn in one
:class:`~sensmap.serving.queue.FairQueue` (``[queue]`` of ``.streamlit/sensmap.toml``), so concurrent users share
the CPU or GPU fairly and never oversubscribe it; the waiting user sees their position and expected wait. With
``SENSMAP_RAY_ADDRESS`` set, jobs go to map actors on that cluster (:class:`~sensmap.serving.cluster.ClusterLink`);
when it is unreachable or goes away the dashboard says so and computes here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import streamlit as st

from ..errors import ClusterUnavailableError, SensmapError
from ..serving import ServingConfig, load_config, run_work
from ..serving.cluster import ClusterLink
from ..serving.queue import FairQueue, Place
from .session import K_QUEUE_ID, state
from .text import plain

if TYPE_CHECKING:
    from ..models import Network
    from ..serving import ModelWork
    from .networks import NetworkChoice


@st.cache_resource(show_spinner=False)
def serving_config() -> ServingConfig:
    """The operator's queue and Ray settings (read once per server; a broken file falls back to the defaults and
    :func:`config_problem` says why)."""
    try:
        return load_config()
    except SensmapError as exc:
        return ServingConfig(problem=str(exc))


def config_problem() -> str | None:
    """Why the operator's settings file was not used, if it was not."""
    return serving_config().problem or None


@st.cache_resource(show_spinner=False)
def job_queue() -> FairQueue:
    """The one queue of this server's model work (shared by all sessions; thread-safe)."""
    return FairQueue(serving_config().queue)  # the server's own places until a cluster serves


@st.cache_resource(show_spinner=False)
def cluster_link() -> ClusterLink | None:
    """The link to the Ray cluster named by ``SENSMAP_RAY_ADDRESS`` (or ``[ray] address``), connecting in the
    background from the first page on; None when no cluster is named."""
    config = serving_config()
    if not config.ray.address:
        return None
    link = ClusterLink(config, job_queue())
    link.connect_in_background()
    return link


def session_id() -> str:
    """This browser session's queue id (the unit of fairness): made once per session, kept in its state."""
    return state(K_QUEUE_ID, lambda: uuid.uuid4().hex[:12])


def where_maps_run() -> str:
    """One line on where map jobs run now (for the pages' captions)."""
    link = cluster_link()
    return link.describe() if link is not None else "Maps run on this server."


def show_where_maps_run() -> None:
    """A caption with the queue's load now (when others' jobs are queued) and where map jobs run (when the operator
    named a Ray cluster); a warning when the operator's settings file could not be used."""
    problem = config_problem()
    if problem:
        st.warning(plain(f"The server's queue settings were not used: {problem}"), icon=":material/settings_alert:")
    now = job_queue().snapshot()
    parts = []
    if now["running"] or now["waiting"]:
        parts.append(f"Queue now: {len(now['running'])} computing, {len(now['waiting'])} waiting.")
    if cluster_link() is not None:
        parts.append(where_maps_run())
    if parts:
        st.caption(plain(" ".join(parts)))


def wait_text(label: str, place: Place) -> str:
    """``MobileNetV2 on cat.jpg: waiting for its turn — 2nd of 3 in the queue (1 job computing), about 14 s``."""
    where = "next" if place.position == 1 else f"{_ordinal(place.position)} of {place.waiting}"
    busy = f"{place.running} job{'s' if place.running != 1 else ''} computing"
    return f"{label}: waiting for its turn — {where} in the queue ({busy}), about {_seconds(place.eta_s)}"


def run_model_work(
    choice: NetworkChoice,
    network: Network,
    work: ModelWork,
    *,
    label: str,
    estimate_s: float,
    on_wait: Callable[[Place], None],
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_partial: Callable[[Any], Any] | None = None,
    background: bool = False,
) -> Any:
    """Run ``work`` in its turn: wait in the shared queue (``on_wait(place)`` about twice a second; any click
    interrupts it there and the job leaves the queue), then compute it on the Ray cluster when one serves, else
    here (:func:`sensmap.serving.run_work`). A cluster that goes away during the job is reported with
    ``st.warning`` and the job is computed here instead. ``background``: work the user did not ask to see first
    (the check that follows a map), which waits while others' maps wait. Raises
    :class:`~sensmap.errors.QueueFullError` when the queue refuses the job."""
    queue = job_queue()
    with queue.turn(session_id(), label, estimate_s, on_wait=on_wait, background=background) as ticket:

        def tracked(done: int, total: int) -> None:
            ticket.set_progress(done / max(total, 1))
            if progress is not None:
                progress(done, total)

        link = cluster_link()
        if link is not None and link.ready:
            try:
                return link.run(choice.source, work, progress=tracked, cancel=cancel, on_partial=on_partial)
            except ClusterUnavailableError as exc:
                st.warning(
                    plain(f"{exc} This job now runs on this server; your photos and earlier maps are kept."),
                    icon=":material/cloud_off:",
                )
        return run_work(work, network, progress=tracked, cancel=cancel, on_partial=on_partial)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 90 else f"{value / 60:.1f} min"
