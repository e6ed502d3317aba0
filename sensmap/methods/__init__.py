"""Other ways to make a sensitivity map, beside occlusion (:func:`sensmap.sensitivity_map`), over the same machinery.

* :func:`gradcam` — Grad-CAM: the last spatial feature maps weighted by the class score's gradient (relative unit).
* :func:`rise` — RISE: random smooth masks, the expected score change when an area is covered (probability points).
* :func:`explain` — any of them by name (``method="occlusion" | "gradcam" | "rise"``), :func:`map_passes` its cost.
* :func:`randomisation_check` — the model-parameter randomisation sanity check of a method's maps.

Every method returns a :class:`sensmap.SensitivityResult` with ``method`` set, so faithfulness, agreement,
reports and ``.npz`` storage take all of them. These modules run TensorFlow (they are part of the engine).
"""

from __future__ import annotations

from ..masks import DEFAULT_GRID, DEFAULT_MASKS, DEFAULT_P, rise_passes
from .explain import explain, map_passes
from .gradcam import gradcam
from .rise import rise
from .sanity import SanityCheck, randomisation_check, randomisation_passes

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_MASKS",
    "DEFAULT_P",
    "SanityCheck",
    "explain",
    "gradcam",
    "map_passes",
    "randomisation_check",
    "randomisation_passes",
    "rise",
    "rise_passes",
]
