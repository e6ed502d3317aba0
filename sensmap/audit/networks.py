"""The audit's networks: :class:`ModelSpec`, a picklable recipe a worker loads a network from, resolved on
the driver without TensorFlow and fingerprinted with the files it reads."""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..registry import get_spec, is_model_file, resolve_weights, variant_label

_NAME_PREFIX = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)=(.+)$")


def model_slug(text: str) -> str:
    """A folder-safe network name: ASCII (α→a), ``[A-Za-z0-9._-]`` only, e.g. ``MobileNet_a0.25_128px``."""
    from ..report import safe_name

    return safe_name(text, "model", limit=80)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _plain_option(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_plain_option(v) for v in value)
    return value


def _keras_input_size(path: Path) -> tuple[int, int]:
    """The (H, W) input of a ``.keras`` file, read from its ``config.json`` (no TensorFlow)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelError(f"cannot read {path.name}: it is not a Keras 3 .keras file ({exc})") from None
    inner = config.get("config", {}) if isinstance(config, dict) else {}
    shapes = []
    for layer in inner.get("layers", []) if isinstance(inner, dict) else []:
        if isinstance(layer, dict) and layer.get("class_name") == "InputLayer":
            layer_config = layer.get("config", {})
            shapes.append(layer_config.get("batch_shape") or layer_config.get("batch_input_shape"))
    if not shapes and isinstance(inner, dict) and inner.get("build_input_shape"):
        shapes.append(inner["build_input_shape"])
    if len(shapes) != 1 or not shapes[0] or len(shapes[0]) != 4:
        raise ModelError(f"{path.name}: sensmap needs a model with exactly one image input (batch, H, W, 3)")
    height, width = shapes[0][1], shapes[0][2]
    if not isinstance(height, int) or not isinstance(width, int):
        raise ModelError(f"{path.name}: the input size is not fixed ({shapes[0]}); build it with a fixed input_shape")
    return height, width


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads a network — picklable, resolved on the driver without TensorFlow.

    ``source`` is a Keras Applications name or an absolute ``.keras`` path; ``weights`` ``"imagenet"``,
    an absolute weights file, or ``None`` (random). ``name`` is the folder name (``maps/model=<name>``),
    ``network`` the network's display name, ``input_size`` its grid and ``fingerprint`` a hash of the
    spec and of the files it reads (a changed file is refused by an existing audit folder).
    """

    name: str
    network: str
    source: str
    weights: str | None
    labels: str | None
    preprocess: str | None
    options: tuple[tuple[str, Any], ...]
    input_size: tuple[int, int]
    fingerprint: str

    def load(self):
        """The :class:`sensmap.Network` (imports TensorFlow; called in the workers)."""
        from ..models import load_model

        return load_model(
            self.source, weights=self.weights, labels=self.labels, preprocess=self.preprocess, **dict(self.options)
        )

    def describe(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "source": self.source,
            "weights": self.weights,
            "labels": self.labels,
            "preprocess": self.preprocess,
            "options": dict(self.options),
            "input_size": list(self.input_size),
            "fingerprint": self.fingerprint,
        }


def resolve_model(
    text: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = "imagenet",
    labels: str | os.PathLike | None = None,
    preprocess: str | None = None,
    options: dict[str, Any] | None = None,
    name: str | None = None,
) -> ModelSpec:
    """A :class:`ModelSpec` for a Keras Applications name or ``.keras`` file (``NAME=SOURCE`` names the folder).

    Mirrors :func:`sensmap.load_model`'s resolution of weights (``SENSMAP_WEIGHTS_DIR``, weights folders
    and their ``manifest.json``) without building the network, so mistakes surface before any work.
    """
    text = os.fspath(text).strip()
    match = _NAME_PREFIX.match(text)
    if match and name is None and not os.path.exists(text):
        name, text = match.group(1), match.group(2).strip()
    options = dict(options or {})
    labels_path = str(Path(labels).expanduser().resolve()) if labels else None
    if labels_path and not Path(labels_path).is_file():
        raise ModelError(f"no such labels file: {labels_path}")
    files: dict[str, str] = {}
    if labels_path:
        files["labels"] = _file_sha256(Path(labels_path))
    if is_model_file(text):
        path = Path(text).expanduser().resolve()
        if not path.is_file():
            raise ModelError(f"no such model file: {path}")
        if path.suffix.lower() != ".keras":
            raise ModelError(f"{path.name}: own models must be saved in the Keras 3 format (model.save('name.keras'))")
        files["model"] = _file_sha256(path)
        network, source, weights_arg = path.stem, str(path), None
        input_size = _keras_input_size(path)
        default_name = model_slug(network)
    else:
        spec = get_spec(text)
        weights_arg, options, custom = resolve_weights(spec.name, weights, options)
        if weights_arg not in (None, "imagenet"):
            files["weights"] = _file_sha256(Path(weights_arg))
        network, source = variant_label(spec.name, options), spec.name
        input_size = spec.options_input_size(options)
        default_name = model_slug(network)
        if weights_arg is None:
            default_name += "-random"
        elif custom:
            default_name += "-" + model_slug(Path(weights_arg).name.split(".")[0])
    folder_name = model_slug(name) if name else default_name
    ordered = tuple(sorted((str(k), _plain_option(v)) for k, v in options.items()))
    identity = {
        "source": source,
        "weights": weights_arg,
        "labels": labels_path,
        "preprocess": preprocess,
        "options": ordered,
        "files": files,
    }
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return ModelSpec(
        name=folder_name,
        network=network,
        source=source,
        weights=weights_arg,
        labels=labels_path,
        preprocess=preprocess,
        options=ordered,
        input_size=(int(input_size[0]), int(input_size[1])),
        fingerprint=fingerprint,
    )
