"""The occlusion engine: ``tf.data`` batches of covered images through one compiled model call.

Occluded inputs are never all in memory: a ``tf.data`` pipeline turns batches of window
boxes into batches of covered images (``where(inside_window, fill_canvas, image)``), and the
network's compiled function (preprocessing + model + optional softmax) scores them.
Memory is bounded by one batch whatever the number of windows; only the class-probability
vectors of each occluded input are kept.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from . import __version__
from .errors import BudgetError, CancelledError, ParameterError, SensmapError
from .fills import DEFAULT_FILL, Fill, fill_canvas, fill_label, normalize_fill
from .images import LoadedImage, fit_image, load_image
from .metrics import curve_auc, faithfulness_passes, random_rank, step_counts, support_rank
from .models import Network, load_model, tf
from .result import SensitivityResult, class_scores, validate_mode, validate_score_kind
from .windows import DEFAULT_SIZES, DEFAULT_STRIDE, cheaper_stride_for_budget, count_passes, window_grids

#: Largest map (forward passes) computed unless the caller raises it; ``SENSMAP_MAX_PASSES`` overrides.
DEFAULT_MAX_PASSES = 20_000
MAX_BATCH_SIZE = 64

ProgressCallback = Callable[[int, int], Any]


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class Prediction:
    """One class of a classification: index, name and probability (0..1)."""

    index: int
    name: str
    probability: float


def max_passes_from_env() -> int:
    """The forward-pass budget: ``SENSMAP_MAX_PASSES`` or :data:`DEFAULT_MAX_PASSES`."""
    value = os.environ.get("SENSMAP_MAX_PASSES", "").strip()
    try:
        return int(value) if value else DEFAULT_MAX_PASSES
    except ValueError:
        raise ParameterError(f"SENSMAP_MAX_PASSES must be a whole number, got {value!r}") from None


def auto_batch_size(height: int, width: int) -> int:
    """Batch size for an ``height × width`` input: 64 at 224×224 and below, halved as pixels double."""
    scale = (224 * 224) / float(height * width)
    return int(max(1, min(MAX_BATCH_SIZE, 2 ** math.floor(math.log2(MAX_BATCH_SIZE * scale)))))


def _as_network(model: Network | Any) -> Network:
    return model if isinstance(model, Network) else load_model(model)


def _as_image(image: LoadedImage | Any) -> LoadedImage:
    return image if isinstance(image, LoadedImage) else load_image(image)


def classify(model: Network | Any, image: LoadedImage | Any, top: int = 5, fit: str = "squash") -> list[Prediction]:
    """The ``top`` most probable classes of the whole photo (probabilities 0..1, highest first)."""
    network = _as_network(model)
    photo = _as_image(image)
    probabilities = network.predict(fit_image(photo, network.input_size, fit))[0]
    order = np.argsort(-probabilities, kind="stable")[: max(1, int(top))]
    return [Prediction(int(i), network.labels[i], float(probabilities[i])) for i in order]


def plan_passes(
    model: Network, sizes: Sequence[float] = DEFAULT_SIZES, stride: float = DEFAULT_STRIDE, mode: str = "exact"
) -> int:
    """Forward passes a map with these settings needs on this network (reference pass not counted).

    Exact and incremental maps run one pass per window; fast maps the budget of their plan.
    """
    if validate_mode(mode) == "fast":
        from .fast import FastPlan, default_speedup

        grids = window_grids(*model.input_size, sizes, stride)
        return FastPlan(grids, speedup=default_speedup(grids)).budget
    return count_passes(*model.input_size, sizes, stride)


def _pipeline(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Prefetch one batch ahead, with tf.data's default rewrites and autotuning off.

    Those stall iterator creation by ~2.5 s at random on small CPUs (measured: every other map took
    twice as long); the pipelines here are already minimal.
    """
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.autotune.enabled = False
    options.deterministic = True
    return dataset.prefetch(1).with_options(options)


