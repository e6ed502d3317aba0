"""Small real ONNX models built with the onnx helper API, and Keras models converted to ONNX with tf2onnx.

Every graph computes something a test can recompute in numpy: a "whole-image convolution" (one kernel as
large as the input per output, i.e. a weighted sum of all pixels) or the mean of each colour channel.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _save(path: Path, nodes, inputs, outputs, initializers=()) -> Path:
    import onnx
    from onnx import helper

    graph = helper.make_graph(list(nodes), path.stem, list(inputs), list(outputs), list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sensmap-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _image_input(name: str, height, width, layout: str, batch):
    from onnx import TensorProto, helper

    batch = batch if batch is not None else "batch"
    shape = [batch, 3, height, width] if layout == "NCHW" else [batch, height, width, 3]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def whole_image_model(
    path: Path,
    weights: np.ndarray,
    bias: np.ndarray,
    *,
    layout: str = "NCHW",
    batch: int | None = None,
    final: str | None = None,
) -> Path:
    """``outputs[k] = Σ weights[k, c, y, x] · input[c, y, x] + bias[k]`` (then ``final``: Sigmoid, Softmax…).

    ``weights`` is ``(K, 3, H, W)``; the input is ``(batch, 3, H, W)`` or, with ``layout="NHWC"``,
    ``(batch, H, W, 3)`` (transposed inside the graph). ``batch`` fixes the batch size (None: dynamic).
    """
    from onnx import TensorProto, helper, numpy_helper

    count, _, height, width = weights.shape
    nodes = []
    source = "image"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]))
        source = "nchw"
    nodes.append(helper.make_node("Conv", [source, "W", "B"], ["conv"]))
    nodes.append(helper.make_node("Flatten", ["conv"], ["flat" if final else "out"], axis=1))
    if final:
        nodes.append(helper.make_node(final, ["flat"], ["out"], **({"axis": -1} if final == "Softmax" else {})))
    out_batch = batch if batch is not None else "batch"
    return _save(
        path,
        nodes,
        [_image_input("image", height, width, layout, batch)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [out_batch, count])],
        [
            numpy_helper.from_array(np.asarray(weights, np.float32), "W"),
            numpy_helper.from_array(np.asarray(bias, np.float32), "B"),
        ],
    )


def whole_image_outputs(
    images: np.ndarray, weights: np.ndarray, bias: np.ndarray, preprocess=lambda x: x
) -> np.ndarray:
    """The numpy twin of :func:`whole_image_model` on NHWC images ``(n, H, W, 3)`` (before ``final``)."""
    inputs = preprocess(np.asarray(images, np.float64))
    return np.einsum("nhwc,kchw->nk", inputs, np.asarray(weights, np.float64)) + np.asarray(bias, np.float64)


def channel_mean_model(path: Path, height=None, width=None, *, layout: str = "NCHW") -> Path:
    """``outputs = mean of each colour channel`` ``(batch, 3)``; ``height``/``width`` None = dynamic size."""
    from onnx import TensorProto, helper

    nodes = []
    source = "image"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]))
        source = "nchw"
    nodes.append(helper.make_node("GlobalAveragePool", [source], ["pooled"]))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["out"], axis=1))
    return _save(
        path,
        nodes,
        [_image_input("image", height or "height", width or "width", layout, None)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3])],
    )


def graph_with(path: Path, inputs, outputs, nodes) -> Path:
    """A graph from ``(name, elem type, shape)`` inputs/outputs and ``(op, inputs, outputs, attributes)`` nodes."""
    from onnx import helper

    def info(spec):
        name, elem, shape = spec
        return helper.make_tensor_value_info(name, elem, shape)

    made = [helper.make_node(op, ins, outs, **attrs) for op, ins, outs, attrs in nodes]
    return _save(path, made, [info(i) for i in inputs], [info(o) for o in outputs])


def write_sidecar(model_path: Path, **fields) -> Path:
    """Write ``model.json`` beside ``model_path`` with these fields."""
    path = Path(model_path).with_suffix(".json")
    path.write_text(json.dumps(fields), encoding="utf-8")
    return path


def keras_to_onnx(model, path: Path, *, nchw: bool = False) -> Path:
    """Convert a Keras model (one NHWC image input) to ONNX with tf2onnx, dynamic batch; ``nchw`` makes the
    graph's input ``(batch, 3, H, W)`` (as a PyTorch export's)."""
    import tensorflow as tf
    import tf2onnx

    height, width = model.input_shape[1:3]
    spec = (tf.TensorSpec((None, height, width, 3), tf.float32, name="pixels"),)
    function = tf.function(lambda x: model(x, training=False))
    tf2onnx.convert.from_function(
        function, input_signature=spec, opset=17, inputs_as_nchw=["pixels"] if nchw else None, output_path=str(path)
    )
    return path
