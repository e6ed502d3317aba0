"""One layer's computation, on full activations or on crops (TensorFlow).

:func:`_apply` runs a layer as the network does, in inference mode (batch norm as its per-channel affine map,
:func:`_batch_norm_affine`); :func:`_window` runs a window layer — convolution, depthwise or separable convolution,
max or average pooling, cropping — on crops with ``valid`` padding, the crops carrying the halo and the layer's own
padding (see :mod:`sensmap.incremental.runner`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import keras

from ..models import tf

if TYPE_CHECKING:
    from .graph import _Step


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


def _window(
    step: _Step, crop: tf.Tensor, q_r, q_c, crop_rows: int, crop_cols: int, input_size: tuple[int, int]
) -> tf.Tensor:
    """A window layer (convolution, pooling, cropping) on crops ``(B, crop_rows, crop_cols, C)`` starting at
    cell ``(q_r, q_c)`` of its ``input_size`` input (negative where the crop starts in the padding), with
    ``valid`` padding: its output over the crop."""
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
        height, width = input_size
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
