"""One entry point for every map method: ``explain(model, image, method=...)`` and its cost, ``map_passes``.

The methods share their target, progress and cancel arguments; each takes its own settings (occlusion:
sizes, stride, fill, score, mode…; Grad-CAM: fill, score for the faithfulness check; RISE: masks, grid, p,
seed, fill, score…). The CLI, the sanity check and the dashboard go through here, so a method name always
means the same computation.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..engine import CancelToken, ProgressCallback, _as_network, plan_passes, sensitivity_map
from ..errors import ParameterError
from ..images import LoadedImage
from ..masks import DEFAULT_MASKS, rise_passes
from ..models import Network
from ..result import METHOD_LABELS, SensitivityResult, validate_method
from ..windows import DEFAULT_SIZES, DEFAULT_STRIDE
from .gradcam import gradcam
from .rise import rise

_FUNCTIONS: dict[str, Callable[..., SensitivityResult]] = {
    "occlusion": sensitivity_map,
    "gradcam": gradcam,
    "rise": rise,
}
_SHARED = ("model", "image", "target", "progress", "cancel")


def method_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against the method's own settings (a :class:`ParameterError` names the valid ones)."""
    method = validate_method(method)
    accepted = [name for name in inspect.signature(_FUNCTIONS[method]).parameters if name not in _SHARED]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ParameterError(
            f"{METHOD_LABELS[method]} does not take {', '.join(unknown)}; its settings are {', '.join(accepted)}"
        )
    return dict(options)


def explain(
    model: Network | Any,
    image: LoadedImage | Any,
    *,
    method: str = "occlusion",
    target: int | str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | Callable[[], bool] | None = None,
    **options: Any,
) -> SensitivityResult:
    """The ``method`` map (``occlusion``, ``gradcam`` or ``rise``) of ``image`` for one class of ``model``.

    ``options`` are the method's own settings (see :func:`sensmap.sensitivity_map`,
    :func:`sensmap.gradcam`, :func:`sensmap.rise`); the result records the method and its settings.
    """
    method = validate_method(method)
    options = method_options(method, options)
    return _FUNCTIONS[method](model, image, target=target, progress=progress, cancel=cancel, **options)


def map_passes(model: Network | Any, method: str = "occlusion", **options: Any) -> int:
    """Forward passes one ``method`` map with these settings needs (the reference pass not counted).

    Occlusion: :func:`sensmap.plan_passes`; RISE: one per mask; Grad-CAM: 1 (a forward and a backward pass).
    """
    method = validate_method(method)
    options = method_options(method, options)
    if method == "rise":
        return rise_passes(options.get("masks", DEFAULT_MASKS))
    if method == "gradcam":
        return 1
    sizes, stride = options.get("sizes", DEFAULT_SIZES), options.get("stride", DEFAULT_STRIDE)
    return plan_passes(_as_network(model), sizes, stride, options.get("mode", "exact"))
