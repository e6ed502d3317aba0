"""sensmap — where does an image classifier look?

Occlusion sensitivity maps for Keras classifiers: cover parts of a photo, watch the class
probability move. Support > 0: covering the area lowers the class score (it supports the
class); support < 0: covering it raises the score (it inhibits the class).

The heavy entry points (which import TensorFlow) load on first use, so the pure-numpy parts
(``sensmap.windows``, ``sensmap.result``, ``sensmap.metrics``…) import quickly.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    BudgetError,
    CancelledError,
    ImageError,
    ModelError,
    ParameterError,
    SensmapError,
    WeightsError,
)

_LAZY = {
    "load_model": "models",
    "Network": "models",
    "imagenet_class_names": "models",
    "classify": "engine",
    "sensitivity_map": "engine",
    "plan_passes": "engine",
    "prepare_incremental": "engine",
    "faithfulness": "engine",
    "tell_story": "story",
    "agreement": "metrics",
    "stability": "metrics",
    "pointing": "metrics",
    "Prediction": "engine",
    "load_image": "images",
    "LoadedImage": "images",
    "SensitivityResult": "result",
    "REGISTRY": "registry",
}

__all__ = [
    "BudgetError",
    "CancelledError",
    "ImageError",
    "ModelError",
    "ParameterError",
    "SensmapError",
    "WeightsError",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'sensmap' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value
