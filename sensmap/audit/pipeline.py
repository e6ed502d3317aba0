"""Running an audit: :func:`run_audit` — the Ray session (local or a cluster), the Ray Data pipeline (decode
tasks, then an actor pool), progress and statistics, resuming after a worker dies, then the index and
summary."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..result import json_default
from ..windows import DEFAULT_SIZES, DEFAULT_STRIDE
from .failures import AuditError, _first_line
from .folder import (
    AUDIT_JSON,
    ERROR_SUFFIX,
    INDEX_FILE,
    MAPS_DIR,
    AuditSettings,
    _atomic_write,
    _clean_temporaries,
    _done_keys,
    _folder_lock,
    _now,
    _prepare_folder,
)
from .index import rebuild_index
from .inputs import AuditItem, collect_inputs
from .networks import ModelSpec, resolve_model
from .pairs import build_pairs
from .summary import write_summary
from .worker import AuditWorker, _decode_rows

ROWS_PER_BLOCK_MAX_BLOCKS = 2000  # the work list is cut into at most this many Ray blocks

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- progress and statistics


def duration_text(seconds: float) -> str:
    """A duration for people: ``42s``, ``3m05s``, ``2h07m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass(frozen=True)
class AuditProgress:
    """Images done of this run's total, with rate (images/s since the first one finished) and time left."""

    done: int
    total: int
    skipped: int
    errors: int
    elapsed_s: float
    images_per_s: float
    eta_s: float | None

    def line(self) -> str:
        eta = "" if self.eta_s is None else f"  ETA {duration_text(self.eta_s)}"
        errors = f"  {self.errors} error{'s' if self.errors != 1 else ''}" if self.errors else ""
        return f"{self.done}/{self.total} images  {self.images_per_s:.2f} images/s{eta}{errors}"


@dataclass
class AuditStats:
    """What one :func:`run_audit` call did."""

    out_dir: str
    images: int  # images in the input
    models: list[str]
    skipped: int = 0  # images whose maps all existed
    processed: int = 0  # images handled by this run
    maps: int = 0  # .npz files written by this run
    errors: int = 0  # error records written by this run
    workers: int = 0
    cluster: str = "none (nothing to do)"
    elapsed_s: float = 0.0  # whole call, Ray start and index/summary included
    pipeline_s: float = 0.0  # from the pipeline start to the last image (actor start-up included)
    steady_images_per_s: float = 0.0  # after the first image finished
    attempts: int = 0
    failed_images: int = 0  # images with an error record in the index (this run or before)
    index_path: str | None = None
    summary: dict[str, str] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.processed / self.pipeline_s if self.pipeline_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": self.images_per_s}


# --------------------------------------------------------------------------- the Ray session


