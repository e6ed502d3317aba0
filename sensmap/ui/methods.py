"""The Methods page: occlusion, Grad-CAM and RISE maps of network A and the active photo side by side, their
faithfulness against one shared random baseline, the verdict, and the randomisation check.

The occlusion map is the Map page's (its settings, its cached result); Grad-CAM and RISE use the Map page's fill
and score, RISE its own masks, grid and seed (:class:`RiseChoice`). Their maps share the session's result cache
(:mod:`sensmap.ui.result_cache`, keyed by method and settings: the same seed gives the same, cached map) and run
through :mod:`sensmap.ui.runs` (progress bar, Stop). Every map's faithfulness check uses random patches of the
occlusion map's finest cover (:func:`sensmap.sidebyside.shared_block`), so one random baseline serves all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import streamlit as st

from ..masks import DEFAULT_GRID, DEFAULT_MASKS
from ..render import sanity_numbers
from ..serving import ModelWork
from ..sidebyside import SideBySide, checked_with, shared_block, side_by_side
from .costs import Cost, faithfulness_passes, passes_cost
from .map_settings import MapSettings, settings
from .result_cache import ResultKey, result_key, results
from .runs import run_faithfulness_with_progress, run_map_with_progress, run_sanity_with_progress
from .session import K_RISE, state

if TYPE_CHECKING:
    from ..models import Network
    from ..result import SensitivityResult
    from .networks import NetworkChoice
    from .photo_store import PhotoEntry

MASK_CHOICES: tuple[int, ...] = (100, 200, 500, 1000, 2000, 4000)
"""RISE mask counts offered (one forward pass each)."""
GRID_CHOICES: tuple[int, ...] = tuple(range(2, 17))
"""RISE mask grids offered (cells per side)."""


@dataclass(frozen=True)
class RiseChoice:
    """The Methods page's RISE settings: masks (forward passes), grid (cells per side) and seed."""

    masks: int = DEFAULT_MASKS
    grid: int = DEFAULT_GRID
    seed: int = 0


def rise_choice() -> RiseChoice:
    return state(K_RISE, RiseChoice)


def set_rise_choice(value: RiseChoice) -> None:
    st.session_state[K_RISE] = value


@dataclass(frozen=True)
class MethodSettings:
    """A per-pixel method (``gradcam`` or ``rise``) with its settings as ``(name, value)`` pairs in the keywords of
    :func:`sensmap.methods.explain`; like :class:`~sensmap.ui.map_settings.MapSettings` it gives its cache ``key``,
    ``options``, ``passes`` and model ``work``."""

    method: str
    settings: tuple[tuple[str, Any], ...]

    @property
    def key(self) -> tuple:
        return (self.method, *self.settings)

    def options(self) -> dict[str, Any]:
        return dict(self.settings)

    def passes(self, network: Network) -> int:
        """Forward passes of the map (:func:`sensmap.map_passes`: RISE one per mask, Grad-CAM 1)."""
        from ..methods import map_passes

        return map_passes(network, self.method, **self.options())

    def work(self, image: Any, target: int) -> ModelWork:
        """The map as model work (:func:`sensmap.methods.explain`)."""
        return ModelWork("sensmap.methods:explain", (image,), dict(method=self.method, target=target,
                                                                   **self.options()))  # fmt: skip


Settings = MapSettings | MethodSettings


def method_settings(value: MapSettings, rise: RiseChoice) -> list[Settings]:
    """The three maps of the page: occlusion with the Map page's settings, Grad-CAM and RISE with its fill and
    score (RISE with ``rise``'s masks, grid and seed)."""
    shared = (("fill", value.fill_value()), ("score", value.score))
    return [
        value,
        MethodSettings("gradcam", shared),
        MethodSettings("rise", (("masks", rise.masks), ("grid", rise.grid), ("seed", rise.seed), *shared)),
    ]


def method_results(
    choice: NetworkChoice, photo: PhotoEntry, values: Sequence[Settings], target: int
) -> list[SensitivityResult | None]:
    """The cached map of each of ``values`` (None where it is not computed yet)."""
    store = results()
    return [store.get(result_key(choice, photo, value, target)) for value in values]


