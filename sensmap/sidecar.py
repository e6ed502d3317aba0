"""The sidecar ``model.json`` beside a model file: labels, preprocessing, output kind — no TensorFlow.

An operator drops ``model.onnx`` (or ``model.keras``) and ``model.json`` into a folder, and sensmap (the
API, the CLI, the dashboard's ``SENSMAP_MODELS_DIR``, the audit) knows how to use the network without code::

    {
      "preprocess": "torchvision",            # required: a name (none, tf, caffe, torch, torchvision, unit, or a
                                               #   Keras Applications family) or {"mean": [..], "std": [..]} (0..1)
      "output": "classes",                    # required: classes, multi-label, embedding or values
      "labels": ["cat", "dog"],               # optional: names in output order, or a file name (one per line)
      "input_size": [224, 224]                # optional: (height, width) for a graph whose input size is dynamic
    }

Arguments given in code (``load_model(..., labels=..., preprocess=..., output=...)``) win over the sidecar.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError, ParameterError
from .scores import OUTPUT_KINDS, validate_output_kind

SIDECAR_FIELDS: dict[str, str] = {
    "preprocess": 'required: a preprocessing name or {"mean": [r, g, b], "std": [r, g, b]} on the 0..1 scale',
    "output": f"required: what the output vector is, one of {', '.join(OUTPUT_KINDS)}",
    "labels": "optional: output names in order, or a labels file (one name per line) beside the sidecar",
    "input_size": "optional: [height, width] in pixels, for a graph whose input size is dynamic",
}
REQUIRED_FIELDS: tuple[str, ...] = ("preprocess", "output")


@dataclass(frozen=True)
class Sidecar:
    """A model's sidecar, checked: ``labels`` are names or an absolute labels-file path."""

    path: Path
    preprocess: str | dict[str, Any]
    output: str
    labels: tuple[str, ...] | str | None = None
    input_size: tuple[int, int] | None = None


def sidecar_path(model_path: str | os.PathLike) -> Path:
    """Where a model's sidecar lives: the same name with ``.json`` (``net.onnx`` → ``net.json``)."""
    return Path(model_path).with_suffix(".json")


def read_sidecar(model_path: str | os.PathLike) -> Sidecar | None:
    """The sidecar of ``model_path``, or None when there is none; a :class:`ModelError` naming the file and
    the field when it is not valid JSON, lacks a required field or has a wrong value."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"cannot read the sidecar {path.name}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"the sidecar {path.name} must hold a JSON object with the fields {', '.join(SIDECAR_FIELDS)}")
    unknown = sorted(set(data) - set(SIDECAR_FIELDS))
    if unknown:
        raise ModelError(f"the sidecar {path.name} has unknown fields {unknown}; known: {', '.join(SIDECAR_FIELDS)}")
    for name in REQUIRED_FIELDS:
        if name not in data:
            raise ModelError(f"the sidecar {path.name} lacks the field {name!r} ({SIDECAR_FIELDS[name]})")
    preprocess = data["preprocess"]
    if not isinstance(preprocess, (str, dict)):
        raise ModelError(f"the sidecar {path.name}: 'preprocess' is {SIDECAR_FIELDS['preprocess']}")
    try:
        output = validate_output_kind(data["output"])
    except ParameterError as exc:
        raise ModelError(f"the sidecar {path.name}: {exc}") from None
    return Sidecar(path, preprocess, output, _labels(path, data.get("labels")), _input_size(path, data))


def _labels(path: Path, labels: Any) -> tuple[str, ...] | str | None:
    if labels is None:
        return None
    if isinstance(labels, str):
        return str((path.parent / labels).resolve())
    if isinstance(labels, list) and all(isinstance(name, str) for name in labels):
        return tuple(labels)
    raise ModelError(f"the sidecar {path.name}: 'labels' is {SIDECAR_FIELDS['labels']}")


def _input_size(path: Path, data: dict[str, Any]) -> tuple[int, int] | None:
    size = data.get("input_size")
    if size is None:
        return None
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ModelError(f"the sidecar {path.name}: 'input_size' is {SIDECAR_FIELDS['input_size']}, got {size!r}")
    return int(size[0]), int(size[1])
