"""Loading classifiers: Keras Applications by name, own ``.keras`` files, in-memory Keras models.

A :class:`Network` bundles a Keras model with everything sensmap needs to use it:
its input grid, its preprocessing (applied to raw 0..255 RGB pixels inside the
compiled call), its class names, and whether its outputs need a softmax to become
probabilities. Only this module and :mod:`sensmap.engine` import TensorFlow.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError, WeightsError
from .registry import (
    NetworkSpec,
    find_spec,
    get_spec,
    is_model_file,
    keras_cache_dir,
    resolve_weights,
    variant_label,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Hide TensorFlow's native start-up lines (oneDNN notice, CUDA probing) that it writes to the process's
    stderr before its own log settings apply. Python errors still surface: they are raised, not written.
    ``SENSMAP_TF_LOGS=1`` keeps them."""
    if os.environ.get("SENSMAP_TF_LOGS") == "1":
        yield
        return
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


with _quiet_native_stderr():
    import keras
    import tensorflow as tf

    for _gpu in tf.config.list_physical_devices("GPU"):  # dashboards share the card: take memory as needed
        try:
            tf.config.experimental.set_memory_growth(_gpu, True)
        except RuntimeError:  # the GPU was initialised already; its setting stays
            pass


PREPROCESS_MODES: dict[str, str] = {
    "none": "raw pixels 0..255",
    "tf": "scaled to -1..1",
    "caffe": "BGR, ImageNet mean subtracted",
    "torch": "0..1, ImageNet mean/std normalised",
    "unit": "scaled to 0..1",
}

Preprocess = Callable[[tf.Tensor], tf.Tensor]


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in Keras' class order (shipped with sensmap, no download)."""
    text = importlib.resources.files("sensmap").joinpath("data/imagenet_class_index.json").read_text("utf-8")
    index = json.loads(text)
    return tuple(index[str(i)][1] for i in range(len(index)))


def make_preprocess(name: str) -> Preprocess:
    """Preprocessing by name: a mode of :data:`PREPROCESS_MODES` or a Keras Applications network/module name.

    The returned function maps raw RGB pixels (float32, 0..255) to the network's input.
    """
    key = str(name).strip().lower()
    if key == "none":
        return tf.identity
    if key == "unit":
        return lambda x: x / 255.0
    if key in ("tf", "caffe", "torch"):
        from keras.applications import imagenet_utils

        return lambda x: imagenet_utils.preprocess_input(x, mode=key)
    spec = find_spec(name)
    module_name = spec.module if spec else key
    try:
        module = getattr(keras.applications, module_name)
        return module.preprocess_input
    except AttributeError:
        raise ModelError(
            f"unknown preprocessing {name!r}: use one of {', '.join(PREPROCESS_MODES)} "
            "or a Keras Applications family such as mobilenet_v2, resnet, vgg16"
        ) from None


