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
from .models import Network, load_model, tf
from .result import SensitivityResult, engine_used, resolve_mode_engine, validate_mode
from .scores import ScoreFunction, default_score, resolve_score, score_values, supported_views, window_support
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
    """The ``top`` most probable classes of the whole photo (probabilities 0..1, highest first; multi-label
    networks: each label's own probability). Networks without classes (embeddings, values) raise a
    :class:`ParameterError`."""
    network = _as_network(model)
    if "top-k" not in supported_views(default_score(network.output_kind)):
        raise ParameterError(f"{network.name} outputs {network.output_kind}, not classes: there is nothing to rank")
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


def prepare_incremental(model: Network | Any, sizes: Sequence[float] = DEFAULT_SIZES, *, wait: bool = False) -> Any:
    """Trace the incremental engine's functions for these cover sizes (fractions of the image side) in a
    background thread, once per process and network; returns a :class:`sensmap.incremental.WarmUp`
    (``.ready``, ``.wait(timeout)``, ``.status()``, ``.seconds``). ``wait=True`` blocks until it is ready.

    Functions do not depend on the stride, fill, photo, batch size or mode (exact or fast), only on each
    cover's size in pixels, so a warm-up for the sizes a user may pick serves every later map. While it
    runs, ``engine="auto"`` maps compute the covers not yet traced densely (and say so); ``engine=
    "incremental"`` maps wait for them. Cover sizes where the network gains nothing are not traced.
    """
    from .incremental import WarmUp

    network = _as_network(model)
    covers = [(grid.window_y, grid.window_x) for grid in window_grids(*network.input_size, sizes, DEFAULT_STRIDE)]
    warm_up = WarmUp(network, covers).start()
    if wait:
        warm_up.wait()
    return warm_up


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


class _WindowRunner:
    """Computes the outputs of any windows of one map with the chosen engine, one cover size at a time.

    ``engine``: ``"dense"`` runs every covered image through the whole network; ``"incremental"`` and
    ``"auto"`` compute a cover size incrementally (see :mod:`sensmap.incremental`) where that saves
    arithmetic, else densely, with the reason in :attr:`records`. ``"incremental"`` traces a cover size's
    function when needed and waits for another thread tracing it; ``"auto"`` never waits for another
    thread's tracing (a warm-up in progress): those covers run densely for this map.
    """

    def __init__(
        self,
        network: Network,
        pixels: np.ndarray,
        canvas: np.ndarray,
        grids: Sequence[Any],
        engine: str,
        *,
        batch_size: int,
        total: int,
        progress: ProgressCallback | None,
        cancel: CancelToken | Callable[[], bool] | None,
    ) -> None:
        self.network, self.pixels, self.canvas, self.grids, self.engine = network, pixels, canvas, grids, engine
        self.batch_size, self.total, self.progress, self.cancel = batch_size, total, progress, cancel
        self.done = 0  # forward passes run so far
        self.records: dict[int, dict[str, Any]] = {}  # grid index → how its covers ran (not for the dense engine)
        self._functions: dict[int, Callable | None] = {}
        self._model: Any = None
        self._state: Any = None
        self._failure = ""

    def run(self, level: int, local: np.ndarray) -> np.ndarray:
        """Probabilities ``(len(local), classes)`` of the windows ``local`` (indices into grid ``level``)."""
        boxes = self.grids[level].boxes[local]
        function = self._function(level)
        ran = [0]  # passes of this call so far, for a stop's message in the whole map's numbers

        def progress(done: int, total: int) -> None:
            ran[0] = done
            if self.progress is not None:
                self.progress(self.done + done, self.total)

        try:
            if function is None:
                outputs = run_occlusions(
                    self.network, self.pixels, self.canvas, boxes, batch_size=self.batch_size,
                    progress=progress, cancel=self.cancel,
                )  # fmt: skip
            else:
                plan = self._model.cover_plan((self.grids[level].window_y, self.grids[level].window_x))
                starts = tf.data.Dataset.from_tensor_slices(plan.start_array(boxes)).batch(self.batch_size)
                outputs = predict_batches(
                    self.network, _pipeline(starts), len(boxes), progress=progress, cancel=self.cancel,
                    predict=lambda batch: function(batch, self._state),
                )  # fmt: skip
        except CancelledError:
            raise CancelledError(f"cancelled after {self.done + ran[0]} of {self.total} forward passes") from None
        self.done += len(boxes)
        if level in self.records:
            self.records[level]["windows"] += len(boxes)
        return outputs

    def _function(self, level: int) -> Callable | None:
        """The cover size's incremental function, or None to run it densely (decided once per map)."""
        if self.engine == "dense":
            return None
        if level not in self._functions:
            grid = self.grids[level]
            cover = (grid.window_y, grid.window_x)
            record: dict[str, Any] = {"cover_px": [int(v) for v in cover], "windows": 0}
            function, why = None, self._analysed(lambda: self._model is not None)
            if not why:
                plan = self._model.cover_plan(cover)
                record["estimated_speedup"] = round(self._model.estimated_speedup(plan), 3)
                why = self._model.dense_why(plan) or self._analysed(lambda: self._state is not None)
                if not why:
                    function, why = self._model.function(cover, self._state, wait=self.engine == "incremental")
            record["ran"], record["why"] = ("dense", why) if function is None else ("incremental", "")
            self._functions[level], self.records[level] = function, record
        return self._functions[level]

    def _analysed(self, done: Callable[[], bool]) -> str:
        """Build what is missing: the network's incremental model, then this photo's clean activations
        (once ``done()`` says the first is there); why the covers must run densely ('' if they need not)."""
        from . import incremental

        if not done() and not self._failure and self.network.incremental_unsupported():
            self._failure = self.network.incremental_unsupported()  # e.g. ONNX networks: no Keras layers to crop
        if not done() and not self._failure:
            try:
                if self._model is None:
                    self._model = incremental.incremental_model(self.network, wait=self.engine == "incremental")
                    if self._model is None:
                        return "the network's incremental analysis is still running (warm-up): dense for now"
                else:
                    self._state = self._model.prepare(self.pixels, self.canvas)
            except SensmapError:
                raise
            except Exception as exc:  # a graph the analysis does not understand: exact numbers the dense way
                self._failure = f"incremental analysis failed ({type(exc).__name__}: {exc})"
        return self._failure

    def metadata(self, requested: str) -> dict[str, Any]:
        """``engine`` (used: dense, incremental or mixed), ``engine_requested`` and, unless dense was
        requested, ``incremental_groups`` (one record per cover size run so far) and ``engine_reason``."""
        if requested == "dense":
            return {"engine": "dense", "engine_requested": "dense"}
        groups = list(self.records.values())
        reasons = list(dict.fromkeys(group["why"] for group in groups if group["why"]))
        return {
            "engine": engine_used([group["ran"] for group in groups]),
            "engine_requested": requested,
            "engine_reason": "; ".join(reasons),
            "incremental_groups": [dict(group) for group in groups],
        }


