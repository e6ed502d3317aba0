"""Exact incremental occlusion inference (Krypton-style): recompute only what a cover can change.

Part of the engine (this module and :mod:`sensmap.engine` are the ones that run TensorFlow).

A cover changes the network input only inside its box. Through a convolution or pooling layer the
changed area grows by the kernel's reach and shrinks by its stride; through per-position layers
(batch norm, activations, channel-wise dense/normalisation) it stays put; through a merge (add,
concatenate, …) it becomes the union of the inputs' areas. So every activation of an occluded
image equals the unoccluded ("clean") activation outside a known rectangle.

For one batch of same-size covers, each layer of the spatial part of the network is computed only
on that rectangle (plus the kernel's halo, read from the cached clean activation, with the layer's
own zero padding where the halo leaves the image), using ``valid`` convolutions on the crop. When a
rectangle grows beyond :data:`DENSE_FRACTION` of its activation, or a layer cannot be run on crops
(global pooling, squeeze-and-excitation, reshape/flatten, dense on flattened features, transposed
convolutions, nested functional models, unknown custom layers), the batch switches to dense
computation: the full occluded activation is assembled (clean activation with the rectangle pasted
in) and the rest of the network runs as usual. Nested sequential models (ConvNeXt's stem and
downsampling) are expanded layer by layer.

Results are the same as the dense engine up to float32 rounding (the tests bound the difference by
1e-4 in probability). Where little arithmetic comes before the first global operation there is
nothing to save — EfficientNet (squeeze-and-excitation in its first block), MobileNetV3Small (the
same), NASNet (its 5×5/7×7 separable reductions spread a cover over most of the grid at once);
:meth:`IncrementalModel.estimated_speedup` tells, and the engine then runs those groups dense.

Geometry follows TensorFlow's ``SAME`` padding (``pad_before = max((out−1)·s + d·(k−1) + 1 − in, 0) // 2``),
which Keras 3 uses on the TensorFlow backend. Intervals are half-open ``[start, stop)`` in cells of
the activation concerned, rows and columns independently.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from tensorflow.python.eager import context as _eager_context  # per-thread call options (no public API)

from .models import Network, tf

#: A crop larger than this fraction of its activation's area is computed densely (tuned with
#: benchmarks/occlusion_bench.py on MobileNetV2 and ResNet50: beyond ~half the area the gathers
#: cost more than the saved arithmetic).
DENSE_FRACTION = 0.5
#: Below this estimated arithmetic speed-up the engine runs the plain dense path instead.
MIN_USEFUL_SPEEDUP = 1.15

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


@dataclass(frozen=True)
class AxisGeometry:
    """How one window layer maps an axis: kernel ``k``, stride ``s``, dilation ``d``, padding before ``p``."""

    kernel: int
    stride: int
    dilation: int
    pad_before: int
    pad_after: int

    @property
    def reach(self) -> int:
        """Input cells one output cell reads: ``d·(k−1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1

    def changed(self, start: np.ndarray, stop: np.ndarray, out_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Output interval whose windows touch the changed input interval ``[start, stop)``, clipped."""
        first = -((-(start + self.pad_before - self.reach + 1)) // self.stride)  # ceil division
        last = (stop - 1 + self.pad_before) // self.stride
        return np.clip(first, 0, out_size), np.clip(last + 1, 0, out_size)

    def crop_length(self, out_length: int) -> int:
        """Input cells needed for ``out_length`` consecutive output cells."""
        return (out_length - 1) * self.stride + self.reach


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


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


@dataclass
class _Plan:
    """Static crop sizes for one group of same-size covers, and per-cover crop starts."""

    sizes: dict[int, tuple[int, int]]  # tensor id → (rows, cols) of its changed rectangle
    starts: dict[int, np.ndarray]  # tensor id → (covers, 2) int starts (row, col)
    dense: set[int]  # tensors computed densely
    direct: set[tuple[int, int]] = field(default_factory=set)  # (step, input) read as is: crop = patch
    key: tuple = ()
    # A cover plan (IncrementalModel.cover_plan): starts[t][i] holds row start i in column 0 and column start i
    # in column 1, for every position i of the cover on each axis.
    by_position: bool = False

    @property
    def columns(self) -> list[int]:
        """Tensors computed on crops, in the column order of :meth:`start_array`."""
        return sorted(t for t in self.sizes if t not in self.dense)

    def start_array(self, boxes: np.ndarray | None = None) -> np.ndarray:
        """``(covers, tensors, 2)`` int32 crop starts (row, col), the batch function's input.

        ``boxes`` (a cover plan only): any covers of the plan's size, ``(n, 4)`` pixel boxes; default: the
        covers the plan was made for.
        """
        if boxes is None:
            return np.stack([self.starts[t] for t in self.columns], axis=1).astype(np.int32)
        if not self.by_position:
            raise ValueError("start arrays of other boxes need a cover plan (IncrementalModel.cover_plan)")
        rows, cols = np.asarray(boxes, dtype=np.int64)[:, 0], np.asarray(boxes, dtype=np.int64)[:, 1]
        return np.stack(
            [np.stack([self.starts[t][rows, 0], self.starts[t][cols, 1]], axis=1) for t in self.columns], axis=1
        ).astype(np.int32)


#: Clean activations of one image for one network, as ``tf.function`` arguments:
#: ``{"act": {tensor key: (H·W, C)}, "pad": {padded key: (Hp·Wp, C)}, "canvas": (H·W, 3)}`` —
#: activations flattened row-major; padded copies carry the layer's padding value in a margin.
CleanState = dict


def _key(tensor_id: int) -> str:
    return str(tensor_id)


def _pad_key(tensor_id: int, pad_value: float) -> str:
    return f"{tensor_id}/{'max' if pad_value < 0 else 'zero'}"


class IncrementalModel:
    """The layer graph of a network prepared for incremental occlusion (see the module docstring)."""

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
        self._cover_plans: dict[tuple[int, int], _Plan] = {}
        self._traced: dict[tuple[int, int], _Traced] = {}  # cover size (rows, cols) px → its compiled function
        self._affine: dict[int, tuple[tf.Tensor, tf.Tensor]] = {}  # batch norm layer id → (scale, shift)
        self._lock = threading.Lock()
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

    # ------------------------------------------------------------------ graph analysis
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
        values = self._run_dense({self.input_id: tf.zeros([1, height, width, 3])})
        self.shapes = {t: tuple(int(d) for d in v.shape[1:]) for t, v in values.items()}
        for step in self.steps:
            self._classify(step)
            step.affine = _batch_norm_affine(step.layer)

    def _run_dense(self, values: dict[int, tf.Tensor]) -> dict[int, tf.Tensor]:
        """Every step on full tensors, eagerly: ``values`` (the input) completed with every activation."""
        for step in self.steps:
            for tensor_id, value in zip(step.outputs, _apply(step, values), strict=True):
                values[tensor_id] = value
        return values

    def _spatial(self, tensor_id: int) -> bool:
        shape = self.shapes.get(tensor_id, ())
        return len(shape) == 3 and all(isinstance(v, int) for v in shape)

    def _classify(self, step: _Step) -> None:
        layer = step.layer
        if not all(self._spatial(t) for t in step.inputs + step.outputs) or not step.inputs:
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

    # ------------------------------------------------------------------ planning (numpy)
    def plan(self, boxes: np.ndarray, dense_fraction: float | None = None) -> _Plan:
        """Changed rectangles of every activation for covers ``boxes`` ``(n, 4)`` of one size.

        ``dense_fraction`` (default :data:`DENSE_FRACTION`): rectangles larger than this share of
        their activation switch the rest of the network to dense computation.
        """
        if dense_fraction is None:
            dense_fraction = DENSE_FRACTION
        boxes = np.asarray(boxes, dtype=np.int64)
        intervals: dict[int, tuple[np.ndarray, ...]] = {
            self.input_id: (boxes[:, 0], boxes[:, 2], boxes[:, 1], boxes[:, 3])
        }
        sizes: dict[int, tuple[int, int]] = {}
        starts: dict[int, np.ndarray] = {}
        dense: set[int] = set()

        def settle(tensor_id: int) -> None:
            r0, r1, c0, c1 = intervals[tensor_id]
            height, width = self.shapes[tensor_id][:2]
            rows, cols = max(int((r1 - r0).max()), 1), max(int((c1 - c0).max()), 1)
            sizes[tensor_id] = (rows, cols)
            starts[tensor_id] = np.stack([np.clip(r0, 0, height - rows), np.clip(c0, 0, width - cols)], axis=1)
            if rows * cols > dense_fraction * height * width:
                dense.add(tensor_id)

        settle(self.input_id)
        for step in self.steps:
            if step.kind == "dense" or any(t in dense for t in step.inputs):
                dense.update(step.outputs)
                continue
            out = step.outputs[0]
            height, width = self.shapes[out][:2]
            if step.kind == "window":
                r0, r1, c0, c1 = intervals[step.inputs[0]]
                rows = step.geometry[0].changed(r0, r1, height)
                cols = step.geometry[1].changed(c0, c1, width)
                intervals[out] = (*rows, *cols)
            elif step.kind in ("pad", "pointwise"):
                # the patch exists over the input's settled rectangle, so the output's is the same one
                source = step.inputs[0]
                rows, cols = sizes[source]
                r0, c0 = starts[source][:, 0] + step.shift[0], starts[source][:, 1] + step.shift[1]
                intervals[out] = (r0, r0 + rows, c0, c0 + cols)
            else:  # merge: the union of the inputs' rectangles
                parts = [intervals[t] for t in step.inputs]
                intervals[out] = (
                    np.min([p[0] for p in parts], axis=0),
                    np.max([p[1] for p in parts], axis=0),
                    np.min([p[2] for p in parts], axis=0),
                    np.max([p[3] for p in parts], axis=0),
                )
            settle(out)
        direct = self._direct_reads(sizes, starts, dense)
        key = (
            tuple(sorted((t, sizes[t]) for t in sizes if t not in dense)),
            tuple(sorted(dense)),
            tuple(sorted(direct)),
        )
        return _Plan(sizes=sizes, starts=starts, dense=dense, direct=direct, key=key)

    def cover_plan(self, cover: tuple[int, int]) -> _Plan:
        """The plan of a ``cover = (rows, cols)`` px cover at every position of the input (cached per size).

        Rows and columns are planned independently, so one cover per row start and column start (a "diagonal")
        gives the crop sizes every position needs: the plan's function serves any stride, fill, photo, batch
        size and any subset of windows (fast mode), and :meth:`_Plan.start_array` takes the boxes.
        """
        cover = (int(cover[0]), int(cover[1]))
        with self._lock:
            plan = self._cover_plans.get(cover)
        if plan is None:
            height, width = self.network.input_size
            rows, cols = min(cover[0], height), min(cover[1], width)
            index = np.arange(max(height - rows, width - cols) + 1)
            y0, x0 = np.minimum(index, height - rows), np.minimum(index, width - cols)
            plan = self.plan(np.stack([y0, x0, y0 + rows, x0 + cols], axis=1))
            plan.by_position = True
            with self._lock:
                plan = self._cover_plans.setdefault(cover, plan)
        return plan

    def dense_why(self, plan: _Plan) -> str:
        """Why covers of this plan run densely ('' when computing them incrementally saves arithmetic)."""
        if self.input_id in plan.dense:
            return "the cover is larger than half of the image: nothing to save"
        gain = self.estimated_speedup(plan)
        if gain < MIN_USEFUL_SPEEDUP:
            limit = self.dense_reason() or "the covers are too large"
            return f"estimated gain {gain:.2f}× is below {MIN_USEFUL_SPEEDUP:g}× ({limit})"
        return ""

    def _direct_reads(
        self, sizes: dict[int, tuple[int, int]], starts: dict[int, np.ndarray], dense: set[int]
    ) -> set[tuple[int, int]]:
        """Inputs whose patch already is exactly the window a step reads (1×1 convolutions, most merges)."""
        direct = set()
        for index, step in enumerate(self.steps):
            out = step.outputs[0]
            if out in dense or step.kind not in ("window", "merge"):
                continue
            for source in step.inputs:
                if step.kind == "window":
                    rows, cols = step.geometry
                    window = (rows.crop_length(sizes[out][0]), cols.crop_length(sizes[out][1]))
                    first = np.stack(
                        [
                            starts[out][:, 0] * rows.stride - rows.pad_before,
                            starts[out][:, 1] * cols.stride - cols.pad_before,
                        ],
                        axis=1,
                    )
                else:
                    window, first = sizes[out], starts[out]
                if window == sizes[source] and np.array_equal(first, starts[source]):
                    direct.add((index, source))
        return direct

    def estimated_speedup(self, plan: _Plan) -> float:
        """Dense arithmetic over incremental arithmetic for one cover of ``plan`` (window layers only)."""
        total = incremental = 0.0
        for step in self.steps:
            if step.kind != "window":
                continue
            total += step.flops
            out = step.outputs[0]
            if out in plan.dense:
                incremental += step.flops
            else:
                rows, cols = plan.sizes[out]
                height, width = self.shapes[out][:2]
                incremental += step.flops * rows * cols / (height * width)
        return total / incremental if incremental else 1.0

    def dense_reason(self) -> str:
        """Why the first layer that cannot run on crops stops the incremental part ('' if none early)."""
        for step in self.steps:
            if step.kind == "dense" and step.reason:
                return f"{step.layer.name}: {step.reason}"
        return ""

    # ------------------------------------------------------------------ clean activations
    def prepare(self, pixels: np.ndarray, canvas: np.ndarray) -> CleanState:
        """Clean activations of ``pixels`` (raw 0..255, ``(H, W, 3)``) and the preprocessed ``canvas``."""
        preprocess = self.network.preprocess
        values = self._run_dense({self.input_id: preprocess(tf.constant(pixels[None], tf.float32))})
        activations = {t: v[0] for t, v in values.items() if self._spatial(t)}
        padded = {}
        for (source, pad_value), (margin_r, margin_c, _) in self.margins.items():
            value = tf.pad(
                activations[source], [[margin_r, margin_r], [margin_c, margin_c], [0, 0]], constant_values=pad_value
            )
            padded[_pad_key(source, pad_value)] = tf.reshape(value, [-1, value.shape[-1]])
        canvas_pre = preprocess(tf.constant(canvas[None], tf.float32))[0]
        return {
            "act": {_key(t): tf.reshape(v, [-1, v.shape[-1]]) for t, v in activations.items()},
            "pad": padded,
            "canvas": tf.reshape(canvas_pre, [-1, 3]),
        }

    # ------------------------------------------------------------------ traced functions, shared
    def function(
        self, cover: tuple[int, int], state: CleanState | None = None, *, wait: bool = True
    ) -> tuple[Callable | None, str]:
        """The compiled batch function of a cover size: ``(function, "")``, or ``(None, why)`` when its covers
        run densely (no gain, tracing failed, or — with ``wait=False`` — another thread is still tracing it).

        ``function(starts, state)`` takes :meth:`_Plan.start_array` rows of :meth:`cover_plan` and a
        :meth:`prepare` state. Traced once per cover size (any stride, fill, photo, batch size) and shared by
        every thread; the caller traces it when nobody else is (``state``: a prepared state to trace with,
        default a blank one), else waits for the tracer (``wait``) or does not (``wait=False``).
        """
        cover = (int(cover[0]), int(cover[1]))
        plan = self.cover_plan(cover)
        why = self.dense_why(plan)
        if why:
            return None, why
        entry, mine = self._claim(cover)
        if mine:
            self._trace(entry, plan, state)
        elif not entry.settled.is_set():
            if not wait:
                return None, "its incremental function is still being traced (warm-up): dense for now"
            entry.settled.wait()
        return entry.function, entry.why

    def status(self, cover: tuple[int, int]) -> str:
        """``"ready"``, ``"queued"``, ``"tracing"``, ``"failed"``, ``"dense"`` (no gain) or ``"absent"``."""
        cover = (int(cover[0]), int(cover[1]))
        if self.dense_why(self.cover_plan(cover)):
            return "dense"
        with self._lock:
            entry = self._traced.get(cover)
            return "absent" if entry is None else entry.state

    def queue(self, covers: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
        """Mark the covers a warm-up will trace (``"queued"``: others then do not wait for them with
        ``wait=False``); the covers worth tracing that nobody traced yet, in order."""
        mine = []
        for cover in dict.fromkeys((int(c[0]), int(c[1])) for c in covers):
            if self.dense_why(self.cover_plan(cover)):
                continue
            with self._lock:
                if cover not in self._traced:
                    self._traced[cover] = _Traced()
                    mine.append(cover)
        return mine

    def _claim(self, cover: tuple[int, int]) -> tuple[_Traced, bool]:
        """The cover's entry, and whether this thread is the one to trace it."""
        with self._lock:
            entry = self._traced.setdefault(cover, _Traced())
            if entry.state == "queued":
                entry.state = "tracing"
                return entry, True
            return entry, False

    def _trace(self, entry: _Traced, plan: _Plan, state: CleanState | None) -> None:
        """Trace and instantiate one plan's function (one cover through it); failures are recorded, not raised."""
        try:
            with _TRACE_LOCK:
                if state is None:
                    height, width = self.network.input_size
                    state = self.prepare(np.zeros((height, width, 3), np.float32), np.zeros((height, width, 3)))
                function = tf.function(self._batch_function(plan), autograph=False)
                signature = tf.TensorSpec([None, len(plan.columns), 2], tf.int32)
                concrete = function.get_concrete_function(signature, tf.nest.map_structure(_spec, state))
                first = tf.constant(plan.start_array()[:1])
                _call_graph(concrete, first, state)  # builds the kernels now, not in the first map
            entry.function = lambda starts, state: _call_graph(concrete, starts, state)
            entry.state = "ready"
        except Exception as exc:  # a layer that cannot run on crops: the engine runs the covers densely
            entry.why = f"incremental tracing failed ({type(exc).__name__}: {str(exc)[:200]})"
            entry.state = "failed"
        finally:
            entry.settled.set()

    # ------------------------------------------------------------------ batched execution (TensorFlow)

    def _batch_function(self, plan: _Plan) -> Callable:
        column = {t: i for i, t in enumerate(plan.columns)}
        sizes, dense, direct = dict(plan.sizes), set(plan.dense), set(plan.direct)
        network = self.network

        def run(starts: tf.Tensor, state: CleanState) -> tf.Tensor:
            # starts: (B, tensors, 2) int32 row/column starts of every incrementally computed activation
            rows_of, cols_of = tf.unstack(starts, axis=2)  # (B, tensors) each
            columns = {"rows": tf.unstack(rows_of, axis=1), "cols": tf.unstack(cols_of, axis=1)}

            def start_of(tensor_id: int) -> tuple[tf.Tensor, tf.Tensor]:
                i = column[tensor_id]
                return columns["rows"][i], columns["cols"][i]

            patches: dict[int, tf.Tensor] = {}
            full: dict[int, tf.Tensor] = {}
            rows, cols = sizes[self.input_id]
            r0, c0 = start_of(self.input_id)
            width = self.shapes[self.input_id][1]
            patches[self.input_id] = tf.gather(state["canvas"], _grid_index(r0, c0, rows, cols, width))

            def dense_value(tensor_id: int) -> tf.Tensor:
                if tensor_id not in full:
                    h, w = self.shapes[tensor_id][:2]
                    batch = tf.shape(starts)[0]
                    zeros = tf.zeros([batch], tf.int32)
                    full[tensor_id] = tf.reshape(
                        self._assemble(
                            tensor_id,
                            patches,
                            start_of,
                            state["act"][_key(tensor_id)],
                            zeros,
                            zeros,
                            h,
                            w,
                            0,
                            0,
                            w,
                            sizes,
                        ),
                        [batch, h, w, self.shapes[tensor_id][2]],
                    )
                return full[tensor_id]

            for index, step in enumerate(self.steps):
                out = step.outputs[0]
                if out in dense:
                    values = {t: dense_value(t) if t in patches else full[t] for t in step.inputs}
                    for tensor_id, value in zip(step.outputs, _apply(step, values), strict=True):
                        full[tensor_id] = value
                    continue
                o_rows, o_cols = sizes[out]
                if step.kind == "window":
                    source = step.inputs[0]
                    g_rows, g_cols = step.geometry
                    o_r0, o_c0 = start_of(out)
                    q_r = o_r0 * g_rows.stride - g_rows.pad_before
                    q_c = o_c0 * g_cols.stride - g_cols.pad_before
                    pad_value = -np.inf if step.pool == "max" else 0.0
                    flat = state["pad"][_pad_key(source, pad_value)]
                    margin_r, margin_c, padded_width = self.margins[(source, pad_value)]
                    crop_rows, crop_cols = g_rows.crop_length(o_rows), g_cols.crop_length(o_cols)
                    if (index, source) in direct:
                        patches[out] = self._window(step, patches[source], q_r, q_c, crop_rows, crop_cols)
                        continue
                    crop = self._assemble(
                        source,
                        patches,
                        start_of,
                        flat,
                        q_r,
                        q_c,
                        crop_rows,
                        crop_cols,
                        margin_r,
                        margin_c,
                        padded_width,
                        sizes,
                    )
                    patches[out] = self._window(step, crop, q_r, q_c, crop_rows, crop_cols)
                elif step.kind == "pad":
                    patches[out] = patches[step.inputs[0]]
                elif step.kind == "pointwise":
                    patches[out] = _apply(step, {step.inputs[0]: patches[step.inputs[0]]})[0]
                else:  # merge: every input over the union rectangle
                    o_r0, o_c0 = start_of(out)
                    h, w = self.shapes[out][:2]
                    values = {}
                    for source in step.inputs:
                        if (index, source) in direct:
                            values[source] = patches[source]
                            continue
                        values[source] = self._assemble(
                            source,
                            patches,
                            start_of,
                            state["act"][_key(source)],
                            o_r0,
                            o_c0,
                            o_rows,
                            o_cols,
                            0,
                            0,
                            w,
                            sizes,
                        )
                    patches[out] = _apply(step, values)[0]
            final = full[id(self.model.outputs[0])]
            final = tf.cast(final, tf.float32)
            if network.softmax_applied:
                final = tf.nn.softmax(final, axis=-1)
            return final

        return run

    def _assemble(
        self,
        tensor_id: int,
        patches: dict[int, tf.Tensor],
        start_of: Callable,
        clean_flat: tf.Tensor,
        q_r: tf.Tensor,
        q_c: tf.Tensor,
        rows: int,
        cols: int,
        margin_r: int,
        margin_c: int,
        clean_width: int,
        sizes: dict[int, tuple[int, int]],
    ) -> tf.Tensor:
        """Occluded activation over the window ``[q, q + size)``: the patch where changed, else clean."""
        base = tf.gather(clean_flat, _grid_index(q_r + margin_r, q_c + margin_c, rows, cols, clean_width))
        patch = patches[tensor_id]
        p_rows, p_cols = sizes[tensor_id]
        p_r0, p_c0 = start_of(tensor_id)
        rel_r = tf.expand_dims(q_r - p_r0, 1) + tf.range(rows)  # (B, rows) position in the patch
        rel_c = tf.expand_dims(q_c - p_c0, 1) + tf.range(cols)
        inside_r = (rel_r >= 0) & (rel_r < p_rows)
        inside_c = (rel_c >= 0) & (rel_c < p_cols)
        index = tf.expand_dims(tf.clip_by_value(rel_r, 0, p_rows - 1), 2) * p_cols + tf.expand_dims(
            tf.clip_by_value(rel_c, 0, p_cols - 1), 1
        )
        flat_patch = tf.reshape(patch, [tf.shape(patch)[0], p_rows * p_cols, self.shapes[tensor_id][2]])
        picked = tf.gather(flat_patch, index, batch_dims=1)
        inside = tf.expand_dims(tf.expand_dims(inside_r, 2) & tf.expand_dims(inside_c, 1), 3)
        return tf.where(inside, picked, base)

    def _window(self, step: _Step, crop: tf.Tensor, q_r, q_c, crop_rows: int, crop_cols: int) -> tf.Tensor:
        layer = step.layer
        g_rows, g_cols = step.geometry
        strides = (g_rows.stride, g_cols.stride)
        if step.pool == "crop":
            return crop
        if step.pool:
            pool_size = (g_rows.kernel, g_cols.kernel)
            if step.pool == "max":
                return keras.ops.max_pool(crop, pool_size, strides, "valid")
            pooled = keras.ops.average_pool(crop, pool_size, strides, "valid")
            if not step.same_average:
                return pooled
            # TF's SAME average divides by the cells inside the image: rescale by that count.
            height, width = self.shapes[step.inputs[0]][:2]
            in_r = tf.expand_dims(q_r, 1) + tf.range(crop_rows)
            in_c = tf.expand_dims(q_c, 1) + tf.range(crop_cols)
            ok = tf.expand_dims((in_r >= 0) & (in_r < height), 2) & tf.expand_dims((in_c >= 0) & (in_c < width), 1)
            share = keras.ops.average_pool(tf.expand_dims(tf.cast(ok, crop.dtype), 3), pool_size, strides, "valid")
            return pooled / share
        dilation = (g_rows.dilation, g_cols.dilation)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            out = keras.ops.depthwise_conv(crop, layer.kernel, strides, "valid", dilation_rate=dilation)
            channels = layer.kernel.shape[2] * layer.kernel.shape[3]
        elif isinstance(layer, keras.layers.SeparableConv2D):
            out = keras.ops.separable_conv(
                crop, layer.depthwise_kernel, layer.pointwise_kernel, strides, "valid", dilation_rate=dilation
            )
            channels = layer.filters
        else:
            out = keras.ops.conv(crop, layer.kernel, strides, "valid", dilation_rate=dilation)
            channels = layer.filters
        if layer.use_bias:
            out = out + keras.ops.reshape(layer.bias, (1, 1, 1, channels))
        if layer.activation is not None:
            out = layer.activation(out)
        return out


class _Traced:
    """One cover size's compiled function: ``queued`` → ``tracing`` → ``ready`` or ``failed`` (with ``why``)."""

    def __init__(self) -> None:
        self.state = "queued"
        self.function: Callable | None = None
        self.why = ""
        self.settled = threading.Event()


#: One trace at a time in a process: graph building is Python-bound, so parallel traces only compete.
_TRACE_LOCK = threading.Lock()


def _spec(value: tf.Tensor) -> tf.TensorSpec:
    return tf.TensorSpec(value.shape, value.dtype)


def _call_graph(concrete: Any, starts: tf.Tensor, state: CleanState) -> tf.Tensor:
    """Run a traced incremental function with Grappler's graph rewrites off (for this call, this thread).

    On CPU they took 0.4–0.8 s per function on MobileNetV2 and made it no faster; every call uses the same
    options, so the function is instantiated once.
    """
    context = _eager_context.context()
    previous = context.function_call_options
    context.function_call_options = _no_rewrite_options()
    try:
        return concrete(starts, state)
    finally:
        context.function_call_options = previous


_NO_REWRITES: list[Any] = []


def _no_rewrite_options() -> Any:
    if not _NO_REWRITES:
        config = _eager_context.context().config
        config.allow_soft_placement = True
        config.graph_options.rewrite_options.disable_meta_optimizer = True
        _NO_REWRITES.append(_eager_context.FunctionCallOptions(config_proto=config))
    return _NO_REWRITES[0]


def _batch_norm_affine(layer: Any) -> tuple[tf.Tensor, tf.Tensor] | None:
    """A channels-last batch norm's inference transform as ``(scale, shift)``, computed once, as
    ``tf.nn.batch_normalization`` computes them: the traced graphs then hold 2 operations per batch norm
    instead of ~10 (tracing time), with the same numbers."""
    if not isinstance(layer, keras.layers.BatchNormalization) or layer.axis not in (-1, 3, [-1], [3]):
        return None
    scale = tf.math.rsqrt(tf.cast(layer.moving_variance, tf.float32) + layer.epsilon)
    if layer.scale:
        scale = scale * tf.cast(layer.gamma, tf.float32)
    shift = -tf.cast(layer.moving_mean, tf.float32) * scale
    if layer.center:
        shift = tf.cast(layer.beta, tf.float32) + shift
    return scale, shift


def _apply(step: _Step, values: dict[int, tf.Tensor]) -> list[tf.Tensor]:
    """Run one step's layer on ``values`` (tensor id → tensor); its outputs in order."""
    if step.affine is not None:
        scale, shift = step.affine
        inputs = tf.cast(values[step.inputs[0]], tf.float32)
        return [tf.cast(inputs * scale + shift, step.layer.compute_dtype)]
    if step.node is None:  # a layer of a nested sequential model: one input, one output
        return [_call(step.layer, [values[step.inputs[0]]], {})]
    args, kwargs = step.node.arguments.fill_in(values)
    return list(keras.tree.flatten(_call(step.layer, args, kwargs)))


def _call(layer: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """A layer's own ``call`` in inference mode, without ``__call__``'s bookkeeping (faster tracing)."""
    if not isinstance(layer, keras.Model) and getattr(layer, "built", False):
        return layer.call(*args, **_call_kwargs(layer, kwargs))
    return layer(*args, **_call_kwargs(layer, kwargs))


def _call_kwargs(layer: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Inference-mode call arguments (batch norm statistics, no dropout)."""
    kwargs = dict(kwargs)
    if getattr(layer, "_call_has_training_arg", False):
        kwargs["training"] = False
    return kwargs


def _grid_index(r0: tf.Tensor, c0: tf.Tensor, rows: int, cols: int, width: int) -> tf.Tensor:
    """Flat indices ``(B, rows, cols)`` of the windows starting at ``(r0, c0)`` in a row-major grid."""
    r = tf.expand_dims(r0, 1) + tf.range(rows)
    c = tf.expand_dims(c0, 1) + tf.range(cols)
    return tf.expand_dims(r, 2) * width + tf.expand_dims(c, 1)


def group_by_size(boxes: np.ndarray) -> list[np.ndarray]:
    """Index arrays of ``boxes`` grouped by (height, width), in first-seen order."""
    sizes = boxes[:, 2:] - boxes[:, :2]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (h, w) in enumerate(sizes):
        groups.setdefault((int(h), int(w)), []).append(i)
    return [np.asarray(v) for v in groups.values()]


_MODELS_LOCK = threading.Lock()
_BUILDING: dict[int, threading.Event] = {}  # id(network) → set when its IncrementalModel is built (or failed)


def incremental_model(network: Network, *, wait: bool = True) -> IncrementalModel | None:
    """The network's :class:`IncrementalModel`, built once per network and shared by every thread (its traced
    functions with it). ``wait=False``: None while another thread is still building it. A graph the analysis
    cannot handle raises its error again at every call."""
    with _MODELS_LOCK:
        built = network._incremental  # noqa: SLF001 - the network owns the cache
        event = _BUILDING.get(id(network))
        builder = built is None and event is None
        if builder:
            event = _BUILDING[id(network)] = threading.Event()
    if builder:
        try:
            built = IncrementalModel(network)
        except Exception as exc:  # kept: every later map says why without analysing again
            built = exc
        with _MODELS_LOCK:
            network._incremental = built  # noqa: SLF001
            del _BUILDING[id(network)]
        event.set()
    elif built is None:
        if not wait:
            return None
        event.wait()
        built = network._incremental  # noqa: SLF001
    if isinstance(built, Exception):
        raise built
    return built


class WarmUp:
    """Incremental functions of some cover sizes being traced in a background thread (:func:`warm_up`).

    :attr:`ready`: every cover size settled (traced, failed, or not worth it); :meth:`wait` blocks until then;
    :meth:`status` says how each cover size stands. Meanwhile ``engine="auto"`` maps run those covers densely.
    """

    def __init__(self, network: Network, covers: Sequence[tuple[int, int]]) -> None:
        self.network_name = network.name
        self.covers = tuple(dict.fromkeys((int(c[0]), int(c[1])) for c in covers))
        self.error = ""  # why the network cannot run incrementally at all ('' if it can)
        self.seconds: float | None = None  # how long the warm-up took, once done
        self._network = network
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sensmap-warm-up-{network.name}", daemon=True)

    def start(self) -> WarmUp:
        self._thread.start()
        return self

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            model = incremental_model(self._network)
            model.queue(self.covers)
            for cover in self.covers:
                model.function(cover)  # traces what is still queued; waits for what another thread traces
        except Exception as exc:
            self.error = f"incremental analysis failed ({type(exc).__name__}: {str(exc)[:200]})"
        finally:
            self.seconds = time.perf_counter() - started
            self._done.set()

    @property
    def ready(self) -> bool:
        """True when every cover size is settled: maps then use the traced functions without waiting."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :attr:`ready` (or ``timeout`` seconds); returns :attr:`ready`."""
        return self._done.wait(timeout)

    def status(self) -> dict[str, str]:
        """Per cover size (``"rows×cols px"``): ready, queued, tracing, failed (why), or dense (why: no gain)."""
        label = {cover: f"{cover[0]}×{cover[1]} px" for cover in self.covers}
        if self.error:
            return {label[cover]: f"dense: {self.error}" for cover in self.covers}
        model = incremental_model(self._network, wait=False) if self._network is not None else None
        if model is None:
            return {label[cover]: "queued" for cover in self.covers}
        out = {}
        for cover in self.covers:
            state = model.status(cover)
            if state in ("dense", "failed"):
                state = f"{state}: {model.function(cover, wait=False)[1]}"
            out[label[cover]] = state
        return out


__all__: Sequence[str] = (
    "IncrementalModel",
    "AxisGeometry",
    "DENSE_FRACTION",
    "WarmUp",
    "group_by_size",
    "incremental_model",
)
