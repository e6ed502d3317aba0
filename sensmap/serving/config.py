"""The operator's settings for serving many users: ``.streamlit/sensmap.toml`` and environment variables.

``[queue]``: ``max_running`` (jobs computing at once on this server; default 1, as one job already uses every CPU
core; while a Ray cluster serves the jobs, one per actor), ``max_waiting_per_session`` (default 4) and
``max_waiting`` (all sessions together; default 64). ``[ray]``: ``address`` (a Ray cluster for map jobs;
``SENSMAP_RAY_ADDRESS`` wins), ``actors`` (map actors on the cluster, each keeping its networks loaded; default 2),
``cpus_per_actor`` (default 1), ``connect_timeout_s`` (default 60) and ``retry_s`` (seconds between attempts to
reach a cluster that went away; default 60). Environment variables
``SENSMAP_QUEUE_MAX_RUNNING``, ``SENSMAP_QUEUE_MAX_WAITING_PER_SESSION``, ``SENSMAP_QUEUE_MAX_WAITING``,
``SENSMAP_RAY_ACTORS`` override the file; ``SENSMAP_CONFIG`` names another file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import tomllib

from ..errors import ParameterError

DEFAULT_CONFIG = Path(".streamlit") / "sensmap.toml"


@dataclass(frozen=True)
class QueueLimits:
    """How many jobs compute at once, and how many may wait (per session and in all)."""

    max_running: int = 1
    max_waiting_per_session: int = 4
    max_waiting: int = 64


@dataclass(frozen=True)
class RaySettings:
    """Where map jobs go when a Ray cluster is named (``address`` empty: this server computes them)."""

    address: str = ""
    actors: int = 2
    cpus_per_actor: float = 1.0
    connect_timeout_s: float = 60.0
    retry_s: float = 60.0


@dataclass(frozen=True)
class ServingConfig:
    """The queue limits, the Ray settings and where they were read (a file, or ``"defaults"``); ``problem``: why the
    operator's file was not used, when the defaults stand in for it."""

    queue: QueueLimits = QueueLimits()
    ray: RaySettings = RaySettings()
    source: str = "defaults"
    problem: str = ""

    def places(self, cluster_ready: bool) -> int:
        """Jobs computing at once: one per Ray actor while the cluster serves map jobs, else ``[queue]
        max_running`` on this server."""
        return self.ray.actors if cluster_ready else self.queue.max_running


def _positive(table: dict, name: str, default: float, where: str, kind: type = int) -> float:
    value = table.get(name, default)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{where}: {name} = {value!r} is not a number") from None
    if number < 1 and kind is int:
        raise ParameterError(f"{where}: {name} must be at least 1 (got {value!r})")
    if number <= 0:
        raise ParameterError(f"{where}: {name} must be positive (got {value!r})")
    return number


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> ServingConfig:
    """The serving settings: ``path`` (default ``SENSMAP_CONFIG`` or ``.streamlit/sensmap.toml`` in the current
    folder; a missing default file means defaults), then the environment variables. Raises
    :class:`~sensmap.errors.ParameterError` for a file that cannot be read or a value out of range."""
    env = dict(os.environ if environ is None else environ)
    named = path or env.get("SENSMAP_CONFIG") or None
    file = Path(named) if named else DEFAULT_CONFIG
    data: dict = {}
    if file.is_file():
        try:
            data = tomllib.loads(file.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ParameterError(f"cannot read the sensmap settings {file}: {exc}") from None
    elif named:
        raise ParameterError(f"the sensmap settings file {file} does not exist (SENSMAP_CONFIG)")
    queue, ray = dict(data.get("queue", {})), dict(data.get("ray", {}))
    for key, name in [("max_running", "SENSMAP_QUEUE_MAX_RUNNING"),
                      ("max_waiting_per_session", "SENSMAP_QUEUE_MAX_WAITING_PER_SESSION"),
                      ("max_waiting", "SENSMAP_QUEUE_MAX_WAITING")]:  # fmt: skip
        if env.get(name, "").strip():
            queue[key] = env[name].strip()
    if env.get("SENSMAP_RAY_ACTORS", "").strip():
        ray["actors"] = env["SENSMAP_RAY_ACTORS"].strip()
    if env.get("SENSMAP_RAY_ADDRESS", "").strip():
        ray["address"] = env["SENSMAP_RAY_ADDRESS"].strip()
    where = str(file) if file.is_file() else "sensmap settings"
    actors = int(_positive(ray, "actors", RaySettings.actors, where))
    address = str(ray.get("address", "") or "").strip()
    limits = QueueLimits(
        max_running=int(_positive(queue, "max_running", QueueLimits.max_running, where)),
        max_waiting_per_session=int(_positive(queue, "max_waiting_per_session", QueueLimits.max_waiting_per_session,
                                              where)),  # fmt: skip
        max_waiting=int(_positive(queue, "max_waiting", QueueLimits.max_waiting, where)),
    )
    settings = RaySettings(
        address=address,
        actors=actors,
        cpus_per_actor=float(_positive(ray, "cpus_per_actor", RaySettings.cpus_per_actor, where, float)),
        connect_timeout_s=float(_positive(ray, "connect_timeout_s", RaySettings.connect_timeout_s, where, float)),
        retry_s=float(_positive(ray, "retry_s", RaySettings.retry_s, where, float)),
    )
    return ServingConfig(queue=limits, ray=settings, source=str(file) if file.is_file() else "defaults")