def occlusion_batches(pixels: np.ndarray, canvas: np.ndarray, boxes: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """A dataset of ``(batch, H, W, 3)`` float32 covered images, one per box, in box order."""
    height, width = pixels.shape[:2]
    image = tf.constant(pixels, tf.float32)
    fill = tf.constant(canvas, tf.float32)
    rows = tf.range(height, dtype=tf.int32)[None, :, None]
    cols = tf.range(width, dtype=tf.int32)[None, None, :]

    def cover(batch_boxes: tf.Tensor) -> tf.Tensor:
        y0, x0, y1, x1 = (batch_boxes[:, i, None, None] for i in range(4))
        inside = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
        return tf.where(inside[..., None], fill, image)

    return _pipeline(tf.data.Dataset.from_tensor_slices(tf.constant(boxes, tf.int32)).batch(batch_size).map(cover))


def ordered_batches(
    base: np.ndarray, replacement: np.ndarray, rank: np.ndarray, counts: np.ndarray, batch_size: int
) -> tf.data.Dataset:
    """Images with the ``count`` first-ranked pixels taken from ``replacement``, the rest from ``base``.

    ``rank`` is an ``(H, W)`` int permutation of ``0..H·W−1`` (0 = first); one image per entry of
    ``counts``. Deletion curves replace the best-supported pixels by the fill; insertion curves
    restore them into a blurred photo.
    """
    base_t = tf.constant(base, tf.float32)
    replacement_t = tf.constant(replacement, tf.float32)
    rank_t = tf.constant(rank, tf.int32)[None, :, :, None]

    def reveal(batch_counts: tf.Tensor) -> tf.Tensor:
        return tf.where(rank_t < batch_counts[:, None, None, None], replacement_t, base_t)

    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(counts, tf.int32)).batch(batch_size).map(reveal)
    return _pipeline(dataset)


def predict_batches(
    network: Network,
    batches: tf.data.Dataset,
    total: int,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | Callable[[], bool] | None = None,
    predict: Callable[[Any], tf.Tensor] | None = None,
) -> np.ndarray:
    """Run every batch through the network's compiled call: probabilities ``(total, classes)``.

    ``predict`` replaces the compiled call (the incremental engine feeds cover positions instead of
    covered images).

    A stopped run (``cancel``, or any exception raised by ``progress``, such as Streamlit's stop
    when a setting changes) drops its ``tf.data`` iterator, its current batch and its partial outputs
    before the exception leaves, even when the caller keeps the exception and so this frame.
    """
    predict = network.compiled_predict if predict is None else predict
    outputs = np.empty((total, network.num_classes), dtype=np.float32)
    done = 0
    iterator = batch = scores = None
    try:
        if progress is not None:
            progress(0, total)
        iterator = iter(batches)
        for batch in iterator:
            if _cancelled(cancel):
                raise CancelledError(f"cancelled after {done} of {total} forward passes")
            scores = predict(batch).numpy()
            outputs[done : done + len(scores)] = scores
            done += len(scores)
            if progress is not None:
                progress(done, total)
    except BaseException:
        iterator = batch = scores = outputs = None  # noqa: F841 - released now, not with the traceback
        raise
    return outputs


def run_occlusions(
    network: Network,
    pixels: np.ndarray,
    canvas: np.ndarray,
    boxes: np.ndarray,
    *,
    batch_size: int,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | Callable[[], bool] | None = None,
) -> np.ndarray:
    """Probabilities ``(len(boxes), classes)`` of the image with each box covered by the canvas."""
    batches = occlusion_batches(pixels, canvas, boxes, batch_size)
    return predict_batches(network, batches, len(boxes), progress=progress, cancel=cancel)