def _default_workers(gpus: float = 0.0, cluster_cpus: float | None = None) -> int:
    """One actor per GPU; without GPUs one per core up to 4 on this machine (measured: on 2 cores two
    one-thread actors map more images per second than one two-thread actor), a quarter of a cluster's CPUs."""
    if gpus >= 1:
        return int(gpus)
    if cluster_cpus is not None:
        return max(1, int(cluster_cpus) // 4)
    return max(1, min(os.cpu_count() or 1, 4))


def local_cpus(workers: int) -> int:
    """Logical CPUs for a local Ray: room for every actor and at least two decode tasks beside them.

    With only as many CPUs as actors the decode tasks could never be scheduled (a 2-core machine hung
    with ``num_cpus=2`` and 2 workers, and ran with 4).
    """
    return max(os.cpu_count() or 1, workers + 2)


@contextlib.contextmanager
def _quiet_ray_data() -> Iterator[Any]:
    """Ray Data without progress bars and INFO chatter (restored afterwards)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    saved = (context.enable_progress_bars, getattr(context, "enable_operator_progress_bars", None))
    loggers = [logging.getLogger(name) for name in ("ray.data", "ray")]
    levels = [logger.level for logger in loggers]
    context.enable_progress_bars = False
    if saved[1] is not None:
        context.enable_operator_progress_bars = False
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield context
    finally:
        context.enable_progress_bars = saved[0]
        if saved[1] is not None:
            context.enable_operator_progress_bars = saved[1]
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def _ray_session(address: str | None, workers: int | None, num_cpus: int | None) -> Iterator[str]:
    """Connect to ``address``, reuse a session the caller started, or start a local Ray (and stop it after)."""
    import ray

    if ray.is_initialized():
        yield "existing Ray session"
        return
    address = address or os.environ.get("RAY_ADDRESS") or None  # ray.init() would follow RAY_ADDRESS anyway
    common = dict(log_to_driver=False, logging_level=logging.ERROR)
    if address:
        try:
            ray.init(address=address, **common)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise AuditError(f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
        where = f"Ray cluster {address}"
    else:
        cpus = num_cpus or local_cpus(workers or _default_workers())
        ray.init(num_cpus=cpus, include_dashboard=False, **common)
        where = f"local Ray ({cpus} CPUs)"
    try:
        yield where
    finally:
        ray.shutdown()


# --------------------------------------------------------------------------- the pipeline


def _snapshot(out: Path, specs: Sequence[ModelSpec]) -> dict[str, int]:
    """``{file: mtime_ns}`` of the map files and error records of these networks."""
    files = {}
    for spec in specs:
        folder = out / MAPS_DIR / f"model={spec.name}"
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(folder):
                if not entry.name.startswith(".") and entry.name.endswith((".npz", ERROR_SUFFIX)):
                    files[f"{spec.name}/{entry.name}"] = entry.stat().st_mtime_ns
    return files


def _written(before: dict[str, int], after: dict[str, int]) -> tuple[int, int]:
    """Map files and error records that are new or rewritten between two snapshots."""
    changed = [name for name, stamp in after.items() if before.get(name) != stamp]
    return sum(n.endswith(".npz") for n in changed), sum(n.endswith(ERROR_SUFFIX) for n in changed)


def _pending(
    items: Sequence[AuditItem], specs: Sequence[ModelSpec], out: Path, retry_errors: bool
) -> list[dict[str, Any]]:
    done = [_done_keys(out / MAPS_DIR / f"model={spec.name}", not retry_errors) for spec in specs]
    rows = []
    for item in items:
        key = item.key
        todo = [k for k in range(len(specs)) if key not in done[k]]
        if todo:
            rows.append(
                {
                    "image_id": item.image_id,
                    "key": key,
                    "path": item.path,
                    "label": item.label or "",
                    "box": np.array(item.box if item.box else [np.nan] * 4, dtype=np.float64),
                    "problem": item.problem or "",
                    "todo": ",".join(str(k) for k in todo),
                }
            )
    return rows


def _rate(done: int, elapsed: float, since_first: float) -> float:
    """Images per second: after the first image once that spans ≥ 2 images and ≥ 1 s, else overall."""
    if done >= 3 and since_first >= 1.0:
        return (done - 1) / since_first
    return done / max(elapsed, 1e-9)


def _is_system_failure(exc: BaseException) -> bool:
    from ray import exceptions as ray_exceptions

    system = tuple(
        getattr(ray_exceptions, name)
        for name in ("RayActorError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OwnerDiedError")
        if hasattr(ray_exceptions, name)
    )
    return isinstance(exc, system) and "creation task" not in str(exc)  # a worker that cannot start stays so


def _actor_stage(dataset, count, specs, settings, out, workers, gpus, threads, fail_after, token):
    import ray.data

    return dataset.map_batches(
        AuditWorker,
        fn_constructor_kwargs={
            "specs": list(specs),
            "settings": settings,
            "out_dir": str(out),
            "threads": threads,
            "fail_after": fail_after,
            "run_token": str(token),
        },
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=max(1, min(workers, count))),
        num_cpus=1,
        num_gpus=1 if gpus >= 1 else 0,
        max_restarts=0,  # a dead actor fails fast; the driver resumes the pending images (retries)
    )


def _build_dataset(rows, specs, settings, out, workers, gpus, threads, fail_after, token):
    import ray.data

    grids = sorted({tuple(spec.input_size) for spec in specs})
    blocks = max(1, min(len(rows), ROWS_PER_BLOCK_MAX_BLOCKS))
    dataset = ray.data.from_items(rows, override_num_blocks=blocks)
    # Decode tasks ask for half a CPU: cheap, several run beside the actors, and their different resources keep
    # Ray Data from fusing them into the actors (decoding stays off the GPU workers).
    dataset = dataset.map_batches(
        _decode_rows, fn_kwargs={"grids": grids, "fit": settings.fit}, batch_size=4, num_cpus=0.5
    )
    with warnings.catch_warnings():
        # max_restarts has no named parameter in Ray 2.60 (ray_remote_args are deprecated from 2.64 on)
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        return _actor_stage(dataset, len(rows), specs, settings, out, workers, gpus, threads, fail_after, token)


def _run_pipeline(
    items, specs, settings, out, stats, workers, threads, address, num_cpus, progress, retries, fail_after,
    retry_errors,
) -> None:  # fmt: skip
    rows = _pending(items, specs, out, retry_errors)
    stats.skipped = len(items) - len(rows)
    if not rows:
        return
    total = len(rows)
    with _ray_session(address, workers, num_cpus) as where, _quiet_ray_data():
        import ray

        stats.cluster = where
        gpus = float(ray.cluster_resources().get("GPU", 0))
        cluster_cpus = float(ray.cluster_resources().get("CPU", 1)) if where.startswith("Ray cluster") else None
        stats.workers = count = max(1, min(int(workers or _default_workers(gpus, cluster_cpus)), total))
        if threads is None and cluster_cpus is None and gpus < 1:
            threads = max(1, (os.cpu_count() or 1) // count)
        pipeline_started = time.perf_counter()
        first_done: float | None = None
        done = errors = 0
        if progress is not None:
            progress(AuditProgress(0, total, stats.skipped, 0, 0.0, 0.0, None))
        # Workers write only while this run's token exists: once the driver gives up (a crash, Ctrl-C), a worker
        # still busy in a Ray session the caller keeps alive discards its map instead of writing behind our back.
        token = out / f".run-{uuid.uuid4().hex[:12]}"
        token.touch()
        try:
            for attempt in range(int(retries) + 1):
                stats.attempts = attempt + 1
                if attempt:
                    token.unlink()  # the last attempt's workers stop writing
                    token = out / f".run-{uuid.uuid4().hex[:12]}"
                    token.touch()
                    rows = _pending(items, specs, out, retry_errors=False)
                    if not rows:
                        break
                dataset = _build_dataset(rows, specs, settings, out, count, gpus, threads,
                                         fail_after if attempt == 0 else None, token)  # fmt: skip
                try:
                    for result in dataset.iter_rows():
                        now = time.perf_counter()
                        first_done = first_done or now
                        done += 1
                        stats.processed += 1
                        stats.maps += int(result["maps"])
                        stats.errors += int(result["errors"])
                        errors += int(result["errors"]) > 0
                        rate = _rate(done, now - pipeline_started, now - first_done)
                        stats.pipeline_s = now - pipeline_started
                        stats.steady_images_per_s = rate
                        if progress is not None:
                            eta = (total - done) / rate if rate > 0 else None
                            elapsed = now - pipeline_started
                            progress(AuditProgress(min(done, total), total, stats.skipped, errors, elapsed, rate, eta))
                    break
                except Exception as exc:  # noqa: BLE001 - Ray wraps worker failures in many types
                    if _is_system_failure(exc) and attempt < int(retries):
                        log.warning("a worker died (%s); resuming the pending images", _first_line(exc))
                        continue
                    left = len(_pending(items, specs, out, retry_errors=False))
                    raise AuditError(
                        f"{_first_line(exc)} — {total - left} of the {total} images to do are done, {left} are left. "
                        "Maps written so far are kept; run the same command again to resume."
                    ) from None
        finally:
            with contextlib.suppress(OSError):
                token.unlink()


def run_audit(
    source: str | os.PathLike,
    models: Sequence[str | ModelSpec],
    out_dir: str | os.PathLike,
    *,
    sizes: Sequence[float] = DEFAULT_SIZES,
    stride: float = DEFAULT_STRIDE,
    fill: Any = "gray",
    score: str = "probability",
    fit: str = "squash",
    target: int | str | None = None,
    batch_size: int | None = None,
    max_passes: int | None = None,
    mode: str = "exact",
    engine: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: Callable[[AuditProgress], Any] | None = None,
    summary: bool = True,
    retry_errors: bool = False,
    retries: int = 1,
    fail_after: tuple[str, int] | None = None,
) -> AuditStats:
    """Audit a folder or manifest with one or more networks; returns what this call did.

    ``models``: names or ``.keras`` paths (``NAME=SOURCE`` names the folder) or :class:`ModelSpec` from
    :func:`resolve_model`. ``target``: ``None`` (each image's top-1 class), ``"label"`` (each image's label)
    or a class index/name. ``mode`` and ``engine`` as for :func:`sensmap.sensitivity_map` (the engine never
    changes the maps, so a folder resumes with any engine). ``workers``: actors (default: one per GPU; without
    GPUs one per core up to 4 on a local Ray, a quarter of the CPUs of a cluster). ``threads``:
    TensorFlow threads per actor (default on a local CPU run: cores / workers). ``address``: a Ray cluster
    (default: a local Ray with :func:`local_cpus` logical CPUs; a Ray session the caller already started is
    reused and left running). ``progress`` is called after each image. Images with a map are skipped, and so
    are those with an error record unless ``retry_errors``. A worker that dies is retried
    ``retries`` times (a rerun of the pending images); a crash otherwise raises :class:`AuditError` after
    the index is rebuilt — rerun to resume. ``fail_after`` injects a crash (tests).
    """
    started = time.perf_counter()
    settings = AuditSettings.make(
        sizes=sizes, stride=stride, fill=fill, score=score, fit=fit, target=target, batch_size=batch_size,
        max_passes=max_passes, mode=mode, engine=engine,
    )  # fmt: skip
    if isinstance(models, (str, os.PathLike, ModelSpec)):
        models = [models]
    specs = [m if isinstance(m, ModelSpec) else resolve_model(m) for m in models]
    if not specs:
        raise ParameterError("give at least one network (--model)")
    out = Path(os.fspath(out_dir)).expanduser().resolve()
    items = collect_inputs(source, exclude=out)
    if workers is not None and int(workers) < 1:
        raise ParameterError(f"workers must be at least 1, got {workers!r}")
    out.mkdir(parents=True, exist_ok=True)
    stats = AuditStats(out_dir=str(out), images=len(items), models=[s.name for s in specs])
    with _folder_lock(out):
        state = _prepare_folder(out, settings, specs, str(Path(os.fspath(source)).expanduser().resolve()))
        _clean_temporaries(out)
        failure: BaseException | None = None
        before = _snapshot(out, specs)
        try:
            _run_pipeline(items, specs, settings, out, stats, workers, threads, address, num_cpus, progress,
                          retries, fail_after, retry_errors)  # fmt: skip
        except AuditError as exc:
            failure = exc
        finally:
            stats.elapsed_s = time.perf_counter() - started
        # The files are the truth: a crash can leave maps the driver never heard of.
        stats.maps, stats.errors = _written(before, _snapshot(out, specs))
        stats.processed = max(stats.processed, len(items) - stats.skipped - len(_pending(items, specs, out, False)))
        index = rebuild_index(out)
        build_pairs(index)
        stats.index_path = str(out / INDEX_FILE)
        errors = index.frame[index.frame["status"] == "error"]
        stats.failed_images = int(errors["image_id"].nunique())
        if summary:
            stats.summary = write_summary(index)
        stats.elapsed_s = time.perf_counter() - started
        state["last_run"] = {"finished": _now(), "complete": failure is None, **stats.as_dict()}
        _atomic_write(out / AUDIT_JSON, json.dumps(state, indent=2, default=json_default).encode("utf-8"))
    if failure is not None:
        raise failure
    return stats
