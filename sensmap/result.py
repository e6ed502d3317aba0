"""Sensitivity results: arrays plus metadata, derived maps, and ``.npz`` storage — numpy only.

Sign convention: **support > 0** means covering the area lowers the class score (the area
supports the class); support < 0 means covering it raises the score (the area inhibits it).
With ``score_kind="probability"`` support is a difference of probabilities (−1..1; ×100 for
percentage points); with ``"log-odds"`` a difference of ``log(p / (1 − p))``; the other kinds
(``logit``, ``sigmoid``, ``similarity``, ``custom:<name>``) are described in :mod:`sensmap.scores`.

A result records the :data:`METHODS` entry that made it. Occlusion maps are built here from the
kept output of every covered window. Per-pixel methods (:mod:`sensmap.methods`: Grad-CAM, RISE)
hand over their map on the network grid (``pixel_map``) and keep no window outputs. RISE maps are
in the same units as occlusion maps (expected score change). Grad-CAM maps are relative: 0..1,
where 1 is the map's strongest point (:data:`GRADCAM_UNIT`). :attr:`SensitivityResult.display_unit`
is what views, colour bars and reports should read.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ParameterError, SensmapError
from .scores import (  # noqa: F401 - SCORE_KINDS and LOG_ODDS_EPSILON are part of this module's API
    LOG_ODDS_EPSILON,
    SCORE_KINDS,
    describe,
    is_custom,
    output_activation,
    supported_views,
    validate_score_kind,
    view_note,
)
from .scores import score_values as class_scores
from .scores import unit as score_unit
from .scores import window_support as score_support
from .windows import WindowGrid, window_grids

FORMAT_VERSION = 1


#: Map methods: occlusion (windows covered in turn; sensmap.engine), Grad-CAM and RISE (sensmap.methods).
METHODS: tuple[str, ...] = ("occlusion", "gradcam", "rise")
METHOD_LABELS: dict[str, str] = {"occlusion": "occlusion", "gradcam": "Grad-CAM", "rise": "RISE"}
#: The unit of Grad-CAM maps: ReLU of the gradient-weighted feature map, divided by its maximum (0..1).
GRADCAM_UNIT = "Grad-CAM (relative, max-normalised)"


def validate_method(method: str) -> str:
    """``method`` as one of :data:`METHODS` (``Grad-CAM``, ``grad_cam``… accepted), else a :class:`ParameterError`."""
    value = str(method).strip().lower().replace("-", "").replace("_", "")
    if value not in METHODS:
        raise ParameterError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    return value


#: Which windows a map measures (sensmap.engine.sensitivity_map): exact (all of them) or fast (an adaptive
#: subset, the rest predicted: approximate). "incremental" is accepted as exact measured by the incremental engine.
MODES: tuple[str, ...] = ("exact", "incremental", "fast")
#: How each measured window is computed: dense (the whole network per covered image), incremental (only what the
#: cover changes, same numbers) or auto (incremental where the network gains and its functions are ready, else
#: dense, with the reason recorded).
ENGINES: tuple[str, ...] = ("dense", "incremental", "auto")


def validate_mode(mode: str) -> str:
    """``mode`` lower-cased if it is one of :data:`MODES`, else a :class:`ParameterError`."""
    value = str(mode).strip().lower()
    if value not in MODES:
        raise ParameterError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    return value


def validate_engine(engine: str) -> str:
    """``engine`` lower-cased if it is one of :data:`ENGINES`, else a :class:`ParameterError`."""
    value = str(engine).strip().lower()
    if value not in ENGINES:
        raise ParameterError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    return value


def resolve_mode_engine(mode: str, engine: str | None) -> tuple[str, str]:
    """The two choices ``(mode, engine)``: mode ``exact``/``fast``, engine ``dense``/``incremental``/``auto``.

    ``engine=None`` means dense; ``mode="incremental"`` means exact measured by the incremental engine (and
    refuses another engine).
    """
    mode = validate_mode(mode)
    engine = None if engine is None else validate_engine(engine)
    if mode == "incremental":
        if engine not in (None, "incremental"):
            raise ParameterError(
                f"mode 'incremental' is the exact mode with the incremental engine, not with engine {engine!r}: "
                f"use mode='exact', engine={engine!r}"
            )
        return "exact", "incremental"
    return mode, engine or "dense"


def unit_for(method: str, score_kind: str) -> tuple[float, str]:
    """``(factor, unit)`` turning maps of ``method`` with ``score_kind`` into displayed values: ``(100, "pp")`` for
    probability differences (occlusion, RISE; sigmoid label probabilities), ``(1, "log-odds")``, the other score
    kinds' (:func:`sensmap.scores.unit`), or ``(1, "relative")`` for Grad-CAM (0..1, 1 = the map's peak).
    :attr:`SensitivityResult.display_unit` of a result; audits' mean maps use it too."""
    if validate_method(method) == "gradcam":
        return 1.0, "relative"
    return score_unit(score_kind)


