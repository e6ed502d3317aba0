"""The session's maps (keyed by photo, network, method, settings and class) and the classes they explain.

Occlusion maps (the Map page's) and the Methods page's Grad-CAM and RISE maps share one cache of finished maps,
``sensmap.results``; only occlusion maps become a photo and network's "last finished map" (the Map page shows it,
with views that need windows). The last partial map of a stopped run (marked ``result.partial``) stays in
``sensmap.partial`` until the same map finishes. Only finished maps count as ready, go into reports and
comparisons, and get a faithfulness check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import streamlit as st

from ..errors import SensmapError
from .session import K_LAST, K_PARTIAL, K_RESULTS, K_TARGETS, K_TOP, state

if TYPE_CHECKING:
    from ..models import Network
    from ..result import SensitivityResult
    from .map_settings import MapSettings
    from .methods import MethodSettings
    from .networks import NetworkChoice
    from .photo_store import PhotoEntry

MAX_RESULTS = 24
MAX_PARTIAL = 4


@dataclass(frozen=True)
class ResultKey:
    """What a map depends on: photo, network, settings, target class and method (its settings' ``key``)."""

    photo: str
    network: str
    settings: tuple
    target: int
    method: str = "occlusion"


def top_classes(choice: NetworkChoice, network: Network, photo: PhotoEntry) -> list[tuple[int, str, float]]:
    """Top-5 ``(index, name, probability)`` of the whole photo (kept per photo and network); none for a network
    without classes (embeddings, values)."""
    from ..engine import classify
    from .score_views import has_classes

    if not has_classes(network):
        return []
    store = state(K_TOP, dict)
    key = (photo.sha256, choice.key)
    if key not in store:
        store[key] = [(p.index, p.name, p.probability) for p in classify(network, photo.image, top=5)]
    return store[key]


def target_for(choice: NetworkChoice, network: Network, photo: PhotoEntry) -> int:
    """The class the map explains: the one picked on the Map page, else the top-1 class."""
    chosen = state(K_TARGETS, dict).get((photo.sha256, choice.key))
    top = top_classes(choice, network, photo)
    return chosen if chosen is not None else (top[0][0] if top else 0)


def set_target(choice: NetworkChoice, photo: PhotoEntry, index: int) -> None:
    state(K_TARGETS, dict)[(photo.sha256, choice.key)] = int(index)


def target_widget_key(choice: NetworkChoice, photo: PhotoEntry) -> str:
    return f"w.target.{photo.sha256[:16]}.{choice.key}"


def same_class(network: Network, name: str, fallback: int) -> int:
    """Index of class ``name`` in ``network`` (for comparing two networks on one class), else ``fallback``."""
    try:
        return network.class_index(name)
    except SensmapError:
        return fallback


def result_key(choice: NetworkChoice, photo: PhotoEntry, value: MapSettings | MethodSettings, target: int) -> ResultKey:
    return ResultKey(photo.sha256, choice.key, value.key, int(target), value.method)


def results() -> dict[ResultKey, SensitivityResult]:
    return state(K_RESULTS, dict)


def store_result(key: ResultKey, result: SensitivityResult) -> None:
    """Keep a finished map (the most recent :data:`MAX_RESULTS`); it replaces the key's partial map."""
    state(K_PARTIAL, dict).pop(key, None)
    store = results()
    store.pop(key, None)
    store[key] = result
    while len(store) > MAX_RESULTS:
        del store[next(iter(store))]
    if key.method == "occlusion":
        state(K_LAST, dict)[(key.photo, key.network)] = key


def keep_partial(key: ResultKey, result: SensitivityResult) -> None:
    """Keep the latest partial map of a run (``result.partial``; the most recent :data:`MAX_PARTIAL` keys)."""
    store = state(K_PARTIAL, dict)
    store.pop(key, None)
    store[key] = result
    while len(store) > MAX_PARTIAL:
        del store[next(iter(store))]


def partial_result(key: ResultKey) -> SensitivityResult | None:
    """The partial map a stopped run left for ``key`` (None when there is none, or the map finished)."""
    return st.session_state.get(K_PARTIAL, {}).get(key)


def result_to_show(key: ResultKey) -> tuple[SensitivityResult | None, bool]:
    """``(result, exact)``: the map for ``key`` — finished, else the partial map of a stopped run (its
    ``partial`` is true) — else the last finished one of this photo and network (``exact`` false)."""
    store = results()
    if key in store:
        return store[key], True
    if (partial := partial_result(key)) is not None:
        return partial, True
    last = st.session_state.get(K_LAST, {}).get((key.photo, key.network))
    return (store[last], False) if last in store else (None, False)


def last_key(photo: PhotoEntry, choice: NetworkChoice) -> ResultKey | None:
    """The key of the last finished map of this photo and network (None before any)."""
    return st.session_state.get(K_LAST, {}).get((photo.sha256, choice.key))
