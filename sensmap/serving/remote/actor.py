"""The Ray actor that computes the dashboard's maps on a cluster: :class:`MapActor`.

Ray imports this module in its worker processes, so the class stays at the top level. Each actor keeps the networks
it has loaded (keyed by :class:`~sensmap.serving.jobs.NetworkSource`) and runs every job with
:func:`~sensmap.serving.jobs.run_work`: the same sensmap functions, with the same arguments, as a local run.

Events a job yields (plain tuples, picklable): ``("progress", done, total)`` (forward passes; at most about
:data:`PROGRESS_PER_S` a second, the last one always), ``("partial", result)`` (a partial map), then exactly one of
``("result", value)``, ``("error", "module.ClassName", message)`` or ``("cancelled", partial, message)``
(``partial``: the last partial map, or None).
"""

from __future__ import annotations

import collections
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from ...tf_setup import configure_tensorflow
from ..jobs import ModelWork, NetworkSource, run_work

#: Progress events per second a job sends at most (the final ``done == total`` one always goes).
PROGRESS_PER_S = 10.0
#: Seconds between checks of Ray's own cancellation flag while a job computes.
_POLL_S = 0.1


class MapActor:
    """Ray actor (threaded, ``max_concurrency`` ≥ 2): computes one job at a time, answers :meth:`cancel` and
    :meth:`stats` while it computes.

    ``threads``: TensorFlow intra-op threads (the CPUs Ray reserved for this actor; None: TensorFlow's default).
    """

    def __init__(self, threads: int | None = None) -> None:
        self.device = configure_tensorflow(threads)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._networks: dict[NetworkSource, Any] = {}
        self._lock = threading.Lock()
        self._cancels: dict[str, threading.Event] = {}  # the running job's stop flag
        self._early: collections.deque[str] = collections.deque(maxlen=64)  # cancels that came before their job
        self._done = self._cancelled = self._failed = 0
        self._running: str | None = None

    # ------------------------------------------------------------------ methods the gateway calls

    def run(self, job_id: str, source: NetworkSource, work: ModelWork) -> Iterator[tuple]:
        """Streaming generator: the events of job ``job_id`` (see the module's docstring), the last one final."""
        with self._lock:
            stop = self._cancels.setdefault(job_id, threading.Event())
            if job_id in self._early:
                stop.set()
            self._running = job_id
        events: queue.Queue = queue.Queue()
        worker = threading.Thread(
            target=self._compute, args=(job_id, source, work, stop, events), name=f"map-{job_id}", daemon=True
        )
        worker.start()
        context = _runtime_context()
        try:
            while True:
                try:
                    event = events.get(timeout=_POLL_S)
                except queue.Empty:
                    if context is not None and context.is_canceled():  # ray.cancel on this generator
                        stop.set()
                    continue
                if event[0] in ("result", "error", "cancelled"):
                    worker.join()
                    with self._lock:  # counted before the final event leaves: stats() agrees with the caller
                        self._running = None
                        self._cancels.pop(job_id, None)
                        if event[0] == "result":
                            self._done += 1
                        elif event[0] == "cancelled":
                            self._cancelled += 1
                        else:
                            self._failed += 1
                    yield event
                    return
                yield event
        finally:  # the consumer went away (generator closed): stop the computation too
            stop.set()
            with self._lock:
                if self._running == job_id:
                    self._running = None
                self._cancels.pop(job_id, None)

    def cancel(self, job_id: str) -> bool:
        """Ask job ``job_id`` to stop (also just before it starts here); whether it is running here now."""
        with self._lock:
            if job_id in self._cancels:
                self._cancels[job_id].set()
            else:  # its run() call may still be on its way; a job that already finished is not remembered long
                self._early.append(job_id)
            return self._running == job_id

    def stats(self) -> dict[str, Any]:
        """``done``, ``cancelled``, ``failed`` (jobs so far), ``running`` (job id or None), ``networks`` (the names of
        the loaded networks), ``device``, ``host`` and ``pid``."""
        with self._lock:
            return {
                "done": self._done,
                "cancelled": self._cancelled,
                "failed": self._failed,
                "running": self._running,
                "networks": sorted(_describe(source) for source in self._networks),
                "device": self.device,
                "host": self.host,
                "pid": self.pid,
            }

    # ------------------------------------------------------------------ the computation (its own thread)

    def _network(self, source: NetworkSource) -> Any:
        with self._lock:
            network = self._networks.get(source)
        if network is None:
            network = source.load()
            with self._lock:
                network = self._networks.setdefault(source, network)
        return network

    def _compute(
        self, job_id: str, source: NetworkSource, work: ModelWork, stop: threading.Event, events: queue.Queue
    ) -> None:
        from ...errors import CancelledError

        last: list[Any] = [None]
        sent = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done >= total or now - sent[0] >= 1.0 / PROGRESS_PER_S:
                sent[0] = now
                events.put(("progress", int(done), int(total)))

        def on_partial(result: Any) -> None:
            last[0] = result
            events.put(("partial", result))

        try:
            if stop.is_set():
                raise CancelledError("cancelled before the map started")
            network = self._network(source)
            value = run_work(work, network, progress=progress, cancel=stop.is_set, on_partial=on_partial)
            events.put(("result", value))
        except CancelledError as exc:
            events.put(("cancelled", exc.partial if exc.partial is not None else last[0], str(exc)))
        except BaseException as exc:  # noqa: BLE001 - every failure is reported to the caller, the actor lives on
            kind = type(exc)
            events.put(("error", f"{kind.__module__}.{kind.__qualname__}", str(exc) or kind.__name__))


def _runtime_context() -> Any:
    """Ray's runtime context (its ``is_canceled()`` turns True on ``ray.cancel``), or None outside Ray."""
    try:
        import ray

        return ray.get_runtime_context() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - without it, only cancel() stops a job
        return None


def _describe(source: NetworkSource) -> str:
    options = ", ".join(f"{name}={value}" for name, value in source.options)
    weights = "" if source.is_file or source.weights in (None, "imagenet") else f" ({os.path.basename(source.weights)})"
    return f"{source.name}{f'[{options}]' if options else ''}{weights}"
