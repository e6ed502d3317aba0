"""Which maps a report shows, and the session's PNG reports (the preview and the download share one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import streamlit as st

from .map_settings import settings
from .result_cache import ResultKey, result_key, results
from .session import K_LAST, K_REPORTS, K_TARGETS, K_TOP, state
from .trust import stability_numbers

if TYPE_CHECKING:
    from ..result import SensitivityResult
    from .networks import NetworkChoice
    from .photo_store import PhotoEntry

MAX_REPORTS = 4


def report_keys(photo: PhotoEntry, choice_a: NetworkChoice, choice_b: NetworkChoice | None) -> list[ResultKey]:
    """The maps a report can show: network A's map of the photo (current settings, else the last
    finished one) and, when computed with the same settings, network B's map for comparison."""
    store = results()
    chosen = st.session_state.get(K_TARGETS, {}).get((photo.sha256, choice_a.key))
    top = st.session_state.get(K_TOP, {}).get((photo.sha256, choice_a.key))
    target = chosen if chosen is not None else (top[0][0] if top else None)
    key_a = result_key(choice_a, photo, settings(), target) if target is not None else None
    if key_a not in store:
        key_a = st.session_state.get(K_LAST, {}).get((photo.sha256, choice_a.key))
    if key_a not in store:
        return []
    if choice_b is None:
        return [key_a]
    name = store[key_a].target_name
    candidates = [k for k in store if (k.photo, k.network, k.settings) == (photo.sha256, choice_b.key, key_a.settings)]
    candidates.sort(key=lambda k: store[k].target_name == name)
    return [key_a, candidates[-1]] if candidates else [key_a]


def report_png_cached(photo: PhotoEntry, keys: Sequence[ResultKey], method_keys: Sequence[ResultKey] = ()) -> bytes:
    """The PNG report of these results, with the Methods page's maps side by side when ``method_keys`` are given
    (see :func:`sensmap.ui.methods.report_method_keys`); kept for the session: the preview and the download share
    it."""
    from ..report import report_png

    for key in keys:  # maps with other fills may have finished since: the stability numbers include them
        stability_numbers(key, results()[key])
    store = state(K_REPORTS, dict)
    shown = [results()[k] for k in (*keys, *method_keys)]
    cache_key = (tuple(keys), tuple(method_keys), tuple(_trust_fingerprint(r) for r in shown))
    if cache_key not in store:
        methods = [results()[k] for k in method_keys] or None
        store[cache_key] = report_png(
            photo.image, [results()[k] for k in keys], photo_credit=photo.credit, methods=methods
        )
        while len(store) > MAX_REPORTS:
            del store[next(iter(store))]
    return store[cache_key]


def _trust_fingerprint(result: SensitivityResult) -> tuple:
    """What of a result's trust numbers can change after it is made (a report shows the current ones)."""
    meta = result.metadata
    box = (meta.get("pointing") or {}).get("box_photo")
    block = (meta.get("faithfulness") or {}).get("block")
    return (tuple(box) if box else None, (meta.get("stability") or {}).get("score"), "faithfulness" in meta, block,
            "sanity" in meta)  # fmt: skip
