"""RISE (Petsiuk et al. 2018): random smooth masks, and the class score's change where they cover the photo.

Mask geometry, aggregation and units are in :mod:`sensmap.masks` (numpy): the map is the expected score
change when a pixel is covered rather than kept, in the units of occlusion maps (probability difference,
×100 for percentage points) and with its sign (> 0 where covering lowers the score). The masked image keeps
the photo where the mask is 1 and shows the fill (the same fills as occlusion, :mod:`sensmap.fills`) where
it is 0: ``m · photo + (1 − m) · fill``, in raw 0..255 pixels. It ranks pixels like Petsiuk's
``Σ f_i m_i / (N p)`` (an affine function of it when every pixel is kept equally often). The map is a Monte
Carlo estimate, so the result is marked approximate; the same ``seed`` gives the same masks and the same
map whatever the batch size.

Masks are drawn batch by batch from one seeded generator (never all at once): memory stays bounded by one
batch, and masked batches run through the engine's ``tf.data`` pipeline and compiled call
(:func:`sensmap.engine.predict_batches`) with its progress, cancel and forward-pass budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..engine import (
    CancelToken,
    ProgressCallback,
    _as_image,
    _as_network,
    _pipeline,
    auto_batch_size,
    max_passes_from_env,
    predict_batches,
)
from ..errors import BudgetError
from ..fills import DEFAULT_FILL, Fill, fill_canvas, normalize_fill
from ..images import LoadedImage
from ..masks import (
    DEFAULT_GRID,
    DEFAULT_MASKS,
    DEFAULT_P,
    MaskSums,
    check_p,
    mask_cell,
    rise_masks,
    rise_passes,
    whole_number,
)
from ..models import Network, tf
from ..result import SensitivityResult, class_scores, validate_score_kind
from .base import pixel_result, prepare


def mask_batches(
    pixels: np.ndarray, canvas: np.ndarray, masks: int, batch_size: int, grid: int, p: float, seed: int
) -> tf.data.Dataset:
    """A dataset of ``(masks (B, H, W), masked images (B, H, W, 3))``, masks drawn batch by batch from ``seed``."""
    size = pixels.shape[:2]

    def generate() -> Iterator[np.ndarray]:
        rng = np.random.default_rng(seed)
        for start in range(0, masks, batch_size):
            yield rise_masks(rng, min(batch_size, masks - start), size, grid, p)

    image = tf.constant(pixels, tf.float32)
    fill = tf.constant(canvas, tf.float32)

    def blend(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        keep = batch[..., None]
        return batch, keep * image + (1.0 - keep) * fill

    signature = tf.TensorSpec((None, *size), tf.float32)
    return _pipeline(tf.data.Dataset.from_generator(generate, output_signature=signature).map(blend))


def rise(
    model: Network | Any,
    image: LoadedImage | Any,
    *,
    target: int | str | None = None,
    masks: int = DEFAULT_MASKS,
    grid: int = DEFAULT_GRID,
    p: float = DEFAULT_P,
    seed: int = 0,
    fill: Fill = DEFAULT_FILL,
    score: str = "probability",
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | Callable[[], bool] | None = None,
    fit: str = "squash",
    max_passes: int | None = None,
) -> SensitivityResult:
    """RISE map of ``image`` for one class of ``model`` (definition and units in the module docstring).

    ``masks``: how many random masks (= forward passes; :func:`rise_passes`); ``grid``: cells per side of the
    random grid (each cell ``ceil(side / grid)`` px); ``p``: share of cells that keep the photo; ``seed``: the
    masks' seed (same seed, same map); ``fill``: what covered areas show (gray/mean/black/white/blur or RGB,
    as for occlusion); ``score``: ``probability`` or ``log-odds``. ``target``, ``batch_size``, ``progress``,
    ``cancel``, ``fit`` and ``max_passes`` work as in :func:`sensmap.sensitivity_map`. The result has
    ``method == "rise"``, is marked approximate (a Monte Carlo estimate) and records these settings in
    :attr:`~SensitivityResult.method_parameters`.
    """
    started = time.perf_counter()
    network = _as_network(model)
    photo = _as_image(image)
    height, width = network.input_size
    count = rise_passes(masks)
    grid = whole_number(grid, "the mask grid", 1, min(height, width))
    p = check_p(p)
    seed = whole_number(seed, "the seed", 0)
    score_kind = validate_score_kind(score)
    fill_value = normalize_fill(fill)
    budget = max_passes_from_env() if max_passes is None else int(max_passes)
    if count > budget:
        raise BudgetError(
            f"RISE with {count:,} masks needs {count:,} forward passes, more than the budget of {budget:,}; "
            f"use at most {budget:,} masks"
        )
    batch_size = auto_batch_size(height, width) if batch_size is None else whole_number(batch_size, "the batch size", 1)

    prepared = prepare(network, photo, fit, target)
    canvas = fill_canvas(prepared.pixels, fill_value)
    ready = time.perf_counter()
    sums = MaskSums((height, width))

    def predict(batch: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        batch_masks, images = batch
        probabilities = network.compiled_predict(images)
        sums.add(class_scores(probabilities.numpy(), prepared.target, score_kind), batch_masks.numpy())
        return probabilities

    batches = mask_batches(prepared.pixels, canvas, count, batch_size, grid, p, seed)
    predict_batches(network, batches, count, progress=progress, cancel=cancel, predict=predict)
    finished = time.perf_counter()
    cell_y, cell_x = mask_cell((height, width), grid)
    return pixel_result(
        network,
        photo,
        prepared,
        method="rise",
        support=sums.support(),
        fit=fit,
        fill=fill_value,
        score_kind=score_kind,
        parameters={
            "masks": count,
            "grid": grid,
            "p": p,
            "seed": seed,
            "passes": count,
            "cell_px": [cell_y, cell_x],
            "detail_px": min(cell_y, cell_x),
        },
        metadata={
            "mode": "sampled",
            "approximate": True,
            "batch_size": batch_size,
            "timings_s": {"prepare": ready - started, "forward": finished - ready, "total": finished - started},
            "passes_per_s": count / max(finished - ready, 1e-9),
        },
    )
