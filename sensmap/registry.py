"""The catalogue of Keras Applications classifiers — data only, no TensorFlow import.

Each entry names the ``keras.applications`` constructor, its native input size, the
module whose ``preprocess_input`` it uses, its family (for grouping in the UI), the
parameter count published in the Keras Applications table (millions), and the file
name Keras caches its ImageNet weights under (``~/.keras/models``), so readiness can be
checked without building the network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelError, WeightsError


@dataclass(frozen=True)
class NetworkSpec:
    """One ``keras.applications`` classifier."""

    name: str  # constructor name in keras.applications, e.g. "MobileNetV2"
    module: str  # keras.applications submodule holding preprocess_input, e.g. "mobilenet_v2"
    input_size: int  # native square input side in pixels
    family: str  # grouping for display, e.g. "MobileNet"
    params_millions: float  # published parameter count (include_top=True), millions
    weights_file: Callable[[Mapping[str, Any]], str] = field(repr=False, compare=False)

    def options_input_size(self, options: Mapping[str, Any]) -> tuple[int, int]:
        """Input (H, W) for these constructor options (``input_shape`` overrides the native size)."""
        shape = options.get("input_shape")
        if shape:
            return int(shape[0]), int(shape[1])
        return self.input_size, self.input_size

    def cached_weights_name(self, options: Mapping[str, Any] | None = None) -> str:
        """File name of the ImageNet weights in Keras' cache for these constructor options."""
        return self.weights_file(dict(options or {}))


def _fixed(file_name: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda options: file_name


def _mobilenet_v1(options: Mapping[str, Any]) -> str:
    alpha = float(options.get("alpha", 1.0))
    alpha_text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}.get(alpha, str(alpha))
    rows = int((options.get("input_shape") or (224,))[0])
    return f"mobilenet_{alpha_text}_{rows}_tf.h5"


def _mobilenet_v2(options: Mapping[str, Any]) -> str:
    alpha = float(options.get("alpha", 1.0))
    rows = int((options.get("input_shape") or (224,))[0])
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}.h5"


def _mobilenet_v3(kind: str) -> Callable[[Mapping[str, Any]], str]:
    def name(options: Mapping[str, Any]) -> str:
        minimal = "_minimalistic" if options.get("minimalistic") else ""
        return f"weights_mobilenet_v3_{kind}{minimal}_224_{float(options.get('alpha', 1.0))}_float.h5"

    return name


def _tf_kernels(stem: str) -> Callable[[Mapping[str, Any]], str]:
    return _fixed(f"{stem}_weights_tf_dim_ordering_tf_kernels.h5")


