"""Exact incremental occlusion inference (Krypton-style): recompute only what a cover can change.

Part of the engine (this package and :mod:`sensmap.engine` are the ones that run TensorFlow).

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

One file per concern, each depending only on those above it:

- ``geometry.py`` — interval arithmetic: what a window layer's output can change (numpy, no TensorFlow);
- ``layers.py`` — one layer on full activations or on crops (``valid`` padding; batch norm as an affine map);
- ``graph.py`` — the Keras graph as steps that can run on crops ("window", "pad", "pointwise", "merge") or
  cannot ("dense", with the reason);
- ``planning.py`` — per group of same-size covers, each activation's changed rectangle, where the batch goes
  dense, the estimated gain and why a group runs dense (:data:`DENSE_FRACTION`, :data:`MIN_USEFUL_SPEEDUP`:
  read there at every call, so change them there, not here);
- ``runner.py`` — one photo's clean activations and the batch function that runs covers crop by crop;
- ``tracing.py`` — tracing a batch function into a graph and calling it (one trace at a time per process);
- ``model.py`` — :class:`IncrementalModel` (plans and traced functions per cover size, shared by threads) and
  :func:`incremental_model` (one per network);
- ``warmup.py`` — :class:`WarmUp`: cover sizes traced ahead in a background thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from .geometry import AxisGeometry, group_by_size
from .geometry import _same_padding as _same_padding  # handed on: tests/test_incremental.py
from .layers import _call as _call  # handed on: sensmap.methods.graph
from .model import IncrementalModel, incremental_model
from .planning import DENSE_FRACTION, MIN_USEFUL_SPEEDUP
from .warmup import WarmUp

__all__: Sequence[str] = (
    "IncrementalModel",
    "AxisGeometry",
    "DENSE_FRACTION",
    "MIN_USEFUL_SPEEDUP",
    "WarmUp",
    "group_by_size",
    "incremental_model",
)
