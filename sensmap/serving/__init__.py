"""Serving many users: model work as picklable jobs, the fair queue every session's jobs go through, the
operator's settings, and (optionally) map actors on a Ray cluster.

Pure Python apart from :mod:`sensmap.serving.remote` (Ray, in a child process) and :func:`run_work` (which calls
the engine); nothing here imports Streamlit.
"""

from .config import QueueLimits, RaySettings, ServingConfig, load_config
from .jobs import WORK_FUNCTIONS, ModelWork, NetworkSource, run_work

__all__ = [
    "WORK_FUNCTIONS",
    "ModelWork",
    "NetworkSource",
    "QueueLimits",
    "RaySettings",
    "ServingConfig",
    "load_config",
    "run_work",
]
