"""Analysis of a Keras graph into layer steps that can run on crops, and the reasons of those that cannot.

A cover changes the network input only inside its box. Through a convolution or pooling layer ("window")
the changed area grows by the kernel's reach and shrinks by its stride; through per-position layers
("pointwise": batch norm, activations, channel-wise dense/normalisation) it stays put; through a merge
(add, concatenate, …) it becomes the union of the inputs' areas; zero padding ("pad") shifts it. Every other
layer ("dense": global pooling, squeeze-and-excitation, reshape/flatten, dense on flattened features,
transposed convolutions, nested functional models, unknown custom layers) cannot run on crops, and its
:attr:`_Step.reason` says why. Nested sequential models (ConvNeXt's stem and downsampling) are expanded
layer by layer. :class:`LayerGraph` holds the steps in execution order with every activation's shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from ..models import Network, tf
from .geometry import AxisGeometry, _pair, _same_padding
from .layers import _apply, _batch_norm_affine

_POINTWISE = (
    keras.layers.BatchNormalization,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
    keras.layers.Rescaling,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.Identity,
)
# Keras Applications' own layers that act position by position (weights per channel, or none):
# ConvNeXt's LayerScale (x·γ) and StochasticDepth (identity at inference); Inception-ResNet's
# CustomScaleLayer (x₀ + x₁·scale, a merge).
_APPLICATION_POINTWISE = (
    "keras.src.applications.convnext.LayerScale",
    "keras.src.applications.convnext.StochasticDepth",
)
_APPLICATION_MERGE = ("keras.src.applications.inception_resnet_v2.CustomScaleLayer",)
# Element-wise Keras operations that ``a + b`` etc. on symbolic tensors record in a functional graph.
_ELEMENTWISE_OPS = tuple(
    f"keras.src.ops.numpy.{name}"
    for name in ("Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum")
)


def _qualified_name(layer: Any) -> str:
    return f"{type(layer).__module__}.{type(layer).__qualname__}"


_MERGE = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
    keras.layers.Concatenate,
)


@dataclass
class _Step:
    """One layer call of the network graph, in execution order."""

    node: Any
    layer: Any
    inputs: list[int]  # ids of the KerasTensors read
    outputs: list[int]
    kind: str  # "window", "pad", "pointwise", "merge" or "dense" (cannot run on crops)
    geometry: tuple[AxisGeometry, AxisGeometry] | None = None
    shift: tuple[int, int] = (0, 0)  # ZeroPadding2D: cells added before, rows and columns
    pool: str = ""  # "max"/"average" for pooling layers
    same_average: bool = False
    reason: str = ""
    flops: float = 0.0  # multiply-adds per image (window layers), for the cost estimate
    affine: tuple[tf.Tensor, tf.Tensor] | None = None  # batch norm at inference: x·scale + shift, per channel


class LayerGraph:
    """A network's layer calls as :class:`_Step` records in execution order, with the shapes of its activations
    at the network's input size and the padded clean copies the window layers read (:attr:`margins`)."""

    def __init__(self, network: Network) -> None:
        self.network = network
        model = network.model
        if isinstance(model, keras.Sequential):
            model = model._functional  # noqa: SLF001 - Keras builds a functional graph for every Sequential
        if model is None or not hasattr(model, "_nodes_by_depth"):
            raise TypeError("incremental inference needs a functional or sequential Keras model")
        self.model = model
        self.input_id = id(model.inputs[0])
        self.steps: list[_Step] = []
        self.shapes: dict[int, tuple[int, ...]] = {}
        self._analyse()
        # (tensor, pad value) → (margin rows, margin cols, padded width) of padded clean copies
        self.margins: dict[tuple[int, float], tuple[int, int, int]] = {}
        for step in self.steps:
            if step.kind == "window":
                rows, cols = step.geometry
                source = step.inputs[0]
                key = (source, -np.inf if step.pool == "max" else 0.0)
                old = self.margins.get(key, (0, 0, 0))
                margin_r = max(old[0], rows.pad_before, rows.pad_after)
                margin_c = max(old[1], cols.pad_before, cols.pad_after)
                self.margins[key] = (margin_r, margin_c, self.shapes[source][1] + 2 * margin_c)

    def _analyse(self) -> None:
        """Steps in execution order (nested sequential models expanded), shapes from one zero image."""
        height, width = self.network.input_size
        synthetic = iter(range(-1, -(10**9), -1))  # ids of the tensors inside nested sequential models
        for depth in sorted(self.model._nodes_by_depth, reverse=True):  # noqa: SLF001
            for node in self.model._nodes_by_depth[depth]:  # noqa: SLF001
                if not node.operation or node.is_input:
                    continue
                inputs, outputs = [id(t) for t in node.input_tensors], [id(t) for t in node.outputs]
                layer = node.operation
                if isinstance(layer, keras.Sequential) and len(inputs) == 1 and len(outputs) == 1 and layer.layers:
                    chain = [inputs[0]] + [next(synthetic) for _ in layer.layers[:-1]] + outputs
                    for sub, source, target in zip(layer.layers, chain[:-1], chain[1:], strict=True):
                        self.steps.append(_Step(node=None, layer=sub, inputs=[source], outputs=[target], kind="dense"))
                    continue
                self.steps.append(_Step(node=node, layer=layer, inputs=inputs, outputs=outputs, kind="dense"))
        # Shapes as this network sees its input size (models built for any size have None in their graph).
        values = self.run_dense({self.input_id: tf.zeros([1, height, width, 3])})
        self.shapes = {t: tuple(int(d) for d in v.shape[1:]) for t, v in values.items()}
        for step in self.steps:
            self._classify(step)
            step.affine = _batch_norm_affine(step.layer)

    def run_dense(self, values: dict[int, tf.Tensor]) -> dict[int, tf.Tensor]:
        """Every step on full tensors, eagerly: ``values`` (the input) completed with every activation."""
        for step in self.steps:
            for tensor_id, value in zip(step.outputs, _apply(step, values), strict=True):
                values[tensor_id] = value
        return values

    def spatial(self, tensor_id: int) -> bool:
        shape = self.shapes.get(tensor_id, ())
        return len(shape) == 3 and all(isinstance(v, int) for v in shape)

    def _classify(self, step: _Step) -> None:
        layer = step.layer
        if not all(self.spatial(t) for t in step.inputs + step.outputs) or not step.inputs:
            step.reason = f"{type(layer).__name__} leaves the image grid"
            return
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            step.reason = "channels-first layout"
            return
        in_shape, out_shape = self.shapes[step.inputs[0]], self.shapes[step.outputs[0]]
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)):
            if isinstance(layer, keras.layers.Conv2DTranspose):
                step.reason = "Conv2DTranspose (transposed convolution)"
                return
            if getattr(layer, "lora_enabled", False):
                step.reason = "LoRA convolution"
                return
            step.kind = "window"
            step.geometry = self._geometry(
                layer.kernel_size, layer.strides, layer.dilation_rate, layer.padding, in_shape
            )
            kernel_weights = sum(float(np.prod(w.shape)) for w in layer.weights if len(w.shape) == 4)
            step.flops = float(np.prod(out_shape[:2])) * kernel_weights
            return
        if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
            step.kind = "window"
            step.pool = "max" if isinstance(layer, keras.layers.MaxPooling2D) else "average"
            step.same_average = step.pool == "average" and layer.padding == "same"
            step.geometry = self._geometry(layer.pool_size, layer.strides, (1, 1), layer.padding, in_shape)
            step.flops = float(np.prod(out_shape)) * float(np.prod(layer.pool_size))
            return
        if isinstance(layer, keras.layers.ZeroPadding2D):
            (top, _), (left, _) = layer.padding
            step.kind, step.shift = "pad", (int(top), int(left))
            return
        if isinstance(layer, keras.layers.Cropping2D):
            # a 1×1 "window" with negative padding: output cell o reads input cell o + top
            (top, bottom), (left, right) = layer.cropping
            step.kind, step.pool = "window", "crop"
            step.geometry = (
                AxisGeometry(1, 1, 1, -int(top), -int(bottom)),
                AxisGeometry(1, 1, 1, -int(left), -int(right)),
            )
            return
        same_grid = all(self.shapes[t][:2] == out_shape[:2] for t in step.inputs)
        if _qualified_name(layer) in _APPLICATION_MERGE + _ELEMENTWISE_OPS and same_grid and len(step.inputs) > 1:
            step.kind = "merge"
            return
        if isinstance(layer, _MERGE) and same_grid and len(step.inputs) > 1:
            axis = getattr(layer, "axis", -1)
            if isinstance(layer, keras.layers.Concatenate) and axis not in (-1, 3):
                step.reason = "concatenation across the image grid"
                return
            step.kind = "merge"
            return
        if len(step.inputs) != 1 or in_shape[:2] != out_shape[:2]:
            step.reason = f"{type(layer).__name__} changes the grid"
            return
        if (
            isinstance(layer, _POINTWISE)
            or self._channelwise(layer)
            or _qualified_name(layer) in _APPLICATION_POINTWISE
        ):
            step.kind = "pointwise"
            return
        step.reason = f"{type(layer).__name__} is not known to act position by position"

    @staticmethod
    def _channelwise(layer: Any) -> bool:
        """Layers acting on the channel axis only: per-position in space."""
        if isinstance(layer, keras.layers.Dense):
            return True
        if isinstance(layer, (keras.layers.LayerNormalization, keras.layers.Normalization)):
            axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
            return all(a in (-1, 3) for a in axes)
        return False

    def _geometry(self, kernel, strides, dilation, padding, in_shape) -> tuple[AxisGeometry, AxisGeometry]:
        axes = []
        for k, s, d, size in zip(_pair(kernel), _pair(strides), _pair(dilation), in_shape[:2], strict=True):
            before, after = _same_padding(size, k, s, d) if padding == "same" else (0, 0)
            axes.append(AxisGeometry(k, s, d, before, after))
        return axes[0], axes[1]

    def dense_reason(self) -> str:
        """Why the first layer that cannot run on crops stops the incremental part ('' if none early)."""
        for step in self.steps:
            if step.kind == "dense" and step.reason:
                return f"{step.layer.name}: {step.reason}"
        return ""
