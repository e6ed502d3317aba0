"""The dashboard's link to a Ray cluster (sensmap.serving.cluster) with a stand-in runner: connecting in the
background, the queue's places, falling back to local computing when the cluster goes away, and coming back."""

from __future__ import annotations

import threading
import time

import pytest

from sensmap.errors import ClusterUnavailableError
from sensmap.serving import ModelWork, NetworkSource, QueueLimits, RaySettings, ServingConfig
from sensmap.serving.cluster import ClusterLink
from sensmap.serving.queue import FairQueue

WORK = ModelWork("sensmap.engine:sensitivity_map")
SOURCE = NetworkSource("MobileNet")


class StandIn:
    """A RayMaps stand-in: ``start`` waits for ``gate`` and fails while ``down``; ``run`` fails once ``down``."""

    def __init__(self, settings, env=None):
        self.settings, self.down, self.starts, self.gate = settings, False, 0, threading.Event()
        self.gate.set()

    def start(self):
        self.gate.wait(10)
        self.starts += 1
        if self.down:
            raise ClusterUnavailableError(f"cannot reach the Ray cluster at {self.settings.address}")

    def run(self, source, work, *, progress=None, cancel=None, on_partial=None):
        if self.down:
            raise ClusterUnavailableError(f"the Ray cluster at {self.settings.address} went away during the map")
        progress(1, 1)
        return ("computed on the cluster", source, work)

    def status(self):
        return {"actors": [{"done": 1}]}

    def close(self):
        pass


def link_with(retry_s: float = 30.0) -> tuple[ClusterLink, FairQueue]:
    config = ServingConfig(QueueLimits(max_running=1), RaySettings(address="10.0.0.9:6379", actors=3, retry_s=retry_s))
    queue = FairQueue(QueueLimits(max_running=1))
    return ClusterLink(config, queue, maps_factory=StandIn), queue


def test_the_link_connects_in_the_background_and_gives_one_place_per_actor():
    link, queue = link_with()
    link._maps.gate.clear()
    link.connect_in_background()
    assert link.state == "connecting" and "maps run on this server meanwhile" in link.describe()
    with pytest.raises(ClusterUnavailableError, match="Connecting to the Ray cluster at 10.0.0.9:6379"):
        link.run(SOURCE, WORK)
    link._maps.gate.set()
    assert link.wait_connected(5)
    assert queue.limits.max_running == 3 and "on the Ray cluster at 10.0.0.9:6379 (3 actors)" in link.describe()
    seen = []
    assert link.run(SOURCE, WORK, progress=lambda d, t: seen.append((d, t)))[0] == "computed on the cluster"
    assert seen == [(1, 1)] and link.status()["actors"] == [{"done": 1}]


def test_a_cluster_that_goes_away_hands_back_to_the_servers_places_and_is_tried_again():
    link, queue = link_with(retry_s=0.3)
    link.connect_in_background()
    assert link.wait_connected(5)
    link._maps.down = True
    with pytest.raises(ClusterUnavailableError, match="went away during the map"):
        link.run(SOURCE, WORK)
    assert link.state == "gone" and queue.limits.max_running == 1
    assert "Maps run on this server: the Ray cluster at 10.0.0.9:6379 went away" in link.describe()
    assert link.status()["state"] == "gone"
    with pytest.raises(ClusterUnavailableError):
        link.run(SOURCE, WORK)  # no second attempt on a cluster known to be gone: the caller computes locally
    time.sleep(1.0)  # a retry while it is still down
    assert link._maps.starts >= 2 and link.state == "gone"
    link._maps.down = False
    deadline = time.monotonic() + 5
    while link.state != "ready" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert link.state == "ready" and queue.limits.max_running == 3, "back once the cluster is"
    link.close()


def test_an_unreachable_cluster_leaves_the_dashboard_computing_here():
    link, queue = link_with()
    link._maps.down = True
    link.connect_in_background()
    assert not link.wait_connected(5)
    assert link.state == "gone" and "cannot reach the Ray cluster at 10.0.0.9:6379" in link.describe()
    assert queue.limits.max_running == 1
    link.close()
