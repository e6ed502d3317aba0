"""Tracing one cover size's batch function into a TensorFlow graph, and calling it.

A traced function serves its cover size for any stride, fill, photo, batch size and subset of windows; each is
traced once per network and shared by every thread (:class:`_Traced` entries, kept by
:class:`~sensmap.incremental.model.IncrementalModel`), one trace at a time in a process (:data:`_TRACE_LOCK`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tensorflow.python.eager import context as _eager_context  # per-thread call options (no public API)

from ..models import tf
from .planning import _Plan
from .runner import CleanState


class _Traced:
    """One cover size's compiled function: ``queued`` → ``tracing`` → ``ready`` or ``failed`` (with ``why``)."""

    def __init__(self) -> None:
        self.state = "queued"
        self.function: Callable | None = None
        self.why = ""
        self.settled = threading.Event()


#: One trace at a time in a process: graph building is Python-bound, so parallel traces only compete.
_TRACE_LOCK = threading.Lock()


def _compile(batch_function: Callable, plan: _Plan, state: CleanState) -> Callable:
    """Trace and instantiate ``batch_function`` (:func:`~sensmap.incremental.runner._batch_function` of ``plan``)
    with ``state``'s structure, running one cover through it; the function ``(starts, state) → outputs``."""
    function = tf.function(batch_function, autograph=False)
    signature = tf.TensorSpec([None, len(plan.columns), 2], tf.int32)
    concrete = function.get_concrete_function(signature, tf.nest.map_structure(_spec, state))
    first = tf.constant(plan.start_array()[:1])
    _call_graph(concrete, first, state)  # builds the kernels now, not in the first map
    return lambda starts, state: _call_graph(concrete, starts, state)


def _spec(value: tf.Tensor) -> tf.TensorSpec:
    return tf.TensorSpec(value.shape, value.dtype)


def _call_graph(concrete: Any, starts: tf.Tensor, state: CleanState) -> tf.Tensor:
    """Run a traced incremental function; on CPU with Grappler's graph rewrites off (this call, this thread).

    On CPU the rewrites took 0.4–0.8 s per function on MobileNetV2 and made it no faster; every call uses
    the same options, so the function is instantiated once. With a GPU (unmeasured) TensorFlow's defaults stay.
    """
    options = _no_rewrite_options()
    if options is None:
        return concrete(starts, state)
    context = _eager_context.context()
    previous = context.function_call_options
    context.function_call_options = options
    try:
        return concrete(starts, state)
    finally:
        context.function_call_options = previous


_NO_REWRITES: list[Any] = []


def _no_rewrite_options() -> Any:
    """Call options without Grappler rewrites when only CPUs are visible, else None (computed once)."""
    if not _NO_REWRITES:
        options = None
        if not tf.config.list_logical_devices("GPU"):
            config = _eager_context.context().config
            config.allow_soft_placement = True
            config.graph_options.rewrite_options.disable_meta_optimizer = True
            options = _eager_context.FunctionCallOptions(config_proto=config)
        _NO_REWRITES.append(options)
    return _NO_REWRITES[0]