def _coarse_to_fine(grids: Sequence[Any], indices: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``indices`` (into the concatenated windows) split per grid: ``(grid, local indices)``, largest covers first."""
    offsets = np.cumsum([0] + [grid.count for grid in grids])
    order = sorted(range(len(grids)), key=lambda i: -grids[i].window_y * grids[i].window_x)
    parts = []
    for level in order:
        inside = indices[(indices >= offsets[level]) & (indices < offsets[level + 1])]
        if inside.size:
            parts.append((level, inside - offsets[level]))
    return parts


class _EveryWindow:
    """The exact schedule: every window, in one go (the interface of :class:`sensmap.fast.FastPlan`)."""

    def __init__(self, total: int) -> None:
        self.budget = total
        self._given = False

    def next_windows(self) -> np.ndarray | None:
        if self._given:
            return None
        self._given = True
        return np.arange(self.budget)

    def record(self, indices: np.ndarray, scores: np.ndarray) -> None:
        pass


def fast_outputs(plan: Any, reference: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """Every window's outputs of a fast plan: measured rows as they are, the others ``reference − predicted
    support`` per class (predictions can leave 0..1 slightly, and are chosen for the target class)."""
    measured = plan.measured
    if measured.all():
        return outputs
    support = plan.fill(reference[None, :].astype(np.float64) - outputs.astype(np.float64))
    return np.where(measured[:, None], outputs, reference[None, :] - support).astype(np.float32)


def sensitivity_map(
    model: Network | Any,
    image: LoadedImage | Any,
    *,
    sizes: Sequence[float] = DEFAULT_SIZES,
    stride: float = DEFAULT_STRIDE,
    fill: Fill = DEFAULT_FILL,
    target: int | str | None = None,
    score: str | ScoreFunction | None = None,
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | Callable[[], bool] | None = None,
    fit: str = "squash",
    max_passes: int | None = None,
    mode: str = "exact",
    engine: str | None = None,
    on_partial: Callable[[SensitivityResult], Any] | None = None,
) -> SensitivityResult:
    """Occlusion sensitivity map of ``image`` for one class of ``model``.

    ``sizes`` are cover sizes as fractions of the image side; ``stride`` a fraction of the cover
    side; ``fill`` one of gray/mean/black/white/blur or an RGB triple (raw 0..255 pixels, applied
    before preprocessing); ``target`` a class index or name (default: the top-1 class; scores
    without a class ignore it); ``score`` one of :data:`sensmap.scores.SCORE_KINDS` — ``probability``,
    ``log-odds``, ``logit``, ``sigmoid``, ``similarity`` — or a function mapping the raw outputs
    ``(n, k)`` to one number per image (default: the network's, see
    :func:`sensmap.scores.default_score`). Support > 0: covering the area lowers the score.
    ``progress(done, total)`` is called after each batch; ``cancel`` (an Event-like object or a
    callable) stops the run with :class:`CancelledError`, whose ``partial`` holds the last partial
    result (below; None if no cover size had finished). ``max_passes`` (default
    ``SENSMAP_MAX_PASSES`` or 20 000) refuses runaway settings before any work.

    Two independent choices. ``mode``, which windows are measured: ``"exact"`` (every one) or
    ``"fast"`` (approximate, 3× fewer passes — 2× when the finest cover is under 12 px: every window
    of the coarser sizes, the finest size only where it matters, the rest predicted — see
    :mod:`sensmap.fast`; ``result.approximate`` and ``metadata["approximate"]`` are true).
    ``engine``, how each measured window is computed: ``"dense"`` (default: the covered image
    through the whole network), ``"incremental"`` (same numbers, recomputing only the part of each
    activation a cover can change — see :mod:`sensmap.incremental`; a cover size whose function is
    not traced yet is traced first, seconds, once per process) or ``"auto"`` (incremental where the
    network gains and the function is traced or can be traced now, dense where it cannot gain or
    while a warm-up (:func:`prepare_incremental`) is still tracing it). Cover sizes that run densely
    under ``incremental``/``auto`` say why in ``metadata["incremental_groups"]``; ``metadata["engine"]``
    holds the engine used (dense, incremental or mixed), ``metadata["engine_requested"]`` the one
    asked for. ``mode="incremental"`` is ``mode="exact", engine="incremental"``.

    ``on_partial(result)`` is called with a valid :class:`SensitivityResult` after each cover size
    (largest covers first), holding the sizes finished so far, and in fast mode after each adaptive
    round (every size, predicted where not measured yet); these are marked ``result.partial``. Its
    last call gets the returned result itself (not partial).
    """
    started = time.perf_counter()
    mode, engine = resolve_mode_engine(mode, engine)
    network = _as_network(model)
    photo = _as_image(image)
    score = resolve_score(default_score(network.output_kind) if score is None else score)
    network = network.for_score(score)  # the outputs this score reads: probabilities, or raw outputs
    score_kind = score.kind
    fill_value = normalize_fill(fill)
    height, width = network.input_size
    grids = window_grids(height, width, sizes, stride)
    total = sum(grid.count for grid in grids)
    budget = max_passes_from_env() if max_passes is None else int(max_passes)
    if (total if mode == "exact" else plan_passes(network, sizes, stride, mode)) > budget:
        cheaper = cheaper_stride_for_budget(height, width, sizes, stride, budget)
        advice = f" stride {cheaper:g} fits" if cheaper else " drop the smallest cover size"
        raise BudgetError(
            f"these settings need {total:,} forward passes, more than the budget of {budget:,}; "
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
    target_index = network.class_index(target) if target is not None and "classes" in supported_views(score) else None
    target_index = int(np.argmax(reference)) if target_index is None else target_index
    if mode == "fast":
        from .fast import FastPlan, default_speedup

        schedule: Any = FastPlan(grids, speedup=default_speedup(grids))
    else:
        schedule = _EveryWindow(total)
    runner = _WindowRunner(
        network, pixels, canvas, grids, engine, batch_size=batch_size, total=schedule.budget,
        progress=progress, cancel=cancel,
    )  # fmt: skip
    offsets = np.cumsum([0] + [grid.count for grid in grids])
    outputs = np.full((total, network.num_classes), np.nan, dtype=np.float32)
    measured = np.zeros(total, dtype=bool)

    def result(stage: tuple[str, Any], partial: bool) -> SensitivityResult:
        """The map of a finished stage: ``("sizes", finished grids)`` or ``("round", measured mask)``."""
        kind, value = stage
        finished = time.perf_counter()
        if kind == "sizes":
            rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in value])
            stage_grids, stage_outputs, stage_measured = [grids[i] for i in value], outputs[rows], None
        else:
            stage_grids, stage_outputs, stage_measured = grids, fast_outputs(schedule, reference, outputs), value
        metadata: dict[str, Any] = {
            "mode": mode,
            "approximate": stage_measured is not None and not stage_measured.all(),
            **runner.metadata(engine),
        }
        if mode == "fast":
            mask = np.ones(len(stage_outputs), bool) if stage_measured is None else stage_measured
            metadata["fast"] = _fast_metadata(schedule.speedup, stage_grids, mask)
            metadata["refined_fraction"] = metadata["fast"]["refined_fraction"]
        if partial:
            metadata["partial"] = True
        passes = len(stage_outputs) if stage_measured is None else int(stage_measured.sum())
        return SensitivityResult(
            model_name=network.name,
            labels=network.labels,
            input_size=network.input_size,
            photo_size=(photo.height, photo.width),
            fit=fit,
            sizes=tuple(grid.size for grid in stage_grids),
            stride=float(stride),
            fill=fill_label(fill_value),
            score_kind=score_kind,
            target=target_index,
            reference_probabilities=reference,
            outputs=stage_outputs,
            measured=stage_measured,
            custom_scores=score_values(np.vstack([reference, stage_outputs]), target_index, score)
            if score.custom
            else None,
            metadata={
                **metadata,
                **provenance(network, photo),
                "batch_size": batch_size,
                "timings_s": {
                    "prepare": prepared - started,
                    "forward": finished - prepared,
                    "total": finished - started,
                },
                "passes_per_s": passes / max(finished - prepared, 1e-9),
            },
        )

    stage: tuple[str, Any] | None = None  # the last finished stage
    shown = stage  # the last stage handed to on_partial
    try:
        while (indices := schedule.next_windows()) is not None:
            for level, local in _coarse_to_fine(grids, indices):
                if on_partial is not None and stage is not shown:
                    on_partial(result(stage, partial=True))  # only now: a stage followed by none is the result
                    shown = stage
                outputs[offsets[level] + local] = runner.run(level, local)
                measured[offsets[level] + local] = True
                finished = _finished_sizes(measured, offsets)
                if finished is not None:
                    stage = ("sizes", finished)
            schedule.record(indices, window_support(outputs[indices], reference, target_index, score))
            if _finished_sizes(measured, offsets) is None:  # a fast round left sizes partly measured
                stage = ("round", measured.copy())
    except CancelledError as exc:
        exc.partial = None if stage is None else result(stage, partial=True)  # copies of the finished rows
        outputs = measured = None  # noqa: F841 - the kept exception's frame must not hold the whole map's outputs
        raise
    final = result(stage, partial=False)
    if on_partial is not None:
        on_partial(final)
    return final


def _finished_sizes(measured: np.ndarray, offsets: np.ndarray) -> list[int] | None:
    """The grids whose windows are all measured, when every other grid is untouched; else None."""
    finished = []
    for i in range(len(offsets) - 1):
        part = measured[offsets[i] : offsets[i + 1]]
        if part.all():
            finished.append(i)
        elif part.any():
            return None
    return finished


def _fast_metadata(speedup: float, grids: Sequence[Any], measured: np.ndarray) -> dict[str, Any]:
    """Fast mode's numbers: pass ratio asked for, and the share of windows measured, overall and per size."""
    offsets = np.cumsum([0] + [grid.count for grid in grids])
    per_size = [float(measured[offsets[i] : offsets[i + 1]].mean()) for i in range(len(grids))]
    return {
        "speedup_target": speedup,
        "measured_fraction": float(measured.mean()),
        "measured_fraction_per_size": per_size,
        "refined_fraction": min(per_size),
    }


def _offset_progress(progress: ProgressCallback | None, offset: int, total: int) -> ProgressCallback | None:
    """A progress callback for one part of a run: ``progress(offset + done, total)``."""
    if progress is None:
        return None
    return lambda done, _part_total: progress(offset + done, total)


def _cancelled(cancel: CancelToken | Callable[[], bool] | None) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def provenance(network: Network, photo: LoadedImage) -> dict[str, Any]:
    """Metadata of any map: the network's settings and weights, the photo, library versions and the device."""
    return {
        "softmax_applied": network.softmax_applied,
        "sigmoid_applied": network.sigmoid_applied,
        "output_kind": network.output_kind,
        "network_notes": list(network.notes),
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


def __getattr__(name: str) -> Any:
    """``faithfulness`` and ``ordered_batches`` moved to :mod:`sensmap.faithful` (which imports this module); they
    are still handed on here so ``sensmap.engine.faithfulness`` keeps working."""
    if name in ("faithfulness", "ordered_batches"):
        from . import faithful

        return getattr(faithful, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
