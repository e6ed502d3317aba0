"""The dashboard's link to a Ray cluster for map jobs: connecting in the background, serving jobs while the
cluster is there, and handing back to local computing (with the reason) when it goes away.

The queue (:class:`~sensmap.serving.queue.FairQueue`) gets one place per Ray actor while the cluster serves, and
the server's own places otherwise. Pure Python: Ray itself runs in the gateway process of
:class:`sensmap.serving.remote.RayMaps`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import ClusterUnavailableError
from .config import ServingConfig
from .jobs import ModelWork, NetworkSource
from .queue import FairQueue

CONNECTING, READY, GONE = "connecting", "ready", "gone"


class ClusterLink:
    """Map jobs on the Ray cluster at ``config.ray.address``, with local computing as the fallback.

    ``state`` is ``"connecting"`` until the gateway reports its actors ready, then ``"ready"``, or ``"gone"`` (with
    ``problem`` saying why) when connecting failed or the cluster went away. ``maps_factory(settings, env)`` builds
    the runner (:class:`sensmap.serving.remote.RayMaps`; tests pass a stand-in).
    """

    def __init__(
        self,
        config: ServingConfig,
        queue: FairQueue,
        maps_factory: Callable[..., Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        if maps_factory is None:
            from .remote import RayMaps as maps_factory  # no Ray import here: RayMaps runs Ray in a child process
        self.config, self.queue = config, queue
        self.address = config.ray.address
        self.state, self.problem = CONNECTING, ""
        self.since = time.time()
        self._maps = maps_factory(config.ray, env=env)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._retry: threading.Timer | None = None
        self._closed = False

    def connect_in_background(self) -> None:
        """Start the gateway and its actors in a thread of their own (the dashboard serves locally meanwhile)."""
        self._thread = threading.Thread(target=self._connect, name="sensmap-ray-connect", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds for the connection attempt to end; True when the cluster serves."""
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self.state == READY

    @property
    def ready(self) -> bool:
        return self.state == READY

    def describe(self) -> str:
        """One line for the dashboard: where map jobs run now."""
        if self.state == READY:
            return f"Map jobs run on the Ray cluster at {self.address} ({self.config.ray.actors} actors)."
        if self.state == CONNECTING:
            return f"Connecting to the Ray cluster at {self.address}; maps run on this server meanwhile."
        retry = self.config.ray.retry_s
        return f"Maps run on this server: {self.problem} (the dashboard tries the cluster again every {retry:g} s)"

    def run(
        self,
        source: NetworkSource,
        work: ModelWork,
        *,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        on_partial: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Run ``work`` on the cluster (same result as :func:`sensmap.serving.run_work` here). Raises
        :class:`~sensmap.errors.ClusterUnavailableError` when the cluster is not serving or goes away; the queue
        then falls back to the server's own places."""
        if self.state != READY:
            raise ClusterUnavailableError(self.describe())
        try:
            return self._maps.run(source, work, progress=progress, cancel=cancel, on_partial=on_partial)
        except ClusterUnavailableError as exc:
            self._gone(str(exc))
            raise

    def status(self) -> dict[str, Any]:
        """The gateway's numbers (actors, jobs done and cancelled) while the cluster serves, and the link's state."""
        out: dict[str, Any] = {"state": self.state, "address": self.address, "problem": self.problem}
        if self.state == READY:
            try:
                out.update(self._maps.status())
            except ClusterUnavailableError as exc:
                self._gone(str(exc))
                out.update(state=self.state, problem=self.problem)
        return out

    def close(self) -> None:
        """Stop the gateway and any pending attempt to reconnect."""
        with self._lock:
            self._closed = True
            if self._retry is not None:
                self._retry.cancel()
        self._maps.close()

    def _connect(self) -> None:
        try:
            self._maps.start()
        except ClusterUnavailableError as exc:
            self._gone(str(exc))
            return
        with self._lock:
            if self._closed:
                return
            self.state, self.problem, self.since = READY, "", time.time()
            self.queue.set_max_running(self.config.places(cluster_ready=True))

    def _gone(self, problem: str) -> None:
        """Serve locally from now on, and try to reach the cluster again in ``retry_s`` seconds."""
        with self._lock:
            if self.state == GONE or self._closed:
                return
            self.state, self.problem, self.since = GONE, problem, time.time()
            self.queue.set_max_running(self.config.places(cluster_ready=False))
            self._retry = threading.Timer(self.config.ray.retry_s, self._reconnect)
            self._retry.daemon = True
            self._retry.start()

    def _reconnect(self) -> None:
        with self._lock:
            if self._closed or self.state != GONE:
                return
            self.state = CONNECTING
        self._connect()
