"""ONNX networks (PyTorch, timm, tf2onnx exports) through ONNX Runtime, behind the same :class:`Network` interface.

The engine is unchanged: occluded batches still come from its ``tf.data`` pipeline as raw 0..255 NHWC
pixels, and :attr:`OnnxNetwork.compiled_predict` turns each batch into outputs — preprocessing (and the
transpose to NCHW when the graph wants it) in one compiled TensorFlow function, the graph in ONNX Runtime
(the CUDA provider when this ONNX Runtime has one, else the CPU), the softmax or sigmoid sensmap adds in
:meth:`Network.activate`. A graph with a fixed batch runs in chunks of that batch (a batch of 1: one cover
at a time, slower; :attr:`Network.notes` and a warning say so). Incremental mode needs the Keras layers, so
ONNX networks run every cover densely (the reason is recorded); fast mode applies as it is.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError
from .models import Network, Preprocess, finish_network, resolve_preprocess, tf
from .onnx_graph import DEFAULT_DYNAMIC_SIZE, OnnxSignature, open_onnx

INCREMENTAL_REASON = (
    "ONNX models run through ONNX Runtime, which cannot recompute only the part a cover changes: every cover ran "
    "densely (the same numbers as exact mode)"
)


@dataclass(eq=False)
class OnnxNetwork(Network):
    """A :class:`Network` whose model is an ``onnxruntime.InferenceSession``."""

    signature: OnnxSignature | None = field(default=None, repr=False)

    @property
    def parameter_count(self) -> int:
        """Weights stored in the ONNX file (initializer elements; exporters fold batch normalisation)."""
        return self.signature.parameters

    def incremental_unsupported(self) -> str:
        return INCREMENTAL_REASON

    def require_keras(self, what: str) -> None:
        raise ModelError(
            f"{self.name}: {what} needs a Keras model's layers and gradients; ONNX networks make occlusion maps "
            "(exact or fast) and RISE maps"
        )

    @property
    def compiled_predict(self) -> Callable[[tf.Tensor], tf.Tensor]:
        """Preprocessing (compiled), ONNX Runtime, activation: raw pixels ``(n, H, W, 3)`` → outputs ``(n, k)``."""
        with self._lock:
            if self._compiled is None:
                self._compiled = _OnnxCall(self)
            return self._compiled


class _OnnxCall:
    """The ONNX network's forward call (what ``compiled_predict`` is for Keras networks)."""

    def __init__(self, network: OnnxNetwork) -> None:
        height, width = network.input_size
        signature = network.signature
        preprocess, nchw = network.preprocess, signature.layout == "NCHW"

        def prepare(pixels: tf.Tensor) -> tf.Tensor:
            inputs = tf.cast(preprocess(pixels), tf.float32)
            return tf.transpose(inputs, (0, 3, 1, 2)) if nchw else inputs

        self.network, self.signature = network, signature
        self.prepare = tf.function(
            prepare, input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)], reduce_retracing=True
        )
        self.dtype = np.dtype(signature.input_dtype)

    def __call__(self, pixels: tf.Tensor) -> tf.Tensor:
        inputs = self.prepare(tf.convert_to_tensor(pixels, tf.float32)).numpy().astype(self.dtype, copy=False)
        return self.network.activate(tf.constant(self.run(inputs)))

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Raw graph outputs ``(n, k)`` for prepared inputs, in chunks of the graph's fixed batch if it has one."""
        session, name, output = self.network.model, self.signature.input_name, self.signature.output_name
        batch = self.signature.batch
        if batch is None:
            return np.asarray(session.run([output], {name: inputs})[0])
        chunks = []
        for start in range(0, len(inputs), batch):
            part = inputs[start : start + batch]
            padded = part if len(part) == batch else np.concatenate([part, np.repeat(part[-1:], batch - len(part), 0)])
            chunks.append(np.asarray(session.run([output], {name: padded})[0])[: len(part)])
        return np.concatenate(chunks)


def load_onnx(
    path: str | os.PathLike,
    *,
    labels: Any = None,
    preprocess: str | Mapping[str, Any] | Preprocess = "none",
    output: str | None = None,
    input_size: tuple[int, int] | None = None,
    **options: Any,
) -> OnnxNetwork:
    """An ONNX file as a :class:`Network` (see :func:`sensmap.load_model`, which reads the sidecar first).

    ``input_size`` ``(H, W)`` is needed only for graphs whose input size is dynamic (default 224×224, noted).
    """
    path = Path(path)
    if options:
        raise ModelError(
            f"{path.name}: ONNX models take no constructor options ({', '.join(options)}); only input_size=(H, W) "
            "for a graph whose input size is dynamic"
        )
    session, signature = open_onnx(path)
    notes = [f"runs on ONNX Runtime ({signature.providers[0]}), input {signature.layout}"]
    size = _input_size(path, signature, input_size, notes)
    if signature.batch == 1:
        notes.append(
            "the graph takes a fixed batch of 1: covers run one at a time (slower); export it with a dynamic batch "
            "axis for speed"
        )
        warnings.warn(f"{path.name}: {notes[-1]}", stacklevel=3)
    elif signature.batch is not None:
        notes.append(f"the graph takes a fixed batch of {signature.batch}: covers run in chunks of that size")
    preprocess_fn, preprocess_name = resolve_preprocess(preprocess)
    network = OnnxNetwork(
        model=session,
        name=path.stem,
        input_size=size,
        labels=(),
        preprocess_name=preprocess_name,
        preprocess=preprocess_fn,
        source=str(path),
        weights=str(path),
        family="onnx",
        notes=tuple(notes),
        signature=signature,
    )
    count = _probe(network)
    return finish_network(network, labels=labels, count=count, output=output, final=signature.final_op.lower())


def _input_size(
    path: Path, signature: OnnxSignature, wanted: Any, notes: list[str]
) -> tuple[int, int]:  # fmt: skip
    if wanted is not None:
        try:
            height, width = (int(v) for v in wanted)
        except (TypeError, ValueError):
            height = width = 0
        if height < 1 or width < 1:
            raise ModelError(f"{path.name}: input_size must be (height, width) in pixels, got {wanted!r}")
        if signature.input_size not in (None, (height, width)):
            raise ModelError(
                f"{path.name}: the graph's input is fixed at {signature.input_size[0]}×{signature.input_size[1]} "
                f"(H×W), not {height}×{width}; drop input_size"
            )
        return height, width
    if signature.input_size is not None:
        return signature.input_size
    notes.append(
        f"the graph's input size is dynamic: {DEFAULT_DYNAMIC_SIZE[0]}×{DEFAULT_DYNAMIC_SIZE[1]} px used "
        "(set input_size in the sidecar, or load_model(..., input_size=(H, W)))"
    )
    return DEFAULT_DYNAMIC_SIZE


def _probe(network: OnnxNetwork) -> int:
    """Run the raw graph once on a grey image: the length of its output vector, or a clear error."""
    height, width = network.input_size
    try:
        outputs = network.compiled_predict(tf.fill((1, height, width, 3), 127.5)).numpy()
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime and user preprocessing raise many types
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"{network.name}: the graph does not run on a {height}×{width} RGB image ({message[:300]}); check its "
            "input size and preprocessing"
        ) from None
    if outputs.ndim != 2 or outputs.shape[0] != 1:
        raise ModelError(f"{network.name}: the output must be one vector per image; for an image it is {outputs.shape}")
    if not np.all(np.isfinite(outputs)):
        raise ModelError(f"{network.name}: the network outputs NaN or infinite values on a plain grey image")
    network._compiled = None  # built again once the activation is known
    return int(outputs.shape[1])
