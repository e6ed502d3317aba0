"""Exceptions raised by sensmap.

Every error a user can cause (a bad photo, a missing weights file, an impossible
parameter) is a :class:`SensmapError` whose message says what went wrong and what
to do about it. Front ends (CLI, dashboard) show ``str(error)`` and nothing else.
"""

from __future__ import annotations


class SensmapError(Exception):
    """Base class of every error sensmap raises on purpose."""


class ImageError(SensmapError):
    """The photo cannot be read or used (corrupt, unsupported, too large, bad array)."""


class ModelError(SensmapError):
    """The network cannot be built, loaded or used as a classifier."""


class WeightsError(ModelError):
    """Weights are missing, corrupt or cannot be downloaded."""


class ParameterError(SensmapError):
    """A parameter (cover size, stride, fill, target, batch size…) is invalid."""


class BudgetError(ParameterError):
    """The requested map needs more forward passes than the configured budget."""


class CancelledError(SensmapError):
    """A run was cancelled by the caller before it finished.

    ``partial``: for a stopped map, the last partial :class:`~sensmap.result.SensitivityResult` (the cover sizes
    or fast-mode rounds finished before the stop, marked ``partial``), or None when nothing had finished.
    """

    partial = None


class QueueFullError(SensmapError):
    """The dashboard's job queue refuses a job: this session already has the most jobs waiting that the operator
    allows, or the whole queue is full (``[queue]`` in ``.streamlit/sensmap.toml``)."""


class ClusterUnavailableError(SensmapError):
    """The Ray cluster named by ``SENSMAP_RAY_ADDRESS`` cannot be reached, or went away during a job."""
