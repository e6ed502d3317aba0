"""What the per-pixel methods share: the photo on the network grid with its reference prediction, and a result
built the same way from a map on the network grid (Captum's ``attr/_utils`` in spirit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine import provenance
from ..fills import fill_label
from ..images import LoadedImage, fit_image
from ..models import Network
from ..result import SensitivityResult


@dataclass(frozen=True)
class Prepared:
    """The photo on the network grid (raw 0..255, ``(H, W, 3)``), its class probabilities and the target index."""

    pixels: np.ndarray
    reference: np.ndarray
    target: int


def prepare(network: Network, photo: LoadedImage, fit: str, target: int | str | None) -> Prepared:
    """Fit the photo to the network, predict it once and resolve ``target`` (default: the top-1 class)."""
    pixels = fit_image(photo, network.input_size, fit)
    reference = network.predict(pixels)[0]
    index = int(np.argmax(reference)) if target is None else network.class_index(target)
    return Prepared(pixels, reference, index)


def pixel_result(
    network: Network,
    photo: LoadedImage,
    prepared: Prepared,
    *,
    method: str,
    support: np.ndarray,
    fit: str,
    fill: Any,
    score_kind: str,
    parameters: dict[str, Any],
    metadata: dict[str, Any],
) -> SensitivityResult:
    """A :class:`SensitivityResult` of a per-pixel method: ``support`` ``(H, W)`` on the network grid, no windows."""
    return SensitivityResult(
        model_name=network.name,
        labels=network.labels,
        input_size=network.input_size,
        photo_size=(photo.height, photo.width),
        fit=fit,
        sizes=(),
        stride=0.0,
        fill=fill_label(fill),
        score_kind=score_kind,
        target=prepared.target,
        reference_probabilities=prepared.reference,
        outputs=np.empty((0, network.num_classes), np.float32),
        method=method,
        pixel_map=np.asarray(support, dtype=np.float32),
        method_parameters=parameters,
        metadata={**metadata, **provenance(network, photo)},
    )