def unit_words(method: str, score_kind: str) -> str:
    """The unit of maps of ``method`` with ``score_kind`` in words, for legends and reports
    (:attr:`SensitivityResult.unit_description`)."""
    method = validate_method(method)
    if method == "gradcam":
        return f"{GRADCAM_UNIT}: 1 = the map's strongest point; not a change of probability"
    factor, shown = score_unit(score_kind)
    unit = {"probability": "percentage points of class probability", "log-odds": "log-odds of the class"}.get(
        score_kind, f"{shown}{' (percentage points)' if factor == 100 else ''}: {describe(score_kind)}"
    )
    if method == "rise":
        return f"{unit}: expected score drop when the area is covered by random masks rather than kept"
    return f"{unit}: score drop when the area is covered"


def support_maps(window_support: np.ndarray, grids: Sequence[WindowGrid]) -> np.ndarray:
    """Per-size maps ``(sizes, H, W)``: per pixel, the mean support of the windows covering it.

    ``window_support`` holds one value per window, the grids' windows concatenated in order.
    """
    window_support = np.asarray(window_support, dtype=np.float64)
    expected = sum(grid.count for grid in grids)
    if window_support.shape != (expected,):
        raise ParameterError(f"expected {expected} window values, got shape {window_support.shape}")
    maps, offset = [], 0
    for grid in grids:
        maps.append(grid.aggregate(window_support[offset : offset + grid.count]))
        offset += grid.count
    return np.stack(maps)


