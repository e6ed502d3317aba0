"""Score kinds: the one number per image a map explains — numpy only.

A map's support of a window is ``score(unoccluded) − score(occluded)``: > 0 when covering the window
lowers the score. The network's outputs ``(n, k)`` come, per kind, with or without an activation
(see :func:`output_activation`); the score is then read from them:

* ``probability`` — softmax probability of the class (sensmap applies the softmax when the network
  outputs logits); 0..1, shown ×100 in percentage points.
* ``log-odds`` — ``log(p / (1 − p))`` of that probability (saturated networks).
* ``logit`` — the class's raw output, no softmax (networks whose outputs are logits; any raw output).
* ``sigmoid`` — multi-label: each output its own probability ``σ(raw)`` (no softmax; a graph that ends in a
  sigmoid is used as it is); 0..1, percentage points.
* ``similarity`` — cosine similarity of the whole occluded output vector to the unoccluded one (embeddings,
  feature extractors): 1 on the unoccluded image; no class.
* a callable (Python API) mapping outputs ``(n, k)`` (raw, no activation) to one number per image, e.g. a
  regression output or one detector box's score; recorded as ``custom:<its name>``; no class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ParameterError

if TYPE_CHECKING:
    from .result import SensitivityResult

SCORE_KINDS: tuple[str, ...] = ("probability", "log-odds", "logit", "sigmoid", "similarity")
CUSTOM_PREFIX = "custom:"
LOG_ODDS_EPSILON = 1e-7

#: What a network's output vector is, and the score kinds that make sense for it (the first is its default).
OUTPUT_KINDS: dict[str, str] = {
    "classes": "one score per class (probabilities, or logits that sensmap turns into probabilities)",
    "multi-label": "independent labels, each its own probability (sigmoid)",
    "embedding": "a feature vector (no classes)",
    "values": "raw numbers per image, e.g. a regression (no classes)",
}
OUTPUT_SCORES: dict[str, tuple[str, ...]] = {
    "classes": ("probability", "log-odds", "logit", "similarity"),
    "multi-label": ("sigmoid", "logit", "similarity"),
    "embedding": ("similarity",),
    "values": ("logit", "similarity"),
}

#: Views of a map beyond the target's own map: ``classes`` (maps of other classes, contrastive maps, the choice
#: of a target), ``top-k`` (the classes ranked on the whole photo), ``label-flip`` (which class wins when an area
#: is covered). Kinds without a class (similarity, custom) support none of them.
VIEWS: tuple[str, ...] = ("classes", "top-k", "label-flip")
_KIND_VIEWS: dict[str, frozenset[str]] = {
    "probability": frozenset(VIEWS),
    "log-odds": frozenset(VIEWS),
    "logit": frozenset(VIEWS),
    "sigmoid": frozenset({"classes", "top-k"}),
    "similarity": frozenset(),
}
_VIEW_NOTES: dict[str, str] = {
    "classes": "belong to the whole output, not to a class",
    "top-k": "have no classes to rank",
    "label-flip": "have no class that could win when an area is covered",
}
_KIND_TEXT: dict[str, str] = {
    "probability": "class probability",
    "log-odds": "log-odds of the class (log p/(1−p))",
    "logit": "raw output (logit) of the class, no softmax",
    "sigmoid": "label probability (sigmoid, each label on its own)",
    "similarity": "cosine similarity of the output vector to the unoccluded one",
}

ScoreFunction = Callable[[np.ndarray], Any]


@dataclass(frozen=True)
class Score:
    """A score kind and, for a custom score, its function (``outputs (n, k) → (n,)``)."""

    kind: str  # one of SCORE_KINDS, or "custom:<name>"
    function: ScoreFunction | None = None

    @property
    def custom(self) -> bool:
        return self.function is not None or is_custom(self.kind)


def is_custom(kind: str) -> bool:
    """Whether ``kind`` names a custom score function (``custom:<name>``)."""
    return str(kind).startswith(CUSTOM_PREFIX)


def validate_score_kind(kind: str | ScoreFunction | Score) -> str:
    """The canonical kind: one of :data:`SCORE_KINDS` (``logodds``/``log_odds`` accepted), ``custom:<name>``
    for a callable (its ``__name__``) or a stored custom kind; else a :class:`ParameterError`."""
    return resolve_score(kind).kind


def resolve_score(score: str | ScoreFunction | Score) -> Score:
    """A :class:`Score` from a kind name, a callable or a :class:`Score`."""
    if isinstance(score, Score):
        return score
    if callable(score):
        name = getattr(score, "__name__", None) or type(score).__name__
        return Score(f"{CUSTOM_PREFIX}{name}", score)
    key = str(score).strip().lower().replace("_", "-")
    if key == "logodds":
        key = "log-odds"
    if key in SCORE_KINDS:
        return Score(key)
    if is_custom(str(score).strip()):
        return Score(str(score).strip())
    raise ParameterError(
        f"unknown score {score!r}: use one of {', '.join(SCORE_KINDS)}, or in Python a function mapping the outputs "
        "(n, k) to one number per image"
    )


def validate_output_kind(kind: str | None) -> str:
    """The canonical output kind (default ``classes``), else a :class:`ParameterError` listing them."""
    key = "classes" if kind is None else str(kind).strip().lower().replace("_", "-")
    if key not in OUTPUT_KINDS:
        raise ParameterError(f"unknown output kind {kind!r}: use one of {', '.join(OUTPUT_KINDS)}")
    return key


def default_score(output_kind: str) -> str:
    """The score a network with these outputs is mapped with unless another is chosen."""
    return OUTPUT_SCORES[validate_output_kind(output_kind)][0]


def check_score(score: str | ScoreFunction | Score, output_kind: str) -> Score:
    """``score`` resolved, if it makes sense for a network whose outputs are ``output_kind``; else a
    :class:`ParameterError` naming the kinds that do. Custom functions fit every network."""
    resolved = resolve_score(score)
    allowed = OUTPUT_SCORES[validate_output_kind(output_kind)]
    if not resolved.custom and resolved.kind not in allowed:
        raise ParameterError(
            f"the score {resolved.kind!r} does not fit a network whose outputs are {OUTPUT_KINDS[output_kind]}: "
            f"use {' or '.join(repr(k) for k in allowed)}"
        )
    return resolved


def probability_score(score: str | ScoreFunction | Score | None, what: str) -> str:
    """``probability`` (also for None) or ``log-odds`` (validated), else a :class:`ParameterError` saying that
    ``what`` (a map method) explains the class probability only."""
    kind = "probability" if score is None else resolve_score(score).kind
    if kind not in ("probability", "log-odds"):
        raise ParameterError(f"{what} explains the class probability or its log-odds; the {kind} score needs occlusion")
    return kind


def output_activation(kind: str | ScoreFunction | Score) -> str:
    """What turns the network's raw outputs into the values a score reads: ``"softmax"`` (probability,
    log-odds), ``"sigmoid"`` (sigmoid) or ``"none"`` (logit, similarity, custom)."""
    resolved = resolve_score(kind)
    if resolved.kind in ("probability", "log-odds"):
        return "softmax"
    return "sigmoid" if resolved.kind == "sigmoid" else "none"


def supported_views(kind: str | ScoreFunction | Score) -> frozenset[str]:
    """The class views (of :data:`VIEWS`) that make sense for maps with this score."""
    return _KIND_VIEWS.get(resolve_score(kind).kind, frozenset())


def supports_classes(kind: str | ScoreFunction | Score) -> bool:
    """Whether the score belongs to one class (so maps of other classes and a target choice make sense)."""
    return "classes" in supported_views(kind)


def view_note(kind: str | ScoreFunction | Score, view: str) -> str | None:
    """Why ``view`` does not apply to maps with this score (a sentence for the user, shown instead of the view),
    or None when it does."""
    if view not in VIEWS:
        raise ParameterError(f"unknown view {view!r}: one of {', '.join(VIEWS)}")
    if view in supported_views(kind):
        return None
    resolved = resolve_score(kind)
    reason = (
        "have independent labels: no single label wins when an area is covered" if resolved.kind == "sigmoid" else None
    )
    return f"Maps of the {describe(resolved.kind)} {reason or _VIEW_NOTES[view]}."


def describe(kind: str | ScoreFunction | Score) -> str:
    """Words for a score kind, e.g. ``class probability``, ``custom score 'brightness'``."""
    resolved = resolve_score(kind)
    if resolved.custom:
        return f"custom score '{resolved.kind.removeprefix(CUSTOM_PREFIX)}'"
    return _KIND_TEXT[resolved.kind]


def unit(kind: str | ScoreFunction | Score) -> tuple[float, str]:
    """``(factor, unit)`` that turn score differences into displayed values: ``(100, "pp")`` for probabilities
    (probability, sigmoid), else ``(1, name)``: ``log-odds``, ``logit``, ``similarity`` or a custom function's name
    (so two maps share a colour scale only when their scores are the same)."""
    resolved = resolve_score(kind)
    if resolved.kind in ("probability", "sigmoid"):
        return 100.0, "pp"
    return 1.0, resolved.kind.removeprefix(CUSTOM_PREFIX)


def target_text(result: SensitivityResult) -> str:
    """What a map explains, in words: ``'wolf' (97%)``, ``'wolf' (logit 3.20)``, or the score for kinds without
    a class (``cosine similarity of the output vector to the unoccluded one``)."""
    kind = resolve_score(result.score_kind)
    if not supports_classes(kind):
        return describe(kind)
    if kind.kind == "logit":
        return f"'{result.target_name}' (logit {result.score:.2f})"
    return f"'{result.target_name}' ({result.probability:.0%})"


def cosine_similarity(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``outputs (..., k)`` to ``reference (k,)`` (float64; 0 for a zero vector)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    norms = np.linalg.norm(outputs, axis=-1) * np.linalg.norm(reference)
    dots = outputs @ reference
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def score_values(
    outputs: np.ndarray,
    class_index: int,
    kind: str | ScoreFunction | Score = "probability",
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """The score of each row of ``outputs (..., k)`` (float64, shape ``(...)``).

    ``class_index`` is ignored by kinds without a class; ``similarity`` needs the unoccluded ``reference``
    output vector ``(k,)``. A custom function must return one finite number per row.
    """
    resolved = resolve_score(kind)
    outputs = np.asarray(outputs)
    if resolved.custom:
        return _custom_values(resolved, outputs)
    if resolved.kind == "similarity":
        if reference is None:
            raise ParameterError("the similarity score needs the unoccluded output vector (reference)")
        return cosine_similarity(outputs, reference)
    values = np.asarray(outputs, dtype=np.float64)[..., class_index]
    if resolved.kind != "log-odds":
        return values
    values = np.clip(values, LOG_ODDS_EPSILON, 1 - LOG_ODDS_EPSILON)
    return np.log(values) - np.log1p(-values)


def _custom_values(score: Score, outputs: np.ndarray) -> np.ndarray:
    if score.function is None:
        raise ParameterError(
            f"the {describe(score)} was computed by a function that is not kept with the result: pass the function"
        )
    batch = np.atleast_2d(np.asarray(outputs, dtype=np.float32))
    try:
        values = np.asarray(score.function(batch), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"the {describe(score)} failed on outputs of shape {batch.shape}: {exc}") from None
    if values.shape != (len(batch),) or not np.all(np.isfinite(values)):
        raise ParameterError(
            f"the {describe(score)} must return one finite number per image: for outputs {batch.shape} it returned "
            f"shape {values.shape}" + ("" if values.shape != (len(batch),) else " with NaN or infinite values")
        )
    return values if np.asarray(outputs).ndim > 1 else values[0]


def window_support(
    outputs: np.ndarray, reference: np.ndarray, class_index: int, kind: str | ScoreFunction | Score = "probability"
) -> np.ndarray:
    """Support of each occluded output row: ``score(reference) − score(row)`` (float64, ``(n,)``)."""
    reference_score = score_values(reference, class_index, kind, reference)
    return reference_score - score_values(outputs, class_index, kind, reference)