@dataclass(eq=False)
class Network:
    """A classifier ready for sensmap.

    ``predict`` takes raw RGB pixels (float32, 0..255, shape ``(n, H, W, 3)``) and returns
    class probabilities ``(n, classes)``: preprocessing and (when needed) softmax happen
    inside one compiled TensorFlow function.
    """

    model: keras.Model
    name: str
    input_size: tuple[int, int]  # (H, W) pixels of the network input grid
    labels: tuple[str, ...]
    preprocess_name: str
    preprocess: Preprocess = field(repr=False)
    source: str  # "keras.applications", a .keras path, or "in-memory"
    weights: str  # description of the weights used
    family: str = "custom"
    softmax_applied: bool = False  # outputs were logits/scores; sensmap applies softmax
    _compiled: Any = field(default=None, repr=False)
    _incremental: Any = field(default=None, repr=False)  # sensmap.incremental.IncrementalModel, built on first use
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def parameter_count(self) -> int:
        return int(self.model.count_params())

    def _forward(self, pixels: tf.Tensor) -> tf.Tensor:
        outputs = self.model(self.preprocess(pixels), training=False)
        outputs = tf.cast(outputs, tf.float32)
        if self.softmax_applied:
            outputs = tf.nn.softmax(outputs, axis=-1)
        return outputs

    @property
    def compiled_predict(self) -> Callable[[tf.Tensor], tf.Tensor]:
        """The compiled call (a ``tf.function`` traced once for any batch size)."""
        with self._lock:
            if self._compiled is None:
                height, width = self.input_size
                self._compiled = tf.function(
                    self._forward,
                    input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)],
                    reduce_retracing=True,
                )
            return self._compiled

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, classes)`` float32 for raw pixels ``(n, H, W, 3)`` or ``(H, W, 3)``."""
        batch = np.asarray(pixels, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        return self.compiled_predict(tf.constant(batch)).numpy()

    def class_index(self, target: int | str) -> int:
        """Resolve a class index or name (case-insensitive, ``_`` = space) to an index."""
        from .errors import ParameterError

        if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
            index = int(target)
            if not 0 <= index < self.num_classes:
                raise ParameterError(
                    f"class index {index} is out of range: this network has {self.num_classes} classes"
                )
            return index
        text = str(target).strip()
        if text.lstrip("-").isdigit():
            return self.class_index(int(text))
        wanted = _label_key(text)
        for index, label in enumerate(self.labels):
            if _label_key(label) == wanted:
                return index
        import difflib

        close = difflib.get_close_matches(text, self.labels, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ParameterError(f"unknown target class {text!r} for {self.name}.{hint}")


def _label_key(label: str) -> str:
    return " ".join(str(label).replace("_", " ").lower().split())


# --------------------------------------------------------------------------- loading


def load_model(
    name_or_path: str | os.PathLike | keras.Model,
    weights: str | os.PathLike | None = "imagenet",
    labels: str | os.PathLike | Sequence[str] | None = None,
    preprocess: str | Preprocess | None = None,
    **constructor_options: Any,
) -> Network:
    """Load a classifier.

    ``name_or_path`` is a Keras Applications name (case-insensitive, e.g. ``"MobileNetV2"``),
    a ``.keras`` file (loaded with ``safe_mode=True``), or a ``keras.Model`` already in memory.

    ``weights`` (Keras Applications only): ``"imagenet"`` — from the folder named by
    ``SENSMAP_WEIGHTS_DIR`` when it has matching weights, else Keras' own download and cache
    (``~/.keras/models``); a local ``.weights.h5``/``.h5`` file; a local weights folder with a
    ``manifest.json``; or ``None`` for random weights. ``labels``: a file with one class name
    per line, or a sequence of names. ``preprocess``: a name (see :func:`make_preprocess`) or a
    callable on raw 0..255 pixels. Constructor options (``alpha``, ``input_shape``…) pass through.
    """
    if isinstance(name_or_path, keras.Model):
        return _wrap(
            name_or_path,
            name=name_or_path.name,
            preprocess=preprocess or "none",
            labels=labels,
            source="in-memory",
            weights="in-memory",
        )
    text = os.fspath(name_or_path)
    if is_model_file(text):
        return _load_keras_file(Path(text), labels=labels, preprocess=preprocess)
    return _load_application(get_spec(text), weights, labels, preprocess, constructor_options)


def _load_keras_file(path: Path, labels: Any, preprocess: Any) -> Network:
    if not path.is_file():
        raise ModelError(f"no such model file: {path}")
    if path.suffix.lower() != ".keras":
        raise ModelError(f"{path.name}: own models must be saved in the Keras 3 format (model.save('name.keras'))")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types; the message is what matters
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise ModelError(
                f"{path.name} was refused: it contains code (a Lambda layer or custom object) that safe mode "
                "will not run. Rebuild it with standard layers, or register the custom layer in your own script."
            ) from None
        raise ModelError(f"cannot load {path.name}: {message}") from None
    return _wrap(model, name=path.stem, preprocess=preprocess or "none", labels=labels, source=str(path),
                 weights=str(path))  # fmt: skip


def _load_application(
    spec: NetworkSpec, weights: Any, labels: Any, preprocess: Any, options: dict[str, Any]
) -> Network:
    weights_arg, options, _ = resolve_weights(spec.name, weights, options)
    weights_text = "random (untrained)" if weights_arg is None else weights_arg
    constructor = getattr(keras.applications, spec.name)
    try:
        model = constructor(weights=weights_arg, **options)
    except TypeError as exc:
        raise ModelError(f"{spec.name} does not accept these options {options}: {exc}") from None
    except ValueError as exc:
        if weights_arg not in (None, "imagenet"):
            raise WeightsError(
                f"the weights file {weights_text} does not fit {variant_label(spec.name, options)}: "
                f"{str(exc).splitlines()[0]}. Pass the constructor options it was saved with (e.g. alpha, input_shape)."
            ) from None
        raise ModelError(f"cannot build {spec.name} with {options}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # noqa: BLE001 - download and HDF5 errors come in many types
        if weights_arg == "imagenet":
            file_name = spec.cached_weights_name(options)
            raise WeightsError(
                f"could not get the ImageNet weights for {spec.name} ({file_name}): "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. "
                f"If this machine is offline, copy {file_name} into {keras_cache_dir()}, or set "
                "SENSMAP_WEIGHTS_DIR to a folder with the weights and a manifest.json describing them."
            ) from None
        raise WeightsError(f"cannot read the weights file {weights_text}: {str(exc).splitlines()[0]}") from None
    height, width = spec.options_input_size(options)
    if not options.get("input_shape"):
        shape = model.input_shape
        height, width = int(shape[1] or height), int(shape[2] or width)
    return _wrap(
        model,
        name=variant_label(spec.name, options),
        preprocess=preprocess or spec.module,
        labels=labels,
        source="keras.applications",
        weights=weights_text,
        family=spec.family,
        input_size=(height, width),
    )


_COUNT_LOCK = threading.Lock()


def built_parameter_count(name: str, options: dict[str, Any] | None = None) -> int:
    """The exact number of weights (trainable and not) of a Keras Applications network with these
    constructor options (e.g. ``alpha``, ``input_shape``), counted on the architecture built without
    weights: nothing is downloaded. Cached per process; a few tenths of a second the first time."""
    spec = get_spec(name)
    key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in (options or {}).items()))
    return _parameter_count(spec.name, key)


@lru_cache(maxsize=64)
def _parameter_count(name: str, options: tuple[tuple[str, Any], ...]) -> int:
    constructor = getattr(keras.applications, name)
    with _COUNT_LOCK:
        try:
            model = constructor(weights=None, **dict(options))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"cannot build {name} with {dict(options)}: {str(exc).splitlines()[0]}") from None
        count = int(model.count_params())
    del model
    return count


def _read_labels(labels: Any, count: int) -> tuple[str, ...] | None:
    if labels is None:
        return None
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        try:
            names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelError(f"cannot read labels file {path}: {exc}") from None
        while names and not names[-1]:
            names.pop()
    else:
        names = [str(n) for n in labels]
    if len(names) != count:
        raise ModelError(f"the labels list has {len(names)} names but the network has {count} outputs; "
                         "give one name per output, in output order")  # fmt: skip
    return tuple(names)


def _wrap(
    model: keras.Model,
    *,
    name: str,
    preprocess: str | Preprocess,
    labels: Any,
    source: str,
    weights: str,
    family: str = "custom",
    input_size: tuple[int, int] | None = None,
) -> Network:
    inputs = model.inputs if hasattr(model, "inputs") else None
    if not inputs or len(inputs) != 1:
        raise ModelError(f"{name}: sensmap needs a model with exactly one image input")
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise ModelError(f"{name}: the input must be images (batch, height, width, 3 channels); it is {shape}")
    if input_size is None:
        height, width = shape[1], shape[2]
        if height is None or width is None:
            raise ModelError(f"{name}: the input size is not fixed ({shape}); build the model with a fixed input_shape")
        input_size = (int(height), int(width))
    outputs = model.outputs if hasattr(model, "outputs") else None
    if not outputs or len(outputs) != 1 or len(outputs[0].shape) != 2 or (outputs[0].shape[-1] or 0) < 2:
        out_shapes = [tuple(o.shape) for o in outputs or []]
        raise ModelError(f"{name}: the output must be one class vector (batch, classes ≥ 2); it is {out_shapes}")
    count = int(outputs[0].shape[-1])
    names = _read_labels(labels, count)
    if names is None:
        names = imagenet_class_names() if count == 1000 else tuple(f"class {i}" for i in range(count))
    if callable(preprocess):
        preprocess_fn, preprocess_name = preprocess, getattr(preprocess, "__name__", "custom")
    else:
        preprocess_fn, preprocess_name = make_preprocess(preprocess), str(preprocess)
    network = Network(
        model=model,
        name=name,
        input_size=input_size,
        labels=names,
        preprocess_name=preprocess_name,
        preprocess=preprocess_fn,
        source=source,
        weights=weights,
        family=family,
    )
    network.softmax_applied = not _outputs_are_probabilities(network)
    network._compiled = None  # retrace: the probe's trace did not include the softmax
    return network


def _outputs_are_probabilities(network: Network) -> bool:
    """Probe the network on two fixed inputs: probabilities are non-negative rows summing to 1."""
    last = network.model.layers[-1] if network.model.layers else None
    activation = getattr(last, "activation", None)
    if activation is not None and getattr(activation, "__name__", "") == "softmax":
        return True
    height, width = network.input_size
    rng = np.random.default_rng(0)
    probe = np.stack([np.full((height, width, 3), 127.5), rng.uniform(0, 255, (height, width, 3))]).astype(np.float32)
    outputs = network.predict(probe)
    if not np.all(np.isfinite(outputs)):
        raise ModelError(f"{network.name}: the network outputs NaN or infinite values on a plain grey image")
    return bool(np.all(outputs >= -1e-6) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3))
