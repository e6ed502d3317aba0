"""Sensitivity results: arrays plus metadata, derived maps, and ``.npz`` storage — numpy only.

Sign convention: **support > 0** means covering the area lowers the class score (the area
supports the class); support < 0 means covering it raises the score (the area inhibits it).
With ``score_kind="probability"`` support is a difference of probabilities (−1..1; ×100 for
percentage points); with ``"log-odds"`` a difference of ``log(p / (1 − p))``.
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
from .windows import WindowGrid, window_grids

SCORE_KINDS: tuple[str, ...] = ("probability", "log-odds")
LOG_ODDS_EPSILON = 1e-7
FORMAT_VERSION = 1


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


def validate_score_kind(kind: str) -> str:
    """Check a score kind (``probability`` or ``log-odds``; ``logodds``/``log_odds`` accepted)."""
    key = str(kind).strip().lower().replace("_", "-")
    if key == "logodds":
        key = "log-odds"
    if key not in SCORE_KINDS:
        raise ParameterError(
            f"unknown score {kind!r}: use 'probability' (default) or 'log-odds' for saturated networks"
        )
    return key


def class_scores(probabilities: np.ndarray, class_index: int, kind: str = "probability") -> np.ndarray:
    """Score of one class from probabilities ``(..., classes)``: the probability or its log-odds."""
    p = np.asarray(probabilities, dtype=np.float64)[..., class_index]
    if validate_score_kind(kind) == "probability":
        return p
    p = np.clip(p, LOG_ODDS_EPSILON, 1 - LOG_ODDS_EPSILON)
    return np.log(p) - np.log1p(-p)


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
    """An occlusion sensitivity map with everything needed to redraw, re-target or audit it.

    Arrays on the network grid are ``(H, W)`` = :attr:`input_size`. :attr:`outputs` keeps the
    full probability vector of every occluded input, so maps for other classes, contrastive maps
    and the label-flip map need no new forward passes.
    """

    model_name: str
    labels: tuple[str, ...]
    input_size: tuple[int, int]  # (H, W) network grid, pixels
    photo_size: tuple[int, int]  # (h, w) photo pixels
    fit: str  # "squash" or "crop"
    sizes: tuple[float, ...]  # cover sizes, fractions of the image side
    stride: float  # fraction of the window side
    fill: str  # fill label (see sensmap.fills.fill_label)
    score_kind: str  # "probability" or "log-odds"
    target: int  # class index the map explains
    reference_probabilities: np.ndarray  # (classes,) of the unoccluded image
    outputs: np.ndarray  # (windows, classes) probabilities of every occluded input
    metadata: dict[str, Any] = field(default_factory=dict)  # versions, timings, notes, mode…
    # (windows,) bool: True where a forward pass was run; None = every window (exact maps). Fast-mode
    # maps predict the other windows' outputs (see sensmap.fast), so they are approximate.
    measured: np.ndarray | None = None
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
        self.per_size, self.support = self.maps_for(self.target)
        self._photo_support: np.ndarray | None = None

    # ------------------------------------------------------------------ geometry
    @property
    def grids(self) -> list[WindowGrid]:
        """One window grid per cover size, in :attr:`sizes` order (derived once from the parameters)."""
        return self._grids

    @property
    def boxes(self) -> np.ndarray:
        """``(passes, 4)`` windows ``(y0, x0, y1, x1)`` in network-grid pixels, sizes concatenated."""
        return np.concatenate([grid.boxes for grid in self.grids])

    @property
    def size_index(self) -> np.ndarray:
        """``(passes,)`` index into :attr:`sizes` of each window."""
        return np.concatenate([np.full(grid.count, i) for i, grid in enumerate(self.grids)])

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
        """Occluded forward passes really run (the one unoccluded reference pass not counted)."""
        return self.window_total if self.measured is None else int(self.measured.sum())

    @property
    def approximate(self) -> bool:
        """True when some windows were predicted rather than measured (fast mode)."""
        return self.measured is not None

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
        """Score of the target on the unoccluded image (probability, or log-odds)."""
        return float(class_scores(self.reference_probabilities, self.target, self.score_kind))

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
        index = self.target if class_index is None else int(class_index)
        kind = score_kind or self.score_kind
        reference = class_scores(self.reference_probabilities, index, kind)
        return reference - class_scores(self.outputs, index, kind)

    def maps_for(self, class_index: int, score_kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(per_size (sizes, H, W), support (H, W))`` for any class, from the kept outputs."""
        per_size = support_maps(self.window_support(class_index, score_kind), self.grids).astype(np.float32)
        return per_size, per_size.mean(axis=0)

    def contrastive(self, class_a: int, class_b: int) -> np.ndarray:
        """``(H, W)`` map of support for class A over class B: support(A) − support(B)."""
        return self.maps_for(class_a)[1] - self.maps_for(class_b)[1]

    def label_flip(self, size: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """Which class wins when each area is covered, for the cover size at index ``size``.

        Per pixel, among the windows of that size covering it, the one whose cover lowers the
        target most is taken; returns ``(classes (H, W) int, probability of that class (H, W))``.
        """
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
                    measured=np.array(data["measured"]) if "measured" in data.files else None,
                )
                result._photo_support = np.array(data["support_photo"])
                return result
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SensmapError(f"cannot read sensmap result: {exc}") from None


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