@dataclass
class SensitivityResult:
    """A sensitivity map with everything needed to redraw, re-target or audit it.

    Arrays on the network grid are ``(H, W)`` = :attr:`input_size`. For occlusion (the default
    :attr:`method`) :attr:`outputs` keeps the full probability vector of every occluded input, so
    maps for other classes, contrastive maps and the label-flip map need no new forward passes.
    Per-pixel methods (Grad-CAM, RISE) give ``pixel_map`` instead: no windows (``sizes == ()``,
    ``outputs`` of shape ``(0, classes)``), a map for their target class only, their settings in
    :attr:`method_parameters`.
    """

    model_name: str
    labels: tuple[str, ...]
    input_size: tuple[int, int]  # (H, W) network grid, pixels
    photo_size: tuple[int, int]  # (h, w) photo pixels
    fit: str  # "squash" or "crop"
    sizes: tuple[float, ...]  # cover sizes, fractions of the image side
    stride: float  # fraction of the window side
    fill: str  # fill label (see sensmap.fills.fill_label)
    score_kind: str  # sensmap.scores: "probability", "log-odds", "logit", "sigmoid", "similarity", "custom:<name>"
    target: int  # class index the map explains (kinds without a class: unused)
    # (classes,) outputs of the unoccluded image: probabilities for probability/log-odds, sigmoid probabilities for
    # sigmoid, the raw outputs for logit, similarity and custom scores (sensmap.scores.output_activation)
    reference_probabilities: np.ndarray
    outputs: np.ndarray  # (windows, classes) outputs of every occluded input, as reference_probabilities
    metadata: dict[str, Any] = field(default_factory=dict)  # versions, timings, notes, mode…
    # (windows,) bool: True where a forward pass was run; None = every window (exact maps). Fast-mode
    # maps predict the other windows' outputs (see sensmap.fast), so they are approximate.
    measured: np.ndarray | None = None
    method: str = "occlusion"  # one of METHODS
    # (H, W) map on the network grid given by a per-pixel method (Grad-CAM, RISE); None for occlusion
    pixel_map: np.ndarray | None = None
    # settings of a per-pixel method (e.g. masks, grid, p, seed, passes; layer, score), for records and reruns
    method_parameters: dict[str, Any] = field(default_factory=dict)
    # (1 + windows,) a custom score function's value on the unoccluded image, then on each window (the function
    # itself is not kept); None for the named score kinds, whose values come from the outputs
    custom_scores: np.ndarray | None = None
    support: np.ndarray = field(init=False)  # (H, W) scale-independent map (mean of per_size)
    per_size: np.ndarray = field(init=False)  # (sizes, H, W)

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.photo_size = (int(self.photo_size[0]), int(self.photo_size[1]))
        self.sizes = tuple(float(s) for s in self.sizes)
        self.score_kind = validate_score_kind(self.score_kind)
        self.reference_probabilities = np.asarray(self.reference_probabilities, dtype=np.float32)
        self.outputs = np.asarray(self.outputs, dtype=np.float32)
        self.method = validate_method(self.method)
        self.method_parameters = dict(self.method_parameters or {})
        self._photo_support: np.ndarray | None = None
        if self.method != "occlusion":
            self._init_pixel_map()
            return
        if self.pixel_map is not None:
            raise SensmapError("an occlusion result is built from its window outputs: give no pixel_map")
        self._grids = window_grids(self.input_size[0], self.input_size[1], self.sizes, self.stride)
        if self.outputs.shape != (self.window_total, len(self.labels)):
            raise SensmapError(
                f"result is inconsistent: {self.outputs.shape[0]} outputs for {self.window_total} windows "
                f"and {len(self.labels)} classes"
            )
        if self.measured is not None:
            self.measured = np.asarray(self.measured, dtype=bool)
            if self.measured.shape != (self.window_total,):
                raise SensmapError(f"result is inconsistent: measured mask of shape {self.measured.shape}")
            if self.measured.all():
                self.measured = None
        if is_custom(self.score_kind):
            if self.custom_scores is None:
                raise SensmapError(f"result is inconsistent: a {self.score_kind} map without its custom scores")
            self.custom_scores = np.asarray(self.custom_scores, dtype=np.float64)
            if self.custom_scores.shape != (1 + self.window_total,):
                raise SensmapError(f"result is inconsistent: custom scores of shape {self.custom_scores.shape}")
        self.per_size, self.support = self.maps_for(self.target)

    def _init_pixel_map(self) -> None:
        label = METHOD_LABELS[self.method]
        if self.pixel_map is None:
            raise SensmapError(f"a {label} result needs its map (pixel_map) on the network grid")
        values = np.asarray(self.pixel_map, dtype=np.float32)
        if values.shape != self.input_size or not np.isfinite(values).all():
            raise SensmapError(
                f"result is inconsistent: a {label} map must be finite with the network grid's shape "
                f"{self.input_size}, got {values.shape}"
            )
        if self.sizes or self.outputs.shape != (0, len(self.labels)) or self.measured is not None:
            raise SensmapError(f"result is inconsistent: a {label} result has no windows, outputs or measured mask")
        self.pixel_map = values
        self._grids = []
        self.support = values
        self.per_size = values[None]

    # ------------------------------------------------------------------ method and units
    @property
    def windowed(self) -> bool:
        """True for occlusion maps: per-size maps, other classes, label flips and the story come from window outputs."""
        return self.method == "occlusion"

    @property
    def method_label(self) -> str:
        """The method's display name: ``occlusion``, ``Grad-CAM`` or ``RISE``."""
        return METHOD_LABELS[self.method]

    @property
    def display_unit(self) -> tuple[float, str]:
        """``(factor, unit)`` turning the map into displayed values: ``(100, "pp")`` for probability differences
        (occlusion, RISE; sigmoid label probabilities), ``(1, "log-odds")``, the other score kinds'
        (:func:`sensmap.scores.unit`), or ``(1, "relative")`` for Grad-CAM (0..1, 1 = the map's peak)."""
        return unit_for(self.method, self.score_kind)

    @property
    def unit_description(self) -> str:
        """The map's unit in words, for legends and reports."""
        return unit_words(self.method, self.score_kind)

    @property
    def detail_px(self) -> int:
        """Side (network-grid pixels) of the map's finest detail: the smallest cover (occlusion), a mask cell
        (RISE) or a feature-map cell (Grad-CAM). Random baselines of the faithfulness check use patches this large."""
        if self.windowed:
            return min(min(grid.window_y, grid.window_x) for grid in self.grids)
        return max(1, int(self.method_parameters.get("detail_px", 1)))

    @property
    def approximation_note(self) -> str:
        """How the map is approximate, in words; ``""`` for exact maps."""
        if self.method == "rise":
            return (
                f"Monte Carlo estimate from {self.passes:,} random masks (seed {self.method_parameters.get('seed')}); "
                "more masks, less noise"
            )
        if self.measured is not None:
            return f"{self.passes:,} of {self.window_total:,} windows measured, the rest predicted from the measured"
        return ""

    def _windows_needed(self, what: str) -> None:
        if not self.windowed:
            raise ParameterError(
                f"{what} needs the window outputs of an occlusion map; this {self.method_label} map has none "
                "(compute an occlusion map, or this method again with another target)"
            )

    # ------------------------------------------------------------------ geometry
    @property
    def grids(self) -> list[WindowGrid]:
        """One window grid per cover size, in :attr:`sizes` order (derived once from the parameters)."""
        return self._grids

    @property
    def boxes(self) -> np.ndarray:
        """``(passes, 4)`` windows ``(y0, x0, y1, x1)`` in network-grid pixels, sizes concatenated."""
        return np.concatenate([np.empty((0, 4), np.int64)] + [grid.boxes for grid in self.grids])

    @property
    def size_index(self) -> np.ndarray:
        """``(passes,)`` index into :attr:`sizes` of each window."""
        return np.concatenate([np.empty(0, np.int64)] + [np.full(grid.count, i) for i, grid in enumerate(self.grids)])

    @property
    def window_counts(self) -> tuple[int, ...]:
        """Windows (forward passes) per cover size."""
        return tuple(grid.count for grid in self.grids)

    @property
    def window_total(self) -> int:
        """Windows of the map, all sizes (= forward passes of an exact map)."""
        return int(sum(self.window_counts))

    @property
    def passes(self) -> int:
        """Occluded (masked) forward passes really run (the one unoccluded reference pass not counted);
        Grad-CAM: 1 (one forward and backward pass)."""
        if not self.windowed:
            return int(self.method_parameters.get("passes", 0))
        return self.window_total if self.measured is None else int(self.measured.sum())

    @property
    def approximate(self) -> bool:
        """True when some windows were predicted rather than measured (fast mode), or the map is a Monte Carlo
        estimate (RISE); :attr:`approximation_note` says how."""
        return self.measured is not None or self.method == "rise"

    # ------------------------------------------------------------------ how it was made
    @property
    def mode(self) -> str:
        """Which windows were measured: ``"exact"`` (all) or ``"fast"`` (an adaptive subset).

        Files written before engines were a separate choice say ``"incremental"``: an exact map.
        """
        mode = str((self.metadata or {}).get("mode", "fast" if self.approximate else "exact"))
        return "exact" if mode == "incremental" else mode

    @property
    def engine(self) -> str:
        """The engine that computed the measured windows: ``"dense"``, ``"incremental"`` or ``"mixed"``
        (some cover sizes each way; ``metadata["incremental_groups"]`` says which and why)."""
        meta = self.metadata or {}
        if "engine" in meta:
            return str(meta["engine"])
        if meta.get("mode") != "incremental":  # older files: only incremental mode could differ from dense
            return "dense"
        return engine_used([group.get("ran", "dense") for group in meta.get("incremental_groups", [])])

    @property
    def engine_requested(self) -> str:
        """The engine asked for: ``"dense"``, ``"incremental"`` or ``"auto"``."""
        meta = self.metadata or {}
        return str(meta.get("engine_requested", "incremental" if meta.get("mode") == "incremental" else "dense"))

    @property
    def partial(self) -> bool:
        """True for a map handed out before its run finished (``sensitivity_map(on_partial=…)``, or a stopped
        run's ``CancelledError.partial``): it holds only the cover sizes (or fast-mode rounds) finished so far."""
        return bool((self.metadata or {}).get("partial", False))

    # ------------------------------------------------------------------ scores
    @property
    def target_name(self) -> str:
        return self.labels[self.target]

    @property
    def score(self) -> float:
        """Score of the target on the unoccluded image (probability, log-odds, logit…; similarity: 1)."""
        if self.custom_scores is not None:
            return float(self.custom_scores[0])
        return float(
            class_scores(self.reference_probabilities, self.target, self.score_kind, self.reference_probabilities)
        )

    @property
    def probability(self) -> float:
        """Probability of the target on the unoccluded image."""
        return float(self.reference_probabilities[self.target])

    def top_k(self, k: int = 5) -> list[tuple[int, str, float]]:
        """The ``k`` most probable classes of the unoccluded image: ``(index, name, probability)``."""
        order = np.argsort(-self.reference_probabilities, kind="stable")[:k]
        return [(int(i), self.labels[i], float(self.reference_probabilities[i])) for i in order]

    def window_support(self, class_index: int | None = None, score_kind: str | None = None) -> np.ndarray:
        """Support per window ``(passes,)``: reference score minus occluded score of the class."""
        self._windows_needed("support per window")
        index = self.target if class_index is None else int(class_index)
        kind = self._score_kind(score_kind)
        if index != self.target and "classes" not in supported_views(kind):
            raise ParameterError(view_note(kind, "classes"))
        if self.custom_scores is not None:
            return self.custom_scores[0] - self.custom_scores[1:]
        return score_support(self.outputs, self.reference_probabilities, index, kind)

    def _score_kind(self, score_kind: str | None) -> str:
        """``score_kind`` (default: the map's own), if the kept outputs can give it."""
        kind = self.score_kind if score_kind is None else validate_score_kind(score_kind)
        if kind != self.score_kind and (
            is_custom(kind)
            or is_custom(self.score_kind)
            or output_activation(kind) != output_activation(self.score_kind)
        ):
            raise ParameterError(
                f"this map kept the outputs its {self.score_kind} score needs; a {kind} map needs other outputs: "
                "make a new map with that score"
            )
        return kind

    def maps_for(self, class_index: int, score_kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(per_size (sizes, H, W), support (H, W))`` for any class, from the kept outputs.

        Per-pixel methods (Grad-CAM, RISE) have their own target's map only: ``(map[None], map)``.
        """
        if not self.windowed:
            if int(class_index) != self.target or (score_kind and validate_score_kind(score_kind) != self.score_kind):
                self._windows_needed(f"a map for class {class_index} or score {score_kind}")
            return self.per_size, self.support
        per_size = support_maps(self.window_support(class_index, score_kind), self.grids).astype(np.float32)
        return per_size, per_size.mean(axis=0)

    def contrastive(self, class_a: int, class_b: int) -> np.ndarray:
        """``(H, W)`` map of support for class A over class B: support(A) − support(B)."""
        return self.maps_for(class_a)[1] - self.maps_for(class_b)[1]

    def label_flip(self, size: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """Which class wins when each area is covered, for the cover size at index ``size``.

        Per pixel, among the windows of that size covering it, the one whose cover lowers the
        target most is taken; returns ``(classes (H, W) int, probability of that class (H, W))`` — with the
        ``logit`` score, that class's raw output. Scores without one winning class (sigmoid, similarity,
        custom) raise a :class:`ParameterError`.
        """
        self._windows_needed("the label-flip map")
        if "label-flip" not in supported_views(self.score_kind):
            raise ParameterError(view_note(self.score_kind, "label-flip"))
        grids = self.grids
        size = range(len(grids))[size]
        offset = sum(grid.count for grid in grids[:size])
        grid = grids[size]
        outputs = self.outputs[offset : offset + grid.count]
        support = self.window_support()[offset : offset + grid.count]
        winner = grid.window_index_map(support)
        top = outputs.argmax(axis=1)
        return top[winner], outputs[winner, top[winner]]

    @property
    def support_photo(self) -> np.ndarray:
        """:attr:`support` resampled to the photo's own size (NaN outside the crop for ``fit="crop"``)."""
        if self._photo_support is None:
            from .images import map_to_photo

            self._photo_support = map_to_photo(self.support, self.photo_size, self.fit)
        return self._photo_support

    # ------------------------------------------------------------------ storage
    def _meta(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "model_name": self.model_name,
            "labels": list(self.labels),
            "input_size": list(self.input_size),
            "photo_size": list(self.photo_size),
            "fit": self.fit,
            "sizes": list(self.sizes),
            "stride": self.stride,
            "fill": self.fill,
            "score_kind": self.score_kind,
            "target": self.target,
            "target_name": self.target_name,
            "passes": self.passes,
            "windows": self.window_total,
            "approximate": self.approximate,
            "method": self.method,
            "method_parameters": self.method_parameters,
            "metadata": self.metadata,
        }

    def to_npz_bytes(self) -> bytes:
        """The result as ``.npz`` bytes (arrays plus a JSON ``metadata`` entry; no pickles)."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            support=self.support,
            per_size=self.per_size,
            support_photo=self.support_photo.astype(np.float32),
            reference_probabilities=self.reference_probabilities,
            outputs=self.outputs,
            boxes=self.boxes,
            size_index=self.size_index,
            measured=np.ones(self.window_total, bool) if self.measured is None else self.measured,
            **({} if self.custom_scores is None else {"custom_scores": self.custom_scores}),
            metadata=np.array(json.dumps(self._meta(), default=json_default)),
        )
        return buffer.getvalue()

    def save(self, path: str | os.PathLike) -> None:
        """Write the result to ``path`` (``.npz``)."""
        with open(path, "wb") as handle:
            handle.write(self.to_npz_bytes())

    @classmethod
    def load(cls, source: str | os.PathLike | bytes) -> SensitivityResult:
        """Read a result written by :meth:`save` or :meth:`to_npz_bytes`."""
        try:
            handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
            with np.load(handle, allow_pickle=False) as data:
                meta = json.loads(str(data["metadata"]))
                result = cls(
                    model_name=meta["model_name"],
                    labels=tuple(meta["labels"]),
                    input_size=tuple(meta["input_size"]),
                    photo_size=tuple(meta["photo_size"]),
                    fit=meta["fit"],
                    sizes=tuple(meta["sizes"]),
                    stride=meta["stride"],
                    fill=meta["fill"],
                    score_kind=meta["score_kind"],
                    target=meta["target"],
                    reference_probabilities=data["reference_probabilities"],
                    outputs=data["outputs"],
                    metadata=meta.get("metadata", {}),
                    measured=_measured(data, meta),
                    method=meta.get("method", "occlusion"),  # files written before methods: occlusion
                    pixel_map=None if meta.get("method", "occlusion") == "occlusion" else data["support"],
                    method_parameters=meta.get("method_parameters", {}),
                    custom_scores=np.array(data["custom_scores"]) if "custom_scores" in data.files else None,
                )
                result._photo_support = np.array(data["support_photo"])
                return result
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SensmapError(f"cannot read sensmap result: {exc}") from None


def format_value(value: float, unit: str, sign: bool = True) -> str:
    """A displayed map value in display units (see :attr:`SensitivityResult.display_unit`), e.g. ``+12.3 pp``."""
    return f"{value:{'+' if sign else ''}.{1 if unit == 'pp' else 2}f} {unit}"


def _measured(data: Any, meta: dict[str, Any]) -> np.ndarray | None:
    if "measured" not in data.files or meta.get("method", "occlusion") != "occlusion":
        return None
    return np.array(data["measured"])


def engine_used(ran: Sequence[str]) -> str:
    """One word for the engines the cover sizes ran with: ``dense``, ``incremental`` or ``mixed``."""
    kinds = set(ran) or {"dense"}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback for numpy scalars and arrays; anything else as text (paths, …)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
