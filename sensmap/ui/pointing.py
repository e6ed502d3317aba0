"""The pointing check: each photo's box (drawn on the photo or typed) and the share of support inside it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from .result_cache import results
from .session import K_BOX_INPUTS, K_BOXES, state

if TYPE_CHECKING:
    from ..result import SensitivityResult
    from .photo_store import PhotoEntry


def pointing_box(photo: PhotoEntry) -> tuple[float, float, float, float] | None:
    """The photo's pointing-check box ``(y0, x0, y1, x1)`` in fractions of the photo, or None."""
    return st.session_state.get(K_BOXES, {}).get(photo.sha256)


def same_box(a: Sequence[float] | None, b: Sequence[float] | None, tolerance: float = 5e-4) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return all(abs(float(u) - float(v)) <= tolerance for u, v in zip(a, b, strict=True))


def set_pointing_box(photo: PhotoEntry, box: Sequence[float] | None, *, refresh_inputs: bool = False) -> None:
    """Store (None: forget) the photo's box and update the pointing numbers of all its maps.

    ``refresh_inputs`` gives the number inputs new keys so they show the new box (after a box
    drawn on the photo, or cleared).
    """
    boxes = state(K_BOXES, dict)
    if box is None:
        boxes.pop(photo.sha256, None)
    else:
        boxes[photo.sha256] = tuple(float(v) for v in box)
    for key, result in results().items():
        if key.photo == photo.sha256:
            apply_pointing(result, boxes.get(photo.sha256))
    if refresh_inputs:
        generations = state(K_BOX_INPUTS, dict)
        generations[photo.sha256] = generations.get(photo.sha256, 0) + 1


def apply_pointing(result: SensitivityResult, box: Sequence[float] | None) -> dict | None:
    """:func:`sensmap.metrics.pointing` of the map against a photo box (kept in ``metadata["pointing"]``).

    None (and no ``pointing`` entry) without a box or when the network sees no part of it (``fit="crop"``).
    """
    from ..metrics import pointing
    from ..render import photo_box_to_grid

    grid = photo_box_to_grid(result, box) if box is not None else None
    if grid is None:
        result.metadata.pop("pointing", None)
        return None
    numbers = {"box_photo": [float(v) for v in box], "box_grid": list(grid), **pointing(result.support, grid)}
    result.metadata["pointing"] = numbers
    return numbers


def box_from_selection(selection: Any, photo_size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """The last box of a Plotly box selection (photo pixels) as ``(y0, x0, y1, x1)`` fractions of the photo.

    ``st.plotly_chart(..., on_select="rerun", selection_mode="box")`` returns the selection's boxes
    as ``{"xref", "yref", "x": [x0, x1], "y": [y0, y1]}`` in data coordinates, corners in drawing
    order; they are sorted, clipped to the photo and rounded to 0.1 %. None without a usable box.
    """
    boxes = (selection or {}).get("box") or []
    if not boxes:
        return None
    last = boxes[-1]
    xs, ys = list(last.get("x") or []), list(last.get("y") or [])
    if len(xs) < 2 or len(ys) < 2:
        return None
    height, width = photo_size
    y0, y1 = sorted(round(float(np.clip(float(v) / height, 0.0, 1.0)), 3) for v in ys[:2])
    x0, x1 = sorted(round(float(np.clip(float(v) / width, 0.0, 1.0)), 3) for v in xs[:2])
    return (y0, x0, y1, x1) if y1 - y0 >= 0.005 and x1 - x0 >= 0.005 else None


BOX_EDGES = (("y0", "top"), ("x0", "left"), ("y1", "bottom"), ("x1", "right"))


def box_inputs(photo: PhotoEntry, box: Sequence[float] | None) -> tuple[float, float, float, float] | None:
    """Four number inputs (top, left, bottom, right in % of the photo): the keyboard way to set the box.

    Returns the typed box (fractions) when all four are filled in and form a box, else None (with a
    warning for a box whose edges cross).
    """
    generation = st.session_state.get(K_BOX_INPUTS, {}).get(photo.sha256, 0)
    values = []
    columns = [*st.columns(2), *st.columns(2)]  # top-left corner, then bottom-right corner
    for column, (edge, word), current in zip(columns, BOX_EDGES, box or (None,) * 4, strict=True):
        values.append(
            column.number_input(
                f"{word} (%)", min_value=0.0, max_value=100.0, step=1.0, format="%.1f",
                value=None if current is None else round(100 * current, 1),
                key=f"w.box.{photo.sha256[:16]}.{generation}.{edge}",
                help=f"The box's {word} edge, in % of the photo's {'height' if edge[0] == 'y' else 'width'}.",
            )
        )  # fmt: skip
    if any(v is None for v in values):
        return None
    y0, x0, y1, x1 = (float(v) / 100 for v in values)
    if y0 >= y1 or x0 >= x1:
        st.warning("The box needs top < bottom and left < right.", icon=":material/warning:")
        return None
    return y0, x0, y1, x1
