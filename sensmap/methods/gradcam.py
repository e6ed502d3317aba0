"""Grad-CAM (Selvaraju et al. 2017): the last spatial feature maps weighted by the class score's gradient.

For the feature map ``A`` (``h × w × K`` cells) found by :func:`sensmap.methods.graph.find_feature_site`
and the target's score ``y``: ``α_k = mean_ij ∂y/∂A_ijk``, ``cam = ReLU(Σ_k α_k A_k)``. The ``h × w`` map is
stretched to the network grid with the bilinear resampling every map is shown with
(:func:`sensmap.images.map_to_photo`) and divided by its maximum. Unit: :data:`sensmap.result.GRADCAM_UNIT`
— relative, 0..1, 1 = the strongest point, 0 = no evidence for the class; it is not a change of
probability and shows no inhibiting areas. One forward and one backward pass; exact.

The score is the class score occlusion and RISE explain: the target's probability. Its log-probability
(computed from the logits when the network has them, exact in float32 even at probability 1.0) is
differentiated; the probability and its log-odds have gradients that are positive multiples of it, so
all three give the same normalised map. (The paper differentiates the pre-softmax logit; that highlights
what similar classes share: on ``pets.jpg`` MobileNetV2's logit map for 'Italian greyhound' peaks between
the two dogs, the probability map on the greyhound.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..engine import CancelToken, ProgressCallback, _as_image, _as_network, _cancelled
from ..errors import CancelledError, ModelError
from ..fills import DEFAULT_FILL, Fill, normalize_fill
from ..images import LoadedImage, map_to_photo
from ..models import Network, tf
from ..result import SensitivityResult, validate_score_kind
from .base import pixel_result, prepare
from .graph import FeatureSite, feature_and_log_probabilities, find_feature_site


def gradcam_cells(network: Network, pixels: np.ndarray, target: int, site: FeatureSite) -> np.ndarray:
    """``cam (h, w)`` on the feature grid: ``ReLU(Σ_k α_k A_k)`` before resampling and scaling."""
    image = tf.constant(np.asarray(pixels, dtype=np.float32)[None])
    with tf.GradientTape() as tape:
        tape.watch(image)
        feature, log_probabilities = feature_and_log_probabilities(network, image, site)
        score = log_probabilities[0, target]
    gradient = tape.gradient(score, feature)
    if gradient is None:
        raise ModelError(
            f"{network.name}: the class score has no gradient with respect to {site.layer} (a layer between them "
            "is not differentiable), so Grad-CAM cannot weight it. Use occlusion or RISE instead."
        )
    weights = tf.reduce_mean(gradient[0], axis=(0, 1))  # α_k: (K,)
    cam = tf.nn.relu(tf.tensordot(tf.cast(feature[0], tf.float32), weights, axes=[[2], [0]]))
    return cam.numpy().astype(np.float64)


def gradcam(
    model: Network | Any,
    image: LoadedImage | Any,
    *,
    target: int | str | None = None,
    fit: str = "squash",
    fill: Fill = DEFAULT_FILL,
    score: str = "probability",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | Callable[[], bool] | None = None,
) -> SensitivityResult:
    """Grad-CAM map of ``image`` for one class of ``model`` (see the module docstring for the definition).

    ``target``: class index or name (default: the top-1 class). ``fit``: how the photo fits the network
    input (``squash`` or ``crop``). Grad-CAM covers nothing: ``fill`` is recorded for the faithfulness check
    (:func:`sensmap.faithfulness` deletes pixels with it) so the methods are compared on equal terms;
    ``score`` (``probability`` or ``log-odds``) is recorded too and gives the same map. The result's
    :attr:`~SensitivityResult.support` is 0..1 on the network grid (unit ``"relative"``),
    ``method == "gradcam"``; :attr:`~SensitivityResult.method_parameters` name the layer and the feature grid.
    ``progress(done, 1)`` and ``cancel`` (checked before the pass) work as for the other methods.
    """
    started = time.perf_counter()
    network = _as_network(model)
    photo = _as_image(image)
    fill_value = normalize_fill(fill)
    score_kind = validate_score_kind(score)
    site = find_feature_site(network)
    prepared = prepare(network, photo, fit, target)
    if progress is not None:
        progress(0, 1)
    if _cancelled(cancel):
        raise CancelledError("cancelled before the Grad-CAM pass")
    cells = gradcam_cells(network, prepared.pixels, prepared.target, site)
    if progress is not None:
        progress(1, 1)
    upsampled = np.clip(map_to_photo(cells, network.input_size, "squash").astype(np.float64), 0.0, None)
    peak = float(upsampled.max())
    support = upsampled / peak if peak > 0 else np.zeros_like(upsampled)
    height, width = network.input_size
    rows, cols = cells.shape
    finished = time.perf_counter()
    return pixel_result(
        network,
        photo,
        prepared,
        method="gradcam",
        support=support,
        fit=fit,
        fill=fill_value,
        score_kind=score_kind,
        parameters={
            "layer": site.layer,
            "feature_grid": [rows, cols],
            "peak": peak,
            "passes": 1,
            "detail_px": max(1, round(min(height / rows, width / cols))),
        },
        metadata={"mode": "exact", "approximate": False, "timings_s": {"total": finished - started}},
    )
