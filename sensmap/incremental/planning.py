"""Plans: the rectangle of every activation that one group of same-size covers can change, and whether the group
is worth computing on crops (numpy).

A plan propagates the covers' boxes through the steps of a :class:`~sensmap.incremental.graph.LayerGraph`
with the interval geometry of :mod:`sensmap.incremental.geometry`, fixes one crop size per activation (the
largest over the covers) and a crop start per cover. When a rectangle grows beyond :data:`DENSE_FRACTION` of
its activation, or a step cannot run on crops, the rest of the network is computed densely. Where little
arithmetic comes before that point the group gains too little (:func:`_estimated_speedup` below
:data:`MIN_USEFUL_SPEEDUP`) and :func:`_dense_why` says why it runs dense.

:data:`DENSE_FRACTION` and :data:`MIN_USEFUL_SPEEDUP` are read here at every call: tests change them here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .graph import LayerGraph

#: A crop larger than this fraction of its activation's area is computed densely (tuned with
#: benchmarks/occlusion_bench.py on MobileNetV2 and ResNet50: beyond ~half the area the gathers
#: cost more than the saved arithmetic).
DENSE_FRACTION = 0.5
#: Below this estimated arithmetic speed-up the engine runs the plain dense path instead.
MIN_USEFUL_SPEEDUP = 1.15


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


def _plan(graph: LayerGraph, boxes: np.ndarray, dense_fraction: float | None = None) -> _Plan:
    """Changed rectangles of every activation for covers ``boxes`` ``(n, 4)`` of one size.

    ``dense_fraction`` (default :data:`DENSE_FRACTION`): rectangles larger than this share of
    their activation switch the rest of the network to dense computation.
    """
    if dense_fraction is None:
        dense_fraction = DENSE_FRACTION
    boxes = np.asarray(boxes, dtype=np.int64)
    intervals: dict[int, tuple[np.ndarray, ...]] = {
        graph.input_id: (boxes[:, 0], boxes[:, 2], boxes[:, 1], boxes[:, 3])
    }
    sizes: dict[int, tuple[int, int]] = {}
    starts: dict[int, np.ndarray] = {}
    dense: set[int] = set()

    def settle(tensor_id: int) -> None:
        r0, r1, c0, c1 = intervals[tensor_id]
        height, width = graph.shapes[tensor_id][:2]
        rows, cols = max(int((r1 - r0).max()), 1), max(int((c1 - c0).max()), 1)
        sizes[tensor_id] = (rows, cols)
        starts[tensor_id] = np.stack([np.clip(r0, 0, height - rows), np.clip(c0, 0, width - cols)], axis=1)
        if rows * cols > dense_fraction * height * width:
            dense.add(tensor_id)

    settle(graph.input_id)
    for step in graph.steps:
        if step.kind == "dense" or any(t in dense for t in step.inputs):
            dense.update(step.outputs)
            continue
        out = step.outputs[0]
        height, width = graph.shapes[out][:2]
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
    direct = _direct_reads(graph, sizes, starts, dense)
    key = (
        tuple(sorted((t, sizes[t]) for t in sizes if t not in dense)),
        tuple(sorted(dense)),
        tuple(sorted(direct)),
    )
    return _Plan(sizes=sizes, starts=starts, dense=dense, direct=direct, key=key)


def _direct_reads(
    graph: LayerGraph, sizes: dict[int, tuple[int, int]], starts: dict[int, np.ndarray], dense: set[int]
) -> set[tuple[int, int]]:
    """Inputs whose patch already is exactly the window a step reads (1×1 convolutions, most merges)."""
    direct = set()
    for index, step in enumerate(graph.steps):
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


def _estimated_speedup(graph: LayerGraph, plan: _Plan) -> float:
    """Dense arithmetic over incremental arithmetic for one cover of ``plan`` (window layers only)."""
    total = incremental = 0.0
    for step in graph.steps:
        if step.kind != "window":
            continue
        total += step.flops
        out = step.outputs[0]
        if out in plan.dense:
            incremental += step.flops
        else:
            rows, cols = plan.sizes[out]
            height, width = graph.shapes[out][:2]
            incremental += step.flops * rows * cols / (height * width)
    return total / incremental if incremental else 1.0


def _dense_why(graph: LayerGraph, plan: _Plan) -> str:
    """Why covers of this plan run densely ('' when computing them incrementally saves arithmetic)."""
    if graph.input_id in plan.dense:
        return "the cover is larger than half of the image: nothing to save"
    gain = _estimated_speedup(graph, plan)
    if gain < MIN_USEFUL_SPEEDUP:
        limit = graph.dense_reason() or "the covers are too large"
        return f"estimated gain {gain:.2f}× is below {MIN_USEFUL_SPEEDUP:g}× ({limit})"
    return ""