def _build_registry() -> dict[str, NetworkSpec]:
    rows: list[tuple[str, str, int, str, float, Callable[[Mapping[str, Any]], str]]] = [
        ("Xception", "xception", 299, "Xception", 22.9, _tf_kernels("xception")),
        ("VGG16", "vgg16", 224, "VGG", 138.4, _tf_kernels("vgg16")),
        ("VGG19", "vgg19", 224, "VGG", 143.7, _tf_kernels("vgg19")),
        ("ResNet50", "resnet", 224, "ResNet", 25.6, _tf_kernels("resnet50")),
        ("ResNet101", "resnet", 224, "ResNet", 44.7, _tf_kernels("resnet101")),
        ("ResNet152", "resnet", 224, "ResNet", 60.4, _tf_kernels("resnet152")),
        ("ResNet50V2", "resnet_v2", 224, "ResNet", 25.6, _tf_kernels("resnet50v2")),
        ("ResNet101V2", "resnet_v2", 224, "ResNet", 44.7, _tf_kernels("resnet101v2")),
        ("ResNet152V2", "resnet_v2", 224, "ResNet", 60.4, _tf_kernels("resnet152v2")),
        ("InceptionV3", "inception_v3", 299, "Inception", 23.9, _tf_kernels("inception_v3")),
        ("InceptionResNetV2", "inception_resnet_v2", 299, "Inception", 55.9, _tf_kernels("inception_resnet_v2")),
        ("MobileNet", "mobilenet", 224, "MobileNet", 4.3, _mobilenet_v1),
        ("MobileNetV2", "mobilenet_v2", 224, "MobileNet", 3.5, _mobilenet_v2),
        ("MobileNetV3Small", "mobilenet_v3", 224, "MobileNet", 2.6, _mobilenet_v3("small")),
        ("MobileNetV3Large", "mobilenet_v3", 224, "MobileNet", 5.5, _mobilenet_v3("large")),
        ("DenseNet121", "densenet", 224, "DenseNet", 8.1, _tf_kernels("densenet121")),
        ("DenseNet169", "densenet", 224, "DenseNet", 14.3, _tf_kernels("densenet169")),
        ("DenseNet201", "densenet", 224, "DenseNet", 20.2, _tf_kernels("densenet201")),
        ("NASNetMobile", "nasnet", 224, "NASNet", 5.3, _fixed("NASNet-mobile.h5")),
        ("NASNetLarge", "nasnet", 331, "NASNet", 88.9, _fixed("NASNet-large.h5")),
    ]
    efficientnet = [(0, 224, 5.3), (1, 240, 7.9), (2, 260, 9.2), (3, 300, 12.3), (4, 380, 19.5), (5, 456, 30.6),
                    (6, 528, 43.3), (7, 600, 66.7)]  # fmt: skip
    for index, size, params in efficientnet:
        rows.append((f"EfficientNetB{index}", "efficientnet", size, "EfficientNet", params,
                     _fixed(f"efficientnetb{index}.h5")))  # fmt: skip
    efficientnet_v2 = [("B0", "b0", 224, 7.2), ("B1", "b1", 240, 8.2), ("B2", "b2", 260, 10.2), ("B3", "b3", 300, 14.5),
                       ("S", "s", 384, 21.6), ("M", "m", 480, 54.4), ("L", "l", 480, 119.0)]  # fmt: skip
    for suffix, stem, size, params in efficientnet_v2:
        rows.append((f"EfficientNetV2{suffix}", "efficientnet_v2", size, "EfficientNetV2", params,
                     _fixed(f"efficientnetv2-{stem}.h5")))  # fmt: skip
    for suffix, params in [("Tiny", 28.6), ("Small", 50.2), ("Base", 88.5), ("Large", 197.7), ("XLarge", 350.1)]:
        rows.append((f"ConvNeXt{suffix}", "convnext", 224, "ConvNeXt", params, _fixed(f"convnext_{suffix.lower()}.h5")))
    return {row[0]: NetworkSpec(*row) for row in rows}


REGISTRY: dict[str, NetworkSpec] = _build_registry()
_BY_LOWER = {name.lower(): spec for name, spec in REGISTRY.items()}


