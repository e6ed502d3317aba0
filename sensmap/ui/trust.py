"""What tells how far a map can be trusted, beside its faithfulness check (see :mod:`sensmap.ui.runs`).

Every finished map gets, in its ``metadata`` (so the ``.npz`` and the reports carry them): ``story``
(:func:`sensmap.tell_story`), for occlusion maps ``stability`` (:func:`sensmap.metrics.stability` across cover
sizes, and fills when maps with other fills are cached) and, when the photo has a box, ``pointing``. Two maps get
their agreement; an approximate map (fast mode, RISE) its approximation warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from .map_settings import SIZE_CHOICES, label_for
from .pointing import apply_pointing
from .result_cache import ResultKey, results
from .session import K_BOXES

if TYPE_CHECKING:
    from ..result import SensitivityResult
    from .photo_store import PhotoEntry


def describe_result(key: ResultKey, result: SensitivityResult) -> None:
    """Add the story, the stability (occlusion maps: it is the spread across cover sizes) and (when the photo has a
    box) the pointing numbers to the metadata."""
    story_text(result)
    if result.windowed:
        stability_numbers(key, result)
    apply_pointing(result, st.session_state.get(K_BOXES, {}).get(key.photo))


def story_text(result: SensitivityResult) -> str:
    """:func:`sensmap.tell_story` of the result (kept in ``metadata["story"]``)."""
    from ..story import tell_story

    if not isinstance(result.metadata.get("story"), str):
        result.metadata["story"] = tell_story(result)
    return result.metadata["story"]


def stability_numbers(key: ResultKey, result: SensitivityResult) -> tuple[np.ndarray, float, str]:
    """``(spread map, mean spread, across)``: :func:`sensmap.metrics.stability` of the map's per-size maps
    and those of the cached maps that differ from it only by the fill (same photo, network, class, cover
    sizes, stride and score). Kept in ``metadata["stability"]`` (arrays' units: probability difference
    or log-odds)."""
    from ..metrics import stability

    others = [
        other
        for other_key, other in results().items()
        if other_key != key
        and other_key.method == key.method
        and (other_key.photo, other_key.network, other_key.target) == (key.photo, key.network, key.target)
        and (other_key.settings[0], other_key.settings[1], other_key.settings[3])
        == (key.settings[0], key.settings[1], key.settings[3])
        and other_key.settings[2] != key.settings[2]  # another fill (not the same map in another mode)
    ]
    spread, score = stability([m for r in (result, *others) for m in r.per_size])
    fills = [r.fill for r in (result, *others)]
    covers = ", ".join(label_for(SIZE_CHOICES, s) for s in result.sizes)
    across = f"cover sizes {covers}" + (f" and fills {', '.join(fills)}" if others else "")
    finite = spread[np.isfinite(spread)]
    result.metadata["stability"] = {
        "score": score,
        "max": float(finite.max()) if finite.size else 0.0,
        "score_kind": result.score_kind,
        "across": across,
        "fills": fills,
        "maps": len(fills) * len(result.sizes),
    }
    return spread, score, across


def agreement_numbers(photo: PhotoEntry, result_a: SensitivityResult, result_b: SensitivityResult) -> dict:
    """:func:`sensmap.render.photo_agreement` of two maps of the photo (on its own pixel grid)."""
    from ..render import photo_agreement

    return photo_agreement(result_a, result_b, photo.image.pixels.shape[:2])


def approximate_note(result: SensitivityResult) -> str:
    """The warning shown over an approximate map: how it is approximate
    (:attr:`~sensmap.SensitivityResult.approximation_note`: fast mode's measured windows, RISE's masks)."""
    advice = " Run it with exact windows before relying on details." if result.windowed else ""
    return f"Approximate {result.method_label} map: {result.approximation_note}.{advice}"
