"""The dashboard's side of remote maps: :class:`RayMaps` (no Ray import here).

A Ray driver inside the Streamlit server would be dangerous: ``ray.init`` to an unreachable address hangs for
minutes, and Ray may end the driver's process when the cluster dies. So :class:`RayMaps` starts a child process,
the gateway (:mod:`sensmap.serving.remote.gateway`), that is the driver, and talks to it over a socket pair with
pickled messages. If the gateway or the cluster goes away, the running maps raise
:class:`~sensmap.errors.ClusterUnavailableError` and the dashboard computes locally again.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import itertools
import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ...errors import CancelledError, ClusterUnavailableError, SensmapError
from ..config import RaySettings
from ..jobs import ModelWork, NetworkSource

#: Seconds between two looks at a job's events (and at its ``cancel()``), in the calling thread.
POLL_S = 0.1
#: Seconds :meth:`RayMaps.run` waits for the cluster to acknowledge a cancel before raising anyway.
CANCEL_WAIT_S = 10.0
#: Seconds :meth:`RayMaps.status` waits for the gateway's answer.
STATUS_WAIT_S = 30.0

_FINAL = ("result", "error", "cancelled", "gone")


class RayMaps:
    """Map jobs on a Ray cluster, through a gateway child process; thread-safe (one instance per server).

    ``settings``: where the cluster is and how many map actors to start (:class:`~sensmap.serving.RaySettings`;
    an empty ``address`` means Ray's own choice, ``RAY_ADDRESS``). ``env``: environment variables for the gateway,
    laid over this process's (e.g. ``RAY_AUTH_TOKEN``). Call :meth:`start` first, :meth:`close` at the end.
    """

    def __init__(self, settings: RaySettings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.env = dict(env or {})
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._log: Any = None
        self._jobs: dict[str, queue.Queue] = {}
        self._requests: dict[str, queue.Queue] = {}
        self._problem: str | None = "not started"
        self._ids = itertools.count(1)
        #: The gateway's ``ready`` details (``address``, ``actors``, ``pid``) once started.
        self.info: dict[str, Any] = {}

    # ------------------------------------------------------------------ state

    @property
    def address(self) -> str:
        """The cluster's address as the operator named it (``RAY_ADDRESS`` when the settings leave it empty)."""
        return self.settings.address or "RAY_ADDRESS"

    @property
    def available(self) -> bool:
        """Whether map jobs can go to the cluster now (started, and nothing went away since)."""
        return self._problem is None

    @property
    def problem(self) -> str | None:
        """Why the cluster is not available (a sentence for the operator), or None when it is."""
        return self._problem

    # ------------------------------------------------------------------ starting and stopping

    def start(self) -> None:
        """Start the gateway and its map actors; returns once they are ready.

        Raises :class:`~sensmap.errors.ClusterUnavailableError` when the cluster cannot be reached, or the actors
        cannot start, within ``settings.connect_timeout_s`` seconds (the gateway is then stopped).
        """
        with self._lock:
            self._stop_gateway()
            ours, theirs = socket.socketpair()
            log = tempfile.TemporaryFile(prefix="sensmap-gateway-")  # kept while the gateway runs
            env = {**os.environ, **self.env}
            env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            fd = theirs.fileno()
            try:
                process = subprocess.Popen(
                    [sys.executable, "-m", "sensmap.serving.remote.gateway", str(fd)],
                    pass_fds=(fd,),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd=os.getcwd(),
                )
            except OSError as exc:
                ours.close()
                theirs.close()
                log.close()
                raise ClusterUnavailableError(f"cannot start the Ray gateway process: {exc}") from None
            theirs.close()
            conn = Connection(ours.detach())
            self._process, self._conn, self._log = process, conn, log
            try:
                conn.send(("start", self.settings))
                first = self._await_ready(conn, process, float(self.settings.connect_timeout_s))
            except ClusterUnavailableError as exc:
                self._stop_gateway(kill=True)
                self._problem = str(exc)
                raise
            self._problem = None
            threading.Thread(target=self._read, args=(conn, process), name="sensmap-ray-reader", daemon=True).start()
            self.info = first[1]

    def _await_ready(self, conn: Connection, process: subprocess.Popen, timeout: float) -> tuple:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                said = self._ray_said()
                raise ClusterUnavailableError(
                    f"no answer from the Ray cluster at {self.address} within {timeout:g} s"
                    f"{f' (Ray: {said})' if said else ''}: is it running, is the address right, and does this "
                    "server have its RAY_AUTH_TOKEN? ([ray] connect_timeout_s in .streamlit/sensmap.toml sets the wait)"
                )
            try:
                ready = conn.poll(min(left, 0.2))
                message = conn.recv() if ready else None
            except (EOFError, OSError):
                message = ("failed", None)
            if message is None:
                if process.poll() is None:
                    continue
                message = ("failed", None)
            if message[0] == "ready":
                return message
            if message[1]:  # the gateway's own sentence (it names the address)
                raise ClusterUnavailableError(message[1])
            reason = self._log_tail() or f"the gateway process exited with code {process.poll()}"
            raise ClusterUnavailableError(f"cannot use the Ray cluster at {self.address}: {reason}")

    def _ray_said(self) -> str:
        """Ray's first warning or error in the gateway's output, without its ``[time W pid] file:line:`` prefix."""
        for line in self._log_lines():
            match = re.match(r"^\[[^\]]*\] [\w./-]+:\d+: (.+)$", line)
            if match:
                return match.group(1)
        return ""

    def _log_lines(self) -> list[str]:
        if self._log is None:
            return []
        with contextlib.suppress(OSError, ValueError):
            self._log.seek(0)
            lines = [line.strip() for line in self._log.read().decode("utf-8", "replace").splitlines()]
            return [line for line in lines if line]
        return []

    def _log_tail(self) -> str:
        """The gateway's last non-empty output line (its error, when it died), or ''."""
        lines = self._log_lines()
        return lines[-1] if lines else ""

    def close(self) -> None:
        """Stop the gateway (Ray ends its actors with it); running maps raise ClusterUnavailableError."""
        with self._lock:
            self._stop_gateway()
            self._problem = "closed"

    def _stop_gateway(self, kill: bool = False) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            if not kill:
                with contextlib.suppress(OSError, ValueError, EOFError), self._send_lock:
                    conn.send(("close",))
            with contextlib.suppress(OSError):
                conn.close()
        if process is not None:
            try:
                process.wait(timeout=0.1 if kill else 15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> RayMaps:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ messages

    def _send(self, message: tuple) -> None:
        conn = self._conn
        if conn is None:
            raise ClusterUnavailableError(self._problem or "the Ray gateway is not running")
        try:
            with self._send_lock:
                conn.send(message)
        except (OSError, ValueError, EOFError) as exc:
            raise ClusterUnavailableError(f"the Ray gateway for {self.address} stopped answering ({exc})") from None

    def _read(self, conn: Connection, process: subprocess.Popen) -> None:
        """The reader thread: each gateway message to its job's (or status request's) queue."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind in ("event", "gone"):
                box = self._jobs.get(message[1])
                if box is not None:
                    box.put(message[2] if kind == "event" else ("gone", message[2]))
                if kind == "gone":
                    self._went_away(message[2])
            elif kind == "status":
                box = self._requests.get(message[1])
                if box is not None:
                    box.put(message[2])
        # The pipe closed: the gateway died (Ray ended it, or it was killed) or close() closed it.
        if self._conn is conn:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=2)
            code = process.poll()
            self._went_away(f"the gateway process exited{'' if code is None else f' with code {code}'}")
        for box in list(self._jobs.values()):
            box.put(("gone", "the Ray gateway stopped"))

    def _went_away(self, reason: str) -> None:
        if self._problem is None:
            self._problem = f"the Ray cluster at {self.address} went away ({reason}); maps are computed locally"

    # ------------------------------------------------------------------ jobs

    def run(
        self,
        source: NetworkSource,
        work: ModelWork,
        *,
        progress: Callable[[int, int], Any] | None = None,
        cancel: Callable[[], bool] | None = None,
        on_partial: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Compute ``work`` on the network ``source`` on the cluster; blocks until its result and returns it.

        Callbacks run in the calling thread as the cluster reports: ``progress(done, total)`` (forward passes,
        at most about 10 a second), ``on_partial(result)`` (each partial map). ``cancel()`` is asked every
        :data:`POLL_S` seconds; True stops the remote job and raises :class:`~sensmap.errors.CancelledError` whose
        ``partial`` is the last partial map (or None). An exception from a callback (any BaseException) also stops
        the remote job and propagates. A :class:`~sensmap.errors.SensmapError` raised on the cluster is raised here
        as the same class with the same message. Raises :class:`~sensmap.errors.ClusterUnavailableError` when the
        cluster is not available or goes away during the job (then :attr:`available` is False until
        :meth:`start` succeeds again).
        """
        if self._problem is not None:
            raise ClusterUnavailableError(f"the Ray cluster at {self.address} is not available: {self._problem}")
        job_id = f"job-{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        events: queue.Queue = queue.Queue()
        self._jobs[job_id] = events
        finished = False
        last_partial: Any = None
        try:
            self._send(("job", job_id, source, work))
            while True:
                if cancel is not None and cancel():
                    self._send(("cancel", job_id))
                    finished = True  # the cancel is sent; nothing more to stop
                    raise self._await_cancel(events, last_partial)
                try:
                    event = events.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                kind = event[0]
                if kind in _FINAL:
                    finished = True
                if kind == "progress":
                    if progress is not None:
                        progress(event[1], event[2])
                elif kind == "partial":
                    last_partial = event[1]
                    if on_partial is not None:
                        on_partial(event[1])
                elif kind == "result":
                    return event[1]
                elif kind == "error":
                    raise _rebuild(event[1], event[2])
                elif kind == "cancelled":
                    error = CancelledError(event[2] if len(event) > 2 else "cancelled on the Ray cluster")
                    error.partial = event[1] if event[1] is not None else last_partial
                    raise error
                elif kind == "gone":
                    raise ClusterUnavailableError(
                        f"the Ray cluster at {self.address} went away during the map ({event[1]}); "
                        "the dashboard computes maps locally until it is back"
                    )
        except BaseException:
            if not finished:  # a callback stopped the caller (e.g. Streamlit's StopException): stop the remote job
                with contextlib.suppress(Exception):
                    self._send(("cancel", job_id))
            raise
        finally:
            self._jobs.pop(job_id, None)

    def _await_cancel(self, events: queue.Queue, last_partial: Any) -> BaseException:
        """The error to raise for a cancelled job, once the cluster acknowledged (or :data:`CANCEL_WAIT_S`)."""
        deadline = time.monotonic() + CANCEL_WAIT_S
        message = "cancelled"
        while time.monotonic() < deadline:
            try:
                event = events.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if event[0] == "partial":
                last_partial = event[1]
            elif event[0] == "cancelled":
                message = event[2] if len(event) > 2 else message
                if event[1] is not None:
                    last_partial = event[1]
                break
            elif event[0] in _FINAL:  # finished (or failed) just before the cancel arrived: still a cancel here
                break
        error = CancelledError(message)
        error.partial = last_partial
        return error

    def status(self) -> dict[str, Any]:
        """The gateway's view: ``address``; ``actors``: per actor ``done``, ``cancelled``, ``failed`` (jobs),
        ``running`` (a job id or None), ``networks`` (loaded), ``device``, ``host``, ``pid`` (or ``error``);
        ``waiting`` (job ids), ``running`` (job id → actor), ``gone`` (why the cluster went away, or None);
        plus ``available`` and ``problem`` here. Raises ClusterUnavailableError when the gateway does not answer."""
        request = uuid.uuid4().hex
        box: queue.Queue = queue.Queue()
        self._requests[request] = box
        try:
            self._send(("status", request))
            try:
                data = box.get(timeout=STATUS_WAIT_S)
            except queue.Empty:
                raise ClusterUnavailableError(
                    f"the Ray gateway for {self.address} did not answer within {STATUS_WAIT_S:g} s"
                ) from None
        finally:
            self._requests.pop(request, None)
        return {**data, "address": self.settings.address, "available": self.available, "problem": self.problem}


def _rebuild(name: str, message: str) -> BaseException:
    """The exception a remote job raised, as the same class when it is sensmap's or a builtin one."""
    module, _, qualname = name.rpartition(".")
    kind: Any = None
    if module == "sensmap" or module.startswith("sensmap."):  # never import other modules named by the cluster
        with contextlib.suppress(ImportError):
            kind = getattr(importlib.import_module(module), qualname, None)
        if isinstance(kind, type) and issubclass(kind, SensmapError):
            return kind(message)
    elif module == "builtins":
        kind = getattr(builtins, qualname, None)
        if isinstance(kind, type) and issubclass(kind, Exception):
            return kind(message)
    return SensmapError(f"the map failed on the Ray cluster: {qualname or name}: {message}")