def _divisible(value: float, divisor: int = 8) -> int:
    """Keras' ``_make_divisible``: the nearest multiple of ``divisor``, at least ``divisor``, never 10 % below."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _mobilenet_v1_count(alpha: float, depth_multiplier: int, classes: int) -> int:
    channels = int(32 * alpha)
    count = 27 * channels + 4 * channels  # 3×3 stem convolution without bias, batch norm (4 numbers a channel)
    for filters in (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024):
        depthwise, pointwise = channels * depth_multiplier, int(filters * alpha)
        count += 9 * depthwise + 4 * depthwise + depthwise * pointwise + 4 * pointwise
        channels = pointwise
    return count + channels * classes + classes  # 1×1 convolution classifier with bias


_MOBILENET_V2_BLOCKS = ((16, 1), (24, 6), (24, 6), (32, 6), (32, 6), (32, 6), (64, 6), (64, 6), (64, 6), (64, 6),
                        (96, 6), (96, 6), (96, 6), (160, 6), (160, 6), (160, 6), (320, 6))  # fmt: skip


def _mobilenet_v2_count(alpha: float, classes: int) -> int:
    channels = _divisible(32 * alpha)
    count = 27 * channels + 4 * channels
    for filters, expansion in _MOBILENET_V2_BLOCKS:
        expanded, out = channels * expansion, _divisible(int(filters * alpha))
        if expansion != 1:
            count += channels * expanded + 4 * expanded  # 1×1 expansion
        count += 9 * expanded + 4 * expanded + expanded * out + 4 * out  # depthwise 3×3, 1×1 projection
        channels = out
    last = _divisible(1280 * alpha) if alpha > 1.0 else 1280
    return count + channels * last + 4 * last + last * classes + classes  # 1×1 head, dense classifier


def parameter_count(name: str, options: Mapping[str, Any] | None = None) -> int | None:
    """The exact number of weights (trainable and not) of a MobileNet or MobileNetV2 variant with these
    constructor options (``alpha``, ``depth_multiplier``, ``classes``; the input size does not change it), from
    the architecture's arithmetic: instant, no TensorFlow. None for other families and for options without top
    (``models.built_parameter_count`` builds any architecture instead)."""
    spec = find_spec(name)
    options = dict(options or {})
    if spec is None or options.get("include_top", True) is False:
        return None
    alpha, classes = float(options.get("alpha", 1.0)), int(options.get("classes", 1000))
    if spec.name == "MobileNet":
        return _mobilenet_v1_count(alpha, int(options.get("depth_multiplier", 1)), classes)
    if spec.name == "MobileNetV2":
        return _mobilenet_v2_count(alpha, classes)
    return None


def find_spec(name: str) -> NetworkSpec | None:
    """The registry entry for ``name`` (case-insensitive), or None."""
    return _BY_LOWER.get(str(name).strip().lower())


def get_spec(name: str) -> NetworkSpec:
    """The registry entry for ``name`` (case-insensitive); ModelError listing close names if unknown."""
    spec = find_spec(name)
    if spec is None:
        import difflib

        close = difflib.get_close_matches(str(name), list(REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else " Run `sensmap models` for the list."
        raise ModelError(f"unknown network {name!r}: not a Keras Applications classifier nor a .keras file.{hint}")
    return spec


def keras_cache_dir() -> Path:
    """Where Keras caches downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(base) / "models"


# --------------------------------------------------------------------------- weights folders


@dataclass(frozen=True)
class LocalWeights:
    """A weights file described by a weights folder's ``manifest.json``."""

    path: Path
    application: str
    options: dict[str, Any]

    @property
    def label(self) -> str:
        """Display name, e.g. ``MobileNet α0.75 192px``."""
        return variant_label(self.application, self.options)


def variant_label(application: str, options: Mapping[str, Any]) -> str:
    """Display name of a network with its constructor options, e.g. ``MobileNet α0.75 192px``."""
    parts = [application]
    if "alpha" in options and float(options["alpha"]) != 1.0:
        parts.append(f"α{float(options['alpha']):g}")
    if options.get("input_shape"):
        spec = find_spec(application)
        side = int(options["input_shape"][0])
        if spec is None or side != spec.input_size:
            parts.append(f"{side}px")
    return " ".join(parts)


