"""TensorFlow set-up shared by the processes that compute maps for others: the audit's Ray actors
(:class:`sensmap.audit.worker.AuditWorker`) and the dashboard's map actors
(:class:`sensmap.serving.remote.actor.MapActor`).

Call :func:`configure_tensorflow` once per process, before any network is loaded: TensorFlow accepts thread
counts only before its runtime starts.
"""

from __future__ import annotations

import contextlib
import os


def configure_tensorflow(threads: int | None = None) -> str:
    """Quiet TensorFlow's C++ logs, cap its threads and let it grow GPU memory; the device it computes on.

    ``threads``: intra-op threads (the CPU cores this process may use; inter-op gets at most 2); None or 0 keeps
    TensorFlow's default (every core). Each GPU gets memory growth, so several processes can share one. Returns
    ``"GPU"`` when TensorFlow sees a GPU, else ``"CPU"``. Safe to call again (settings that come too late, after
    the runtime started, are skipped).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if threads:
        with contextlib.suppress(RuntimeError):  # only possible before TensorFlow's runtime starts
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, int(threads))))
    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError, ValueError):
            tf.config.experimental.set_memory_growth(gpu, True)
    return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
