"""Maps drawn while they refine: the overlay of each partial result in place, and how a partial map is marked.

:func:`sensmap.sensitivity_map` hands ``on_partial`` a valid map after each cover size (coarsest first) and
after each fast-mode round; :func:`sensmap.ui.runs.run_map_with_progress` draws each into one ``st.empty``
slot (in the script thread) with :func:`draw_partial`. A partial map is always captioned or warned as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import streamlit as st

from .map_settings import SIZE_CHOICES, label_for
from .result_cache import partial_result, results
from .text import plain

if TYPE_CHECKING:
    from ..result import SensitivityResult
    from .photo_store import PhotoEntry
    from .result_cache import ResultKey

OPACITY_KEY = "w.opacity"  # the Map page's opacity slider: the refining overlay uses the same opacity


def covers_done(result: SensitivityResult, sizes: tuple[float, ...]) -> str:
    """How far a partial map is, e.g. ``2 of 4 cover sizes done: 1/2, 1/4`` (fast mode: ``every cover size done,
    40% of the windows of 1/16 measured``)."""
    if result.approximate:
        per_size = result.metadata.get("fast", {}).get("measured_fraction_per_size", [])
        partly = [
            f"{fraction:.0%} of the windows of {label_for(SIZE_CHOICES, size)}"
            for size, fraction in zip(result.sizes, per_size, strict=False)
            if fraction < 1
        ]
        return f"every cover size done, {', '.join(partly) or 'all windows'} measured"
    done = ", ".join(label_for(SIZE_CHOICES, s) for s in result.sizes)
    return f"{len(result.sizes)} of {len(sizes)} cover sizes done: {done}"


def refining_caption(label: str, result: SensitivityResult, sizes: tuple[float, ...]) -> str:
    """The caption over a map still being refined."""
    return f"{label} — refining: {covers_done(result, sizes)} · partial map, the final map replaces it"


def partial_note(result: SensitivityResult, sizes: tuple[float, ...]) -> str:
    """The warning over the partial map a stopped run left."""
    return (
        f"Partial map: the run was stopped with {covers_done(result, sizes)}. The finer details are missing and it "
        "has no faithfulness check; press Run again to complete it."
    )


def draw_partial(slot: Any, label: str, photo: PhotoEntry, result: SensitivityResult, sizes: tuple[float, ...]) -> None:
    """Draw a partial map's overlay into ``slot`` (an ``st.empty``), replacing what it showed, with its caption."""
    from ..render import DEFAULT_OPACITY, overlay_figure

    opacity = st.session_state.get(OPACITY_KEY, DEFAULT_OPACITY)
    figure = overlay_figure(photo.image, result, opacity=opacity, hover_classes=False)  # light: redrawn often
    with slot.container():
        st.caption(plain(refining_caption(label, result, sizes)))
        key = f"chart.refining.{result.model_name}.{len(result.sizes)}.{result.passes}"
        st.plotly_chart(figure, key=key, height=640)


def show_partial_maps(photo: PhotoEntry, maps: Sequence[tuple[str, ResultKey]]) -> None:
    """For each ``(network label, key)`` not finished whose stopped run left a partial map: that map's overlay
    under a warning that it is partial."""
    from ..render import overlay_figure

    for label, key in maps:
        partial = partial_result(key)
        if partial is None or key in results():
            continue
        st.warning(plain(f"{label}: {partial_note(partial, key.settings[0])}"), icon=":material/hourglass_bottom:")
        st.plotly_chart(overlay_figure(photo.image, partial), key=f"chart.partial.{key.network}", height=480)