def _normalise_options(options: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(options)
    if out.get("input_shape") is not None:
        out["input_shape"] = tuple(int(v) for v in out["input_shape"])
    if "alpha" in out:
        out["alpha"] = float(out["alpha"])
    return out


def read_manifest(folder: str | os.PathLike) -> list[LocalWeights]:
    """Entries of ``folder/manifest.json`` (``{"models": [{"file", "application", "kwargs"}, …]}``).

    Files that do not exist are skipped. A folder without a manifest yields no entries.
    """
    folder = Path(folder)
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return []
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        entries = data["models"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"cannot read weights manifest {manifest}: {exc}") from None
    found = []
    for entry in entries:
        try:
            path = folder / entry["file"]
            application = str(entry["application"])
            options = _normalise_options(entry.get("kwargs") or {})
        except (KeyError, TypeError):
            continue
        if path.is_file():
            found.append(LocalWeights(path=path, application=application, options=options))
    return found


def weights_dir_from_env() -> Path | None:
    """The operator's weights folder, from ``SENSMAP_WEIGHTS_DIR``, if set."""
    value = os.environ.get("SENSMAP_WEIGHTS_DIR", "").strip()
    return Path(value).expanduser() if value else None


def match_local_weights(
    entries: list[LocalWeights], application: str, options: Mapping[str, Any]
) -> LocalWeights | None:
    """The first entry for ``application`` whose options agree with ``options`` on every key both name."""
    wanted = _normalise_options(options)
    spec = find_spec(application)
    for entry in entries:
        if entry.application.lower() != application.lower():
            continue
        merged = {**entry.options}
        ok = True
        for key, value in wanted.items():
            if key in merged and merged[key] != value:
                ok = False
                break
        if ok and "input_shape" in wanted and "input_shape" not in merged and spec is not None:
            ok = wanted["input_shape"][:2] == (spec.input_size, spec.input_size)
        if ok:
            return entry
    return None


def weights_status(spec: NetworkSpec, options: Mapping[str, Any] | None = None) -> str:
    """``"local"`` (in the weights folder), ``"cached"`` (in Keras' cache) or ``"download"``."""
    options = options or {}
    folder = weights_dir_from_env()
    if folder is not None and match_local_weights(read_manifest(folder), spec.name, options):
        return "local"
    if (keras_cache_dir() / spec.cached_weights_name(options)).is_file():
        return "cached"
    return "download"


def is_model_file(text: str) -> bool:
    """Whether a model argument names a file (``.keras``, or a path with a suffix) rather than a registry name."""
    return text.lower().endswith(".keras") or (os.path.sep in text and bool(Path(text).suffix))


def resolve_weights(
    application: str, weights: Any, options: Mapping[str, Any]
) -> tuple[str | None, dict[str, Any], bool]:
    """Where the weights of a Keras Applications network come from, without building it.

    Returns ``(argument for the constructor, constructor options, custom)``: the argument is ``None``
    (random weights), ``"imagenet"`` (Keras' download and cache) or an absolute file path. ``"imagenet"``
    prefers matching weights in ``SENSMAP_WEIGHTS_DIR``; a folder is searched through its ``manifest.json``;
    a file listed in its folder's manifest brings that entry's constructor options (the caller's options
    win). ``custom`` is True for a weights file no manifest describes.
    """
    options = dict(options)
    if weights is None or (isinstance(weights, str) and weights.strip().lower() in ("none", "random")):
        return None, options, False
    if isinstance(weights, str) and weights.strip().lower() == "imagenet":
        folder = weights_dir_from_env()
        entry = match_local_weights(read_manifest(folder), application, options) if folder is not None else None
        if entry is None:
            return "imagenet", options, False
        return str(entry.path.resolve()), {**entry.options, **options}, False
    path = Path(os.fspath(weights)).expanduser().resolve()
    if path.is_dir():
        entries = read_manifest(path)
        entry = match_local_weights(entries, application, options)
        if entry is None:
            kept = ", ".join(e.label for e in entries) or "nothing (no manifest.json)"
            raise WeightsError(f"the weights folder {path} has no weights for {variant_label(application, options)}; "
                               f"it holds {kept}")  # fmt: skip
        return str(entry.path.resolve()), {**entry.options, **options}, False
    if not path.is_file():
        raise WeightsError(f"no such weights file: {path}. Pass 'imagenet', a .weights.h5 file or a weights folder.")
    described = [e for e in read_manifest(path.parent) if e.path.resolve() == path]
    if described:
        return str(path), {**described[0].options, **options}, False
    return str(path), options, True
