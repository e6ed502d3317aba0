"""Interval geometry: which cells of a layer's output a change to its input can reach (pure integers, no TensorFlow).

Through a convolution or pooling layer the changed area grows by the kernel's reach and shrinks by its stride
(:meth:`AxisGeometry.changed`), and a crop of the output needs a known number of input cells
(:meth:`AxisGeometry.crop_length`). Checked exactly against brute-force enumeration in tests/test_incremental.py.

Geometry follows TensorFlow's ``SAME`` padding (``pad_before = max((out−1)·s + d·(k−1) + 1 − in, 0) // 2``),
which Keras 3 uses on the TensorFlow backend. Intervals are half-open ``[start, stop)`` in cells of
the activation concerned, rows and columns independently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


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


def group_by_size(boxes: np.ndarray) -> list[np.ndarray]:
    """Index arrays of ``boxes`` grouped by (height, width), in first-seen order."""
    sizes = boxes[:, 2:] - boxes[:, :2]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (h, w) in enumerate(sizes):
        groups.setdefault((int(h), int(w)), []).append(i)
    return [np.asarray(v) for v in groups.values()]
