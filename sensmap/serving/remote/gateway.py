"""The gateway: a child process of the dashboard that is the Ray driver, so the dashboard never imports Ray.

Started by :class:`~sensmap.serving.remote.client.RayMaps` as ``python -m sensmap.serving.remote.gateway FD``: ``FD``
is its end of a socket pair that carries pickled messages (:class:`multiprocessing.connection.Connection`). A Ray
driver may hang for minutes in ``ray.init`` and may be ended by Ray when the cluster dies; here that costs only this
process. The gateway exits when its parent dies or closes the pipe (Ray then ends its actors).

Messages from the dashboard: ``("start", RaySettings)`` (first), ``("job", job_id, NetworkSource, ModelWork)``,
``("cancel", job_id)``, ``("status", request_id)``, ``("close",)``. To the dashboard: ``("ready", info)`` or
``("failed", message)`` (then it exits), ``("event", job_id, event)`` (the actor's events, see
:mod:`~sensmap.serving.remote.actor`), ``("gone", job_id, message)`` (the cluster or the actor went away: that job
and every later one), ``("status", request_id, dict)``.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

#: Threads of each map actor (a threaded actor): one job at a time, plus cancel() and stats() calls meanwhile.
_MAX_CONCURRENCY = 4
#: Seconds a cancelled job may keep computing before the gateway also calls ``ray.cancel`` on it.
CANCEL_GRACE_S = 3.0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Gateway:
    """The driver's state: the map actors, which job each runs, the jobs waiting for a free actor (FIFO)."""

    def __init__(self, conn: Connection, settings: Any) -> None:
        self.conn = conn
        self.settings = settings
        self.address = settings.address
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self.actors: list[Any] = []
        self.free: list[int] = []
        self.waiting: collections.deque = collections.deque()
        self.running: dict[str, tuple[int, Any]] = {}  # job id → (actor index, generator)
        self.gone: str | None = None

    def send(self, message: tuple) -> None:
        with self._send_lock:
            try:
                self.conn.send(message)
            except (OSError, EOFError, ValueError):
                os._exit(0)  # the dashboard went away

    # ------------------------------------------------------------------ connecting

    def connect(self) -> None:
        """``ray.init`` and the actors; sends ``ready`` or ``failed`` (and then exits)."""
        import ray

        started = time.monotonic()
        timeout = float(self.settings.connect_timeout_s)
        where = self.address or "(RAY_ADDRESS)"
        try:
            ray.init(address=self.address or None, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError…: all end here
            self.fail(f"cannot connect to the Ray cluster at {where}: {_first_line(exc)}")
        from .actor import MapActor

        cpus = float(self.settings.cpus_per_actor)
        threads = max(1, int(cpus))
        remote = ray.remote(MapActor).options(num_cpus=cpus, max_concurrency=_MAX_CONCURRENCY)
        self.actors = [remote.remote(threads) for _ in range(int(self.settings.actors))]
        left = max(1.0, timeout - (time.monotonic() - started))
        try:
            ray.get([actor.stats.remote() for actor in self.actors], timeout=left)
        except ray.exceptions.GetTimeoutError:
            resources = ray.cluster_resources()
            self.fail(
                f"the Ray cluster at {where} did not start {len(self.actors)} map actors with {cpus:g} CPUs each "
                f"within {timeout:g} s (the cluster has {resources.get('CPU', 0):g} CPUs; lower [ray] actors or "
                "cpus_per_actor, or add nodes)"
            )
        except Exception as exc:  # noqa: BLE001 - an actor that cannot start (import error, dead node…)
            self.fail(f"the map actors on the Ray cluster at {where} failed to start: {_first_line(exc)}")
        self.free = list(range(len(self.actors)))
        self.send(("ready", {"address": where, "actors": len(self.actors), "pid": os.getpid()}))

    def fail(self, message: str) -> None:
        self.send(("failed", message))
        self.conn.close()
        os._exit(2)

    # ------------------------------------------------------------------ jobs

    def submit(self, job_id: str, source: Any, work: Any) -> None:
        with self._lock:
            if self.gone is None:
                if self.free:
                    self._start(job_id, source, work, self.free.pop(0))
                else:
                    self.waiting.append((job_id, source, work))
                return
            gone = self.gone
        self.send(("gone", job_id, gone))

    def _start(self, job_id: str, source: Any, work: Any, index: int) -> None:
        """Start a job on actor ``index`` (caller holds the lock)."""
        generator = self.actors[index].run.remote(job_id, source, work)
        self.running[job_id] = (index, generator)
        threading.Thread(target=self._follow, args=(job_id, index, generator), daemon=True, name=job_id).start()

    def _follow(self, job_id: str, index: int, generator: Any) -> None:
        """Forward a job's events to the dashboard until its final event (in its own thread)."""
        import ray

        final = False
        try:
            for ref in generator:
                event = ray.get(ref)
                final = event[0] in ("result", "error", "cancelled")
                self.send(("event", job_id, event))
                if final:
                    break
            if not final:  # the generator ended without a final event: cancelled by ray.cancel
                self.send(("event", job_id, ("cancelled", None, "cancelled on the Ray cluster")))
        except ray.exceptions.TaskCancelledError:
            self.send(("event", job_id, ("cancelled", None, "cancelled on the Ray cluster")))
        except (ray.exceptions.RayActorError, ray.exceptions.RaySystemError, ConnectionError) as exc:
            self._lost(job_id, exc)
            return
        except Exception as exc:  # noqa: BLE001 - e.g. a job that cannot be unpickled there: the caller's error
            kind = type(exc)
            self.send(("event", job_id, ("error", f"{kind.__module__}.{kind.__qualname__}", _first_line(exc))))
        with self._lock:
            self.running.pop(job_id, None)
            if self.gone is not None:
                return
            if self.waiting:
                self._start(*self.waiting.popleft(), index)
            else:
                self.free.append(index)
                self.free.sort()

    def _lost(self, job_id: str, exc: BaseException) -> None:
        """The actor or the cluster went away: this job and every other one get ``gone``, later ones too."""
        message = f"{type(exc).__name__}: {_first_line(exc)}"
        with self._lock:
            self.gone = self.gone or message
            others = [j for j in self.running if j != job_id] + [job[0] for job in self.waiting]
            self.running.clear()
            self.waiting.clear()
        for job in [job_id, *others]:
            self.send(("gone", job, message))

    def cancel(self, job_id: str) -> None:
        with self._lock:
            for job in self.waiting:
                if job[0] == job_id:
                    self.waiting.remove(job)
                    self.send(("event", job_id, ("cancelled", None, "cancelled before it started")))
                    return
            index, generator = self.running.get(job_id, (None, None))
        if index is None:
            return
        self.actors[index].cancel.remote(job_id)
        threading.Thread(target=self._force_cancel, args=(job_id, generator), daemon=True).start()

    def _force_cancel(self, job_id: str, generator: Any) -> None:
        """``ray.cancel`` a job that ignored its cancel flag for :data:`CANCEL_GRACE_S`."""
        import ray

        deadline = time.monotonic() + CANCEL_GRACE_S
        while time.monotonic() < deadline:
            time.sleep(0.1)
            with self._lock:
                if job_id not in self.running:
                    return
        try:
            ray.cancel(generator)
        except Exception:  # noqa: BLE001 - already finished or the actor is gone: _follow reports it
            pass

    def status(self, request_id: str) -> None:
        import ray

        actors = []
        for index, actor in enumerate(self.actors):
            try:
                stats = ray.get(actor.stats.remote(), timeout=10)
            except Exception as exc:  # noqa: BLE001 - a dead actor is part of the status
                stats = {"error": f"{type(exc).__name__}: {_first_line(exc)}"}
            actors.append({"actor": index, **stats})
        with self._lock:
            data = {
                "address": self.address,
                "actors": actors,
                "waiting": [job[0] for job in self.waiting],
                "running": {job: index for job, (index, _) in self.running.items()},
                "gone": self.gone,
            }
        self.send(("status", request_id, data))

    # ------------------------------------------------------------------ the main loop

    def serve(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                return
            kind = message[0]
            if kind == "job":
                self.submit(*message[1:])
            elif kind == "cancel":
                self.cancel(message[1])
            elif kind == "status":
                threading.Thread(target=self.status, args=(message[1],), daemon=True).start()
            elif kind == "close":
                return


def _watch_parent(parent: int) -> None:
    """Exit when the dashboard's process is gone (re-parented), even if the pipe stays open somewhere."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    fd = int(args[0])
    os.set_inheritable(fd, False)  # Ray's own child processes must not keep the dashboard's pipe open
    conn = Connection(fd)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    try:
        first = conn.recv()
    except (EOFError, OSError):
        os._exit(0)
    gateway = Gateway(conn, first[1])
    gateway.connect()
    gateway.serve()
    conn.close()
    # ray.shutdown() can hang when the cluster is gone; the actors end with this driver anyway.
    threading.Timer(10.0, os._exit, args=(0,)).start()
    try:
        import ray

        ray.shutdown()
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()