def methods_ready(found: Sequence[SensitivityResult | None]) -> bool:
    """True when every map is there and checked against the shared random baseline."""
    if any(result is None for result in found):
        return False
    block = shared_block(found)
    return all(checked_with(result, block) for result in found)


def methods_cost(
    choice: NetworkChoice, network: Network, values: Sequence[Settings], found: Sequence[SensitivityResult | None]
) -> Cost:
    """What pressing Run costs: the passes of the missing maps and of the faithfulness checks still needed (each
    new map's, and each cached map's not yet checked against the shared baseline; before the occlusion map exists
    its block is unknown, so every cached map counts)."""
    occlusion = found[0]
    block = shared_block([occlusion]) if occlusion is not None else None
    maps = sum(value.passes(network) for value, result in zip(values, found, strict=True) if result is None)
    checks = sum(result is None or block is None or not checked_with(result, block) for result in found)
    return passes_cost(choice, maps, checks * faithfulness_passes())


def run_methods(
    choice: NetworkChoice, network: Network, photo: PhotoEntry, values: Sequence[Settings], target: int
) -> list[SensitivityResult] | None:
    """Compute what is missing: the occlusion map first (its finest cover sets the shared block), then Grad-CAM and
    RISE, each with its faithfulness check against the shared baseline; None when something failed or was stopped
    (what finished stays cached)."""
    found = []
    block = None
    for value in values:
        result = run_map_with_progress(choice, network, photo, value, target, queue=False)
        if result is None:
            return None
        block = shared_block([result]) if block is None else block
        if not checked_with(result, block) and run_faithfulness_with_progress(
            choice, network, photo, result, block=block
        ) is None:  # fmt: skip
            return None
        found.append(result)
    return found


def methods_comparison(photo: PhotoEntry, found: Sequence[SensitivityResult]) -> SideBySide:
    """The side-by-side numbers of the maps (:func:`sensmap.sidebyside.side_by_side`) on the photo's grid."""
    return side_by_side(found, photo.image.pixels.shape[:2])


def sanity_jobs(values: Sequence[Settings], found: Sequence[SensitivityResult]) -> list[tuple[Settings, Any]]:
    """``(settings, result)`` of the maps without a randomisation check yet."""
    return [(value, result) for value, result in zip(values, found, strict=True) if sanity_numbers(result) is None]


def sanity_cost(choice: NetworkChoice, network: Network, jobs: Sequence[tuple[Settings, Any]]) -> Cost:
    """Passes and time of the randomisation checks of ``jobs`` (:func:`sensmap.randomisation_passes`, its default
    steps; the original maps are not recomputed)."""
    from ..methods import randomisation_passes
    from ..methods.sanity import DEFAULT_STEPS

    passes = sum(
        randomisation_passes(network, value.method, DEFAULT_STEPS, original=True, **value.options())
        for value, _ in jobs
    )
    return passes_cost(choice, 0, passes)


def run_sanity(
    choice: NetworkChoice, network: Network, photo: PhotoEntry, jobs: Sequence[tuple[Settings, Any]]
) -> bool:
    """Run the randomisation checks of ``jobs`` (:func:`sensmap.randomisation_check`'s default steps) with a progress
    bar (:func:`sensmap.ui.runs.run_sanity_with_progress`)."""
    from ..methods.sanity import DEFAULT_STEPS

    return run_sanity_with_progress(choice, network, photo, jobs, DEFAULT_STEPS)


def report_method_keys(photo: PhotoEntry, choice: NetworkChoice, target: int) -> list[ResultKey]:
    """The cache keys of the Methods page's maps of this photo, network and class with the current settings, when
    all are there and checked against the shared baseline (the Report page can include them), else ``[]``."""
    keys = [result_key(choice, photo, value, target) for value in method_settings(settings(), rise_choice())]
    return keys if methods_ready([results().get(key) for key in keys]) else []
