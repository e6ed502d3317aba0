"""Running a batch of same-size covers crop by crop: one photo's clean activations, and the batch function.

Every activation of an occluded image equals the unoccluded ("clean") activation outside the rectangle its
plan gives (:mod:`sensmap.incremental.planning`). :func:`_prepare` computes one photo's clean activations once
(:data:`CleanState`). :func:`_batch_function` builds, for one plan, the function that computes each layer only on
its rectangle: the crop a layer reads is the changed patch where it lies inside the input's rectangle and the
clean activation elsewhere — the kernel's halo, and the layer's own padding where the halo leaves the image
(:func:`_assemble`) — and the layer runs on it with ``valid`` padding (:mod:`sensmap.incremental.layers`). From the
first activation computed densely on, the full occluded activation is assembled (clean activation with the
rectangle pasted in) and the rest of the network runs as usual.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..models import tf
from . import layers  # layers._window is looked up at every trace (a test makes it fail)
from .graph import LayerGraph
from .layers import _apply
from .planning import _Plan

#: Clean activations of one image for one network, as ``tf.function`` arguments:
#: ``{"act": {tensor key: (H·W, C)}, "pad": {padded key: (Hp·Wp, C)}, "canvas": (H·W, 3)}`` —
#: activations flattened row-major; padded copies carry the layer's padding value in a margin.
CleanState = dict


def _key(tensor_id: int) -> str:
    return str(tensor_id)


def _pad_key(tensor_id: int, pad_value: float) -> str:
    return f"{tensor_id}/{'max' if pad_value < 0 else 'zero'}"


def _prepare(graph: LayerGraph, pixels: np.ndarray, canvas: np.ndarray) -> CleanState:
    """Clean activations of ``pixels`` (raw 0..255, ``(H, W, 3)``) and the preprocessed ``canvas``."""
    preprocess = graph.network.preprocess
    values = graph.run_dense({graph.input_id: preprocess(tf.constant(pixels[None], tf.float32))})
    activations = {t: v[0] for t, v in values.items() if graph.spatial(t)}
    padded = {}
    for (source, pad_value), (margin_r, margin_c, _) in graph.margins.items():
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


def _batch_function(graph: LayerGraph, plan: _Plan) -> Callable:
    """``run(starts, state)``: the network's output probabilities for a batch of covers of ``plan``."""
    column = {t: i for i, t in enumerate(plan.columns)}
    sizes, dense, direct = dict(plan.sizes), set(plan.dense), set(plan.direct)
    network = graph.network

    def run(starts: tf.Tensor, state: CleanState) -> tf.Tensor:
        # starts: (B, tensors, 2) int32 row/column starts of every incrementally computed activation
        rows_of, cols_of = tf.unstack(starts, axis=2)  # (B, tensors) each
        columns = {"rows": tf.unstack(rows_of, axis=1), "cols": tf.unstack(cols_of, axis=1)}

        def start_of(tensor_id: int) -> tuple[tf.Tensor, tf.Tensor]:
            i = column[tensor_id]
            return columns["rows"][i], columns["cols"][i]

        patches: dict[int, tf.Tensor] = {}
        full: dict[int, tf.Tensor] = {}
        rows, cols = sizes[graph.input_id]
        r0, c0 = start_of(graph.input_id)
        width = graph.shapes[graph.input_id][1]
        patches[graph.input_id] = tf.gather(state["canvas"], _grid_index(r0, c0, rows, cols, width))

        def dense_value(tensor_id: int) -> tf.Tensor:
            if tensor_id not in full:
                h, w = graph.shapes[tensor_id][:2]
                batch = tf.shape(starts)[0]
                zeros = tf.zeros([batch], tf.int32)
                full[tensor_id] = tf.reshape(
                    _assemble(
                        graph,
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
                    [batch, h, w, graph.shapes[tensor_id][2]],
                )
            return full[tensor_id]

        for index, step in enumerate(graph.steps):
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
                margin_r, margin_c, padded_width = graph.margins[(source, pad_value)]
                crop_rows, crop_cols = g_rows.crop_length(o_rows), g_cols.crop_length(o_cols)
                in_size = graph.shapes[source][:2]
                if (index, source) in direct:
                    patches[out] = layers._window(step, patches[source], q_r, q_c, crop_rows, crop_cols, in_size)
                    continue
                crop = _assemble(
                    graph,
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
                patches[out] = layers._window(step, crop, q_r, q_c, crop_rows, crop_cols, in_size)
            elif step.kind == "pad":
                patches[out] = patches[step.inputs[0]]
            elif step.kind == "pointwise":
                patches[out] = _apply(step, {step.inputs[0]: patches[step.inputs[0]]})[0]
            else:  # merge: every input over the union rectangle
                o_r0, o_c0 = start_of(out)
                h, w = graph.shapes[out][:2]
                values = {}
                for source in step.inputs:
                    if (index, source) in direct:
                        values[source] = patches[source]
                        continue
                    values[source] = _assemble(
                        graph,
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
        final = full[id(graph.model.outputs[0])]
        final = tf.cast(final, tf.float32)
        if network.softmax_applied:
            final = tf.nn.softmax(final, axis=-1)
        return final

    return run


def _assemble(
    graph: LayerGraph,
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
    flat_patch = tf.reshape(patch, [tf.shape(patch)[0], p_rows * p_cols, graph.shapes[tensor_id][2]])
    picked = tf.gather(flat_patch, index, batch_dims=1)
    inside = tf.expand_dims(tf.expand_dims(inside_r, 2) & tf.expand_dims(inside_c, 1), 3)
    return tf.where(inside, picked, base)


def _grid_index(r0: tf.Tensor, c0: tf.Tensor, rows: int, cols: int, width: int) -> tf.Tensor:
    """Flat indices ``(B, rows, cols)`` of the windows starting at ``(r0, c0)`` in a row-major grid."""
    r = tf.expand_dims(r0, 1) + tf.range(rows)
    c = tf.expand_dims(c0, 1) + tf.range(cols)
    return tf.expand_dims(r, 2) * width + tf.expand_dims(c, 1)
