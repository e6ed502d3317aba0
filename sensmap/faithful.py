"""The faithfulness check of a map: deletion and insertion curves (RISE, Petsiuk et al. 2018) against random
orders of the pixels, run through the same compiled call as the map (:mod:`sensmap.engine`).

Named ``faithful`` so that ``sensmap.faithfulness`` stays the function (the package's lazy export), not this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .engine import (
    CancelToken,
    ProgressCallback,
    _as_image,
    _as_network,
    _pipeline,
    auto_batch_size,
    predict_batches,
)
from .errors import ParameterError
from .fills import fill_canvas
from .images import LoadedImage, fit_image
from .metrics import curve_auc, faithfulness_passes, random_rank, step_counts, support_rank
from .models import Network, tf
from .result import SensitivityResult
from .scores import ScoreFunction, resolve_score, score_values


def ordered_batches(
    base: np.ndarray, replacement: np.ndarray, rank: np.ndarray, counts: np.ndarray, batch_size: int
) -> tf.data.Dataset:
    """Images with the ``count`` first-ranked pixels taken from ``replacement``, the rest from ``base``.

    ``rank`` is an ``(H, W)`` int permutation of ``0..H·W−1`` (0 = first); one image per entry of
    ``counts``. Deletion curves replace the best-supported pixels by the fill; insertion curves
    restore them into a blurred photo.
    """
    base_t = tf.constant(base, tf.float32)
    replacement_t = tf.constant(replacement, tf.float32)
    rank_t = tf.constant(rank, tf.int32)[None, :, :, None]

    def reveal(batch_counts: tf.Tensor) -> tf.Tensor:
        return tf.where(rank_t < batch_counts[:, None, None, None], replacement_t, base_t)

    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(counts, tf.int32)).batch(batch_size).map(reveal)
    return _pipeline(dataset)


def faithfulness(
    model: Network | Any,
    image: LoadedImage | Any,
    result: SensitivityResult,
    *,
    steps: int = 20,
    random_orders: int = 3,
    seed: int = 0,
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | Callable[[], bool] | None = None,
    score: ScoreFunction | None = None,
    block: int | None = None,
) -> dict[str, Any]:
    """Deletion and insertion curves of a map (RISE, Petsiuk et al. 2018), against random orders.

    Deletion: the photo's pixels are replaced by the map's fill in order of decreasing support, in
    ``steps`` equal steps; a faithful map makes the target probability fall fast (low AUC). Insertion:
    starting from the blurred photo, the original pixels come back in the same order; a faithful
    map makes it rise fast (high AUC). Baselines: ``random_orders`` seeded random orders of patches as
    large as the map's finest detail (``result.detail_px``: its finest cover, RISE mask cell or Grad-CAM
    feature cell), averaged. ``block`` (network-grid pixels, ≥ 1) sets that patch side instead: give maps of several
    methods the same ``block`` (with the same seed, fill and steps they then share one random baseline) to compare
    their AUCs fairly. Every method's result works (Grad-CAM and RISE delete with their ``fill``).
    Curves hold the target's probability (0..1) at pixel fractions 0, 1/steps, …, 1; AUCs are the
    trapezoid areas over the fraction, so they lie in [0, 1]. Maps with other scores follow the map's
    own score (``logit``: the raw output; ``sigmoid``: the label's probability; ``similarity``: the
    cosine similarity to the unoccluded output; a custom score: its value — pass its function as
    ``score``), and their AUCs are in that score's units. The numbers are also stored in
    ``result.metadata["faithfulness"]`` (and so in its ``.npz``; ``"block"`` records the patch side). All passes
    run through the same compiled call as the map: ``2 · (steps + 1) · (1 + random_orders)`` of them.
    """
    kind = resolve_score(result.score_kind if score is None else score)
    if kind.kind != result.score_kind or (kind.custom and kind.function is None):
        raise ParameterError(
            f"this map was made with the {result.score_kind} score: pass that score's function as score="
            if kind.custom or result.score_kind.startswith("custom:")
            else f"this map was made with the {result.score_kind} score, not {kind.kind}"
        )
    curve_score = "probability" if kind.kind == "log-odds" else kind
    network = _as_network(model).for_score(kind)
    photo = _as_image(image)
    if network.input_size != result.input_size:
        raise ParameterError(f"the map was made on a {result.input_size} grid, this network takes {network.input_size}")
    if int(random_orders) < 1:
        raise ParameterError(f"random_orders must be at least 1, got {random_orders!r}")
    height, width = network.input_size
    pixels = fit_image(photo, network.input_size, result.fit)
    deleted = fill_canvas(pixels, result.fill)
    blurred = fill_canvas(pixels, "blur")
    counts = step_counts(height * width, steps)
    if block is None:
        block = result.detail_px  # the finest cover (occlusion), mask cell (RISE) or feature cell (Grad-CAM)
    elif isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1:
        raise ParameterError(f"the random orders' block must be a whole number of pixels ≥ 1, got {block!r}")
    block = int(block)
    ranks = [support_rank(result.support)]
    ranks += [random_rank((height, width), seed + i, block) for i in range(random_orders)]
    batch_size = auto_batch_size(height, width) if batch_size is None else int(batch_size)
    total = faithfulness_passes(steps, random_orders)
    done_before = 0

    def curves(base: np.ndarray, replacement: np.ndarray) -> np.ndarray:
        nonlocal done_before
        out = []
        for rank in ranks:
            offset = done_before

            def report(done: int, _total: int, offset: int = offset) -> None:
                if progress is not None:
                    progress(offset + done, total)

            batches = ordered_batches(base, replacement, rank, counts, batch_size)
            outputs = predict_batches(network, batches, len(counts), progress=report, cancel=cancel)
            out.append(score_values(outputs, result.target, curve_score, result.reference_probabilities))
            done_before += len(counts)
        return np.stack(out)

    deletion = curves(pixels, deleted)
    insertion = curves(blurred, pixels)
    numbers = {
        "steps": int(steps),
        "random_orders": int(random_orders),
        "seed": int(seed),
        "score_kind": kind.kind if kind.kind != "log-odds" else "probability",
        "block": block,
        "fractions": (counts / (height * width)).tolist(),
        "deletion_curve": deletion[0].tolist(),
        "insertion_curve": insertion[0].tolist(),
        "random_deletion_curve": deletion[1:].mean(axis=0).tolist(),
        "random_insertion_curve": insertion[1:].mean(axis=0).tolist(),
        "deletion_auc": curve_auc(deletion[0]),
        "insertion_auc": curve_auc(insertion[0]),
        "random_deletion_auc": float(np.mean([curve_auc(c) for c in deletion[1:]])),
        "random_insertion_auc": float(np.mean([curve_auc(c) for c in insertion[1:]])),
        "passes": total,
    }
    result.metadata["faithfulness"] = numbers
    return numbers