def run_incremental(
    network: Network,
    pixels: np.ndarray,
    canvas: np.ndarray,
    boxes: np.ndarray,
    *,
    batch_size: int,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | Callable[[], bool] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Same probabilities as :func:`run_occlusions`, computing only what each cover changes.

    Covers are grouped by size; each group runs incrementally (see :mod:`sensmap.incremental`)
    when that saves arithmetic, else densely. Returns the outputs and one record per group
    (cover size in pixels, windows, estimated arithmetic speed-up, how it ran and why).
    """
    from . import incremental

    try:
        engine = incremental.incremental_model(network)
        state = engine.prepare(pixels, canvas)
    except SensmapError:
        raise
    except Exception as exc:  # a graph the analysis does not understand: exact numbers the dense way
        engine, state, failure = None, None, f"incremental analysis failed ({type(exc).__name__}: {exc})"
    outputs = np.empty((len(boxes), network.num_classes), dtype=np.float32)
    groups: list[dict[str, Any]] = []
    done = 0

    for indices in incremental.group_by_size(boxes):
        group_boxes = boxes[indices]
        record: dict[str, Any] = {
            "cover_px": [int(v) for v in group_boxes[0, 2:] - group_boxes[0, :2]],
            "windows": len(indices),
        }
        function = None
        if engine is not None:
            plan = engine.plan(group_boxes)
            gain = engine.estimated_speedup(plan)
            record["estimated_speedup"] = round(gain, 3)
            if engine.input_id in plan.dense or gain < incremental.MIN_USEFUL_SPEEDUP:
                failure = engine.dense_reason() or "the covers are too large to save work"
            else:
                function, failure = _traced(engine, plan, state)
        if function is None:
            record["ran"], record["why"] = "dense", failure
            group_outputs = run_occlusions(
                network, pixels, canvas, group_boxes, batch_size=batch_size,
                progress=_offset_progress(progress, done, len(boxes)), cancel=cancel,
            )  # fmt: skip
        else:
            record["ran"] = "incremental"
            starts = tf.data.Dataset.from_tensor_slices(plan.start_array()).batch(batch_size)
            group_outputs = predict_batches(
                network,
                _pipeline(starts),
                len(indices),
                progress=_offset_progress(progress, done, len(boxes)),
                cancel=cancel,
                predict=lambda batch, function=function: function(batch, state),
            )
        outputs[indices] = group_outputs
        done += len(indices)
        groups.append(record)
    return outputs, groups


def _traced(engine: Any, plan: Any, state: dict) -> tuple[Callable | None, str]:
    """The plan's compiled incremental function, traced now; ``(None, why)`` if tracing fails."""
    function = engine.function_for(plan)
    try:
        function.get_concrete_function(tf.TensorSpec([None, len(plan.columns), 2], tf.int32), state)
    except SensmapError:
        raise
    except Exception as exc:
        return None, f"incremental tracing failed ({type(exc).__name__}: {str(exc)[:200]})"
    return function, ""


def run_fast(
    network: Network,
    pixels: np.ndarray,
    canvas: np.ndarray,
    grids: Sequence[Any],
    reference: np.ndarray,
    target: int,
    score_kind: str,
    *,
    batch_size: int,
    speedup: float | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | Callable[[], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Fast-mode outputs: measure the windows :class:`sensmap.fast.FastPlan` asks for, predict the rest.

    Returns ``(outputs (windows, classes), measured (windows,) bool, metadata)``. Measured rows are
    real probabilities; the others are ``reference − predicted support`` per class (predictions can
    leave 0..1 slightly, and are chosen for the target class: other classes are less accurate).
    ``speedup`` (exact passes over fast passes) defaults to :func:`sensmap.fast.default_speedup`.
    """
    from .fast import FastPlan, default_speedup

    speedup = default_speedup(grids) if speedup is None else float(speedup)
    plan = FastPlan(grids, speedup=speedup)
    boxes = np.concatenate([grid.boxes for grid in grids])
    outputs = np.full((len(boxes), network.num_classes), np.nan, dtype=np.float32)
    reference_score = class_scores(reference, target, score_kind)
    done = 0
    while (indices := plan.next_windows()) is not None:
        batch_outputs = run_occlusions(
            network, pixels, canvas, boxes[indices], batch_size=batch_size,
            progress=_offset_progress(progress, done, plan.budget), cancel=cancel,
        )  # fmt: skip
        outputs[indices] = batch_outputs
        plan.record(indices, reference_score - class_scores(batch_outputs, target, score_kind))
        done += len(indices)
    measured = plan.measured
    if not measured.all():
        support = plan.fill(reference[None, :].astype(np.float64) - outputs.astype(np.float64))
        outputs = np.where(measured[:, None], outputs, reference[None, :] - support).astype(np.float32)
    sizes_measured = [float(measured[o : o + g.count].mean()) for o, g in zip(_offsets(grids), grids, strict=True)]
    metadata = {
        "speedup_target": speedup,
        "measured_fraction": float(measured.mean()),
        "measured_fraction_per_size": sizes_measured,
        "refined_fraction": min(sizes_measured),
    }
    return outputs, measured, metadata


def _offset_progress(progress: ProgressCallback | None, offset: int, total: int) -> ProgressCallback | None:
    """A progress callback for one part of a run: ``progress(offset + done, total)``."""
    if progress is None:
        return None
    return lambda done, _part_total: progress(offset + done, total)


def _offsets(grids: Sequence[Any]) -> list[int]:
    return [int(v) for v in np.cumsum([0] + [grid.count for grid in grids])[:-1]]


def _cancelled(cancel: CancelToken | Callable[[], bool] | None) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def sensitivity_map(
    model: Network | Any,
    image: LoadedImage | Any,
    *,
    sizes: Sequence[float] = DEFAULT_SIZES,
    stride: float = DEFAULT_STRIDE,
    fill: Fill = DEFAULT_FILL,
    target: int | str | None = None,
    score: str = "probability",
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | Callable[[], bool] | None = None,
    fit: str = "squash",
    max_passes: int | None = None,
    mode: str = "exact",
) -> SensitivityResult:
    """Occlusion sensitivity map of ``image`` for one class of ``model``.

    ``sizes`` are cover sizes as fractions of the image side; ``stride`` a fraction of the cover
    side; ``fill`` one of gray/mean/black/white/blur or an RGB triple (raw 0..255 pixels, applied
    before preprocessing); ``target`` a class index or name (default: the top-1 class);
    ``score`` ``"probability"`` or ``"log-odds"``. Support > 0: covering the area lowers the
    score. ``progress(done, total)`` is called after each batch; ``cancel`` (an Event-like
    object or a callable) stops the run with :class:`CancelledError`. ``max_passes`` (default
    ``SENSMAP_MAX_PASSES`` or 20 000) refuses runaway settings before any work.

    ``mode``: ``"exact"`` (every cover, dense forward passes); ``"incremental"`` (same numbers,
    recomputing only the part of each activation a cover can change — see
    :mod:`sensmap.incremental`; the first map per network and settings traces its functions);
    ``"fast"`` (approximate, 3× fewer passes — 2× when the finest cover is under 12 px: every
    window of the coarser sizes, the finest size only where it matters, the rest predicted — see
    :mod:`sensmap.fast`; ``result.approximate`` and ``metadata["approximate"]`` are true).
    """
    started = time.perf_counter()
    mode = validate_mode(mode)
    network = _as_network(model)
    photo = _as_image(image)
    score_kind = validate_score_kind(score)
    fill_value = normalize_fill(fill)
    height, width = network.input_size
    grids = window_grids(height, width, sizes, stride)
    boxes = np.concatenate([grid.boxes for grid in grids])
    budget = max_passes_from_env() if max_passes is None else int(max_passes)
    if (len(boxes) if mode != "fast" else plan_passes(network, sizes, stride, mode)) > budget:
        cheaper = cheaper_stride_for_budget(height, width, sizes, stride, budget)
        advice = f" stride {cheaper:g} fits" if cheaper else " drop the smallest cover size"
        raise BudgetError(
            f"these settings need {len(boxes):,} forward passes, more than the budget of {budget:,}; "
            f"use larger cover sizes or a larger stride ({advice})"
        )
    if batch_size is None:
        batch_size = auto_batch_size(height, width)
    elif isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ParameterError(f"batch size must be a whole number ≥ 1, got {batch_size!r}")
    batch_size = int(batch_size)

    pixels = fit_image(photo, network.input_size, fit)
    canvas = fill_canvas(pixels, fill_value)
    prepared = time.perf_counter()
    reference = network.predict(pixels)[0]
    target_index = int(np.argmax(reference)) if target is None else network.class_index(target)
    mode_metadata: dict[str, Any] = {}
    measured = None
    if mode == "fast":
        outputs, measured, fast_metadata = run_fast(
            network, pixels, canvas, grids, reference, target_index, score_kind,
            batch_size=batch_size, progress=progress, cancel=cancel,
        )  # fmt: skip
        mode_metadata["fast"] = fast_metadata
        mode_metadata["refined_fraction"] = fast_metadata["refined_fraction"]
    elif mode == "incremental":
        outputs, groups = run_incremental(
            network, pixels, canvas, boxes, batch_size=batch_size, progress=progress, cancel=cancel
        )
        mode_metadata["incremental_groups"] = groups
    else:
        outputs = run_occlusions(
            network, pixels, canvas, boxes, batch_size=batch_size, progress=progress, cancel=cancel
        )
    finished = time.perf_counter()
    return SensitivityResult(
        model_name=network.name,
        labels=network.labels,
        input_size=network.input_size,
        photo_size=(photo.height, photo.width),
        fit=fit,
        sizes=tuple(grid.size for grid in grids),
        stride=float(stride),
        fill=fill_label(fill_value),
        score_kind=score_kind,
        target=target_index,
        reference_probabilities=reference,
        outputs=outputs,
        measured=measured,
        metadata={
            "mode": mode,
            "approximate": measured is not None and not measured.all(),
            **mode_metadata,
            "softmax_applied": network.softmax_applied,
            "preprocess": network.preprocess_name,
            "weights": network.weights,
            "model_source": network.source,
            "photo": {"source": photo.source, "sha256": photo.sha256, "notes": list(photo.notes)},
            "batch_size": batch_size,
            "timings_s": {
                "prepare": prepared - started,
                "forward": finished - prepared,
                "total": finished - started,
            },
            "passes_per_s": (len(boxes) if measured is None else int(measured.sum())) / max(finished - prepared, 1e-9),
            "versions": versions(),
            "device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU",
        },
    )


def faithfulness(
    model: Network | Any,
    image: LoadedImage | Any,
    result: SensitivityResult,
    *,
    steps: int = 20,
    random_orders: int = 3,
    seed: int = 0,
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | Callable[[], bool] | None = None,
    block: int | None = None,
) -> dict[str, Any]:
    """Deletion and insertion curves of a map (RISE, Petsiuk et al. 2018), against random orders.

    Deletion: the photo's pixels are replaced by the map's fill in order of decreasing support, in
    ``steps`` equal steps; a faithful map makes the target probability fall fast (low AUC). Insertion:
    starting from the blurred photo, the original pixels come back in the same order; a faithful
    map makes it rise fast (high AUC). Baselines: ``random_orders`` seeded random orders of patches as
    large as the map's finest detail (``result.detail_px``: its finest cover, RISE mask cell or Grad-CAM
    feature cell), averaged. ``block`` (network-grid pixels, ≥ 1) sets that patch side instead: give maps of several
    methods the same ``block`` (with the same seed, fill and steps they then share one random baseline) to compare
    their AUCs fairly. Every method's result works (Grad-CAM and RISE delete with their ``fill``).
    Curves hold the target's probability (0..1) at pixel fractions 0, 1/steps, …, 1; AUCs are the
    trapezoid areas over the fraction, so they lie in [0, 1]. The numbers are also stored in
    ``result.metadata["faithfulness"]`` (and so in its ``.npz``; ``"block"`` records the patch side). All passes run
    through the same compiled call as the map: ``2 · (steps + 1) · (1 + random_orders)`` of them.
    """
    network = _as_network(model)
    photo = _as_image(image)
    if network.input_size != result.input_size:
        raise ParameterError(f"the map was made on a {result.input_size} grid, this network takes {network.input_size}")
    if int(random_orders) < 1:
        raise ParameterError(f"random_orders must be at least 1, got {random_orders!r}")
    height, width = network.input_size
    pixels = fit_image(photo, network.input_size, result.fit)
    deleted = fill_canvas(pixels, result.fill)
    blurred = fill_canvas(pixels, "blur")
    counts = step_counts(height * width, steps)
    if block is None:
        block = result.detail_px  # the finest cover (occlusion), mask cell (RISE) or feature cell (Grad-CAM)
    elif isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ParameterError(f"the random orders' block must be a whole number of pixels ≥ 1, got {block!r}")
    block = int(block)
    ranks = [support_rank(result.support)]
    ranks += [random_rank((height, width), seed + i, block) for i in range(random_orders)]
    batch_size = auto_batch_size(height, width) if batch_size is None else int(batch_size)
    total = faithfulness_passes(steps, random_orders)
    done_before = 0

    def curves(base: np.ndarray, replacement: np.ndarray) -> np.ndarray:
        nonlocal done_before
        out = []
        for rank in ranks:
            offset = done_before

            def report(done: int, _total: int, offset: int = offset) -> None:
                if progress is not None:
                    progress(offset + done, total)

            batches = ordered_batches(base, replacement, rank, counts, batch_size)
            probabilities = predict_batches(network, batches, len(counts), progress=report, cancel=cancel)
            out.append(probabilities[:, result.target].astype(np.float64))
            done_before += len(counts)
        return np.stack(out)

    deletion = curves(pixels, deleted)
    insertion = curves(blurred, pixels)
    numbers = {
        "steps": int(steps),
        "random_orders": int(random_orders),
        "seed": int(seed),
        "block": block,
        "fractions": (counts / (height * width)).tolist(),
        "deletion_curve": deletion[0].tolist(),
        "insertion_curve": insertion[0].tolist(),
        "random_deletion_curve": deletion[1:].mean(axis=0).tolist(),
        "random_insertion_curve": insertion[1:].mean(axis=0).tolist(),
        "deletion_auc": curve_auc(deletion[0]),
        "insertion_auc": curve_auc(insertion[0]),
        "random_deletion_auc": float(np.mean([curve_auc(c) for c in deletion[1:]])),
        "random_insertion_auc": float(np.mean([curve_auc(c) for c in insertion[1:]])),
        "passes": total,
    }
    result.metadata["faithfulness"] = numbers
    return numbers


def provenance(network: Network, photo: LoadedImage) -> dict[str, Any]:
    """Metadata of any map: the network's settings and weights, the photo, library versions and the device."""
    return {
        "softmax_applied": network.softmax_applied,
        "preprocess": network.preprocess_name,
        "weights": network.weights,
        "model_source": network.source,
        "photo": {"source": photo.source, "sha256": photo.sha256, "notes": list(photo.notes)},
        "versions": versions(),
        "device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU",
    }


def versions() -> dict[str, str]:
    """Versions of sensmap and the libraries that produced a result."""
    import keras

    return {
        "sensmap": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
