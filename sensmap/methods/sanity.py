"""Model-parameter randomisation check (Adebayo et al. 2018, "Sanity checks for saliency maps"), cascading.

A map that explains the network must change when the network's learnt weights are destroyed. On a *copy*
of the network (the original is never touched), the weighted layers are re-initialised from the top down
in ``steps`` cumulative groups: first the output layer alone, then ever more of the layers below it, until
every weighted layer is random. After each step the same method's map is computed again for the same class
and compared with the original map by Spearman rank correlation (:func:`sensmap.metrics.agreement`).

Re-initialisation uses each layer's own initializers (kernels, biases, batch-norm statistics…) with seeds
derived from ``seed``; a weight without an initializer is shuffled instead (its values, randomly placed).
Verdict: the map is **not trustworthy** when the absolute Spearman correlation with the original is still at
least ``threshold`` (default 0.5) with every layer randomised — it then shows the photo's structure (edges,
contrast, a salient patch) rather than what the network learnt. The absolute value counts because a random
output layer can flip the sign of every score change: a mirrored map still has the photo's structure.
A randomised network whose output no longer depends on the photo (saturated) gives a constant map: its
correlation is 0 and the step is marked ``flat``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from ..engine import CancelToken, ProgressCallback, _as_image, _as_network, _cancelled, _offset_progress
from ..errors import CancelledError, ModelError, ParameterError
from ..images import LoadedImage
from ..metrics import agreement
from ..models import Network
from ..result import METHOD_LABELS, SensitivityResult, validate_method
from .explain import explain, map_passes, method_options
from .graph import weighted_layers

DEFAULT_STEPS = 4
"""Cumulative randomisation steps by default (output layer; a third; two thirds; every weighted layer)."""
DEFAULT_THRESHOLD = 0.5
"""Absolute Spearman correlation at full randomisation from which a map is flagged as not trustworthy."""


@dataclass(frozen=True)
class SanityCheck:
    """Outcome of :func:`randomisation_check`. Step ``k`` (1-based) has the ``randomised[k-1]`` top weighted
    layers random (``layers[k-1]`` names those newly randomised at that step, top first); ``spearman`` and
    ``top_iou`` compare its map with the original (−1..1 and 0..1; :func:`sensmap.metrics.agreement`)."""

    method: str
    model_name: str
    target: int
    target_name: str
    seed: int
    threshold: float
    total_layers: int  # weighted layers of the network
    randomised: tuple[int, ...]  # cumulative count of randomised layers per step
    layers: tuple[tuple[str, ...], ...]  # layer names newly randomised per step
    spearman: tuple[float, ...]
    top_iou: tuple[float, ...]
    flat: tuple[bool, ...]  # per step: the map is constant (e.g. the random network's output saturates); Spearman 0
    passes: int  # forward passes of the whole check (original map included when it was computed here)
    original: SensitivityResult = dataclasses.field(repr=False)
    maps: tuple[np.ndarray, ...] = dataclasses.field(repr=False)  # (H, W) map per step, the original's unit

    @property
    def steps(self) -> int:
        return len(self.randomised)

    @property
    def final_spearman(self) -> float:
        """Spearman correlation with the original map once every weighted layer is random."""
        return self.spearman[-1]

    @property
    def trustworthy(self) -> bool:
        """False when the map stays correlated (``|Spearman| ≥ threshold``) with the original at full randomisation."""
        return abs(self.final_spearman) < self.threshold

    @property
    def verdict(self) -> str:
        """One sentence for users."""
        label, rho = METHOD_LABELS[self.method], self.final_spearman
        if self.trustworthy:
            return (
                f"Passes: the {label} map changes when the network's weights are randomised (Spearman {rho:.2f} "
                f"with the original at full randomisation, |ρ| below {self.threshold:g}), so it depends on what the "
                "network learnt."
            )
        return (
            f"Fails: the {label} map stays similar with random weights (Spearman {rho:.2f}, |ρ| ≥ {self.threshold:g} "
            "at full randomisation); it shows the photo's structure more than what the network learnt. "
            "Do not trust it."
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (no maps), e.g. for ``result.metadata["sanity"]`` and reports."""
        return {
            "method": self.method,
            "seed": self.seed,
            "threshold": self.threshold,
            "total_layers": self.total_layers,
            "randomised": list(self.randomised),
            "layers": [list(group) for group in self.layers],
            "spearman": list(self.spearman),
            "top_iou": list(self.top_iou),
            "flat": list(self.flat),
            "passes": self.passes,
            "trustworthy": self.trustworthy,
            "verdict": self.verdict,
        }


def cascade_counts(layer_count: int, steps: int) -> list[int]:
    """Cumulative randomised layers per step: the top layer alone, then evenly more, the last step all of them.

    ``steps`` is capped at ``layer_count``; e.g. 10 layers in 4 steps: ``[1, 3, 7, 10]``.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ParameterError(f"steps must be a whole number ≥ 1, got {steps!r}")
    if layer_count < 1:
        raise ParameterError("the network has no weighted layer to randomise")
    steps = min(int(steps), layer_count)
    if steps == 1:
        return [layer_count]
    counts = [1] + [int(np.floor(layer_count * k / (steps - 1) + 0.5)) for k in range(1, steps)]
    return sorted(set(counts))


def network_copy(network: Network) -> Network:
    """A copy of the network with its own Keras model (same weights): randomising it leaves the original as it is."""
    try:
        clone = keras.models.clone_model(network.model)
        clone.set_weights(network.model.get_weights())
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for models it cannot rebuild
        raise ModelError(
            f"{network.name} cannot be copied for the randomisation check ({type(exc).__name__}: {exc}); "
            "custom layers need a get_config() that rebuilds them"
        ) from None
    return dataclasses.replace(network, model=clone, _compiled=None, _incremental=None, _lock=threading.Lock())


def _reinitialise(layer: Any, rng: np.random.Generator) -> None:
    """Draw the layer's weights afresh from its own initializers (seeded), shuffling weights that have none."""
    for variable in layer.weights:
        name = variable.name.split("/")[-1]
        candidates = [f"{name}_initializer"] + (["depthwise_initializer"] if name == "kernel" else [])
        initializer = next((getattr(layer, c) for c in candidates if getattr(layer, c, None) is not None), None)
        seed = int(rng.integers(2**31 - 1))
        if initializer is not None:
            config = initializer.get_config()
            if "seed" in config:
                initializer = type(initializer).from_config({**config, "seed": seed})
            variable.assign(initializer(tuple(variable.shape), dtype=variable.dtype))
        else:
            values = np.asarray(variable.numpy())
            variable.assign(np.random.default_rng(seed).permutation(values.ravel()).reshape(values.shape))


def randomisation_passes(
    model: Network | Any, method: str = "occlusion", steps: int = DEFAULT_STEPS, *, original: bool = False, **options
) -> int:
    """Forward passes of :func:`randomisation_check` with these settings: one map per step, plus the original
    map unless it is given (``original=True``)."""
    network = _as_network(model)
    maps = len(cascade_counts(len(weighted_layers(network.model)), steps)) + (0 if original else 1)
    return maps * map_passes(network, method, **options)


def randomisation_check(
    model: Network | Any,
    image: LoadedImage | Any,
    *,
    method: str = "occlusion",
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    target: int | str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    original: SensitivityResult | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | Callable[[], bool] | None = None,
    **options: Any,
) -> SanityCheck:
    """Cascading randomisation check of ``method``'s maps (see the module docstring).

    ``options`` are the method's settings (as for :func:`sensmap.methods.explain`; keep them cheap: every step
    computes a whole map — :func:`randomisation_passes` previews the cost). ``original``: the map already made
    with these settings (not recomputed; its target is used). ``progress(done, total)`` counts forward passes
    over the whole check; ``cancel`` stops it with :class:`CancelledError`. The network passed in is not
    modified: the check works on a copy.
    """
    method = validate_method(method)
    options = method_options(method, options)
    threshold = float(threshold)
    if not 0.0 < threshold <= 1.0:
        raise ParameterError(f"the threshold is an absolute Spearman correlation in (0, 1], got {threshold!r}")
    network = _as_network(model)
    photo = _as_image(image)
    if original is not None and (original.method != method or original.model_name != network.name):
        raise ParameterError(
            f"the original map is a {original.method_label} map of {original.model_name}; "
            f"the check was asked for {METHOD_LABELS[method]} on {network.name}"
        )
    layers = weighted_layers(network.model)[::-1]  # top first
    counts = cascade_counts(len(layers), steps)
    per_map = map_passes(network, method, **options)
    total = per_map * (len(counts) + (original is None))
    done = 0

    def run(net: Network, target_class: int | str | None) -> SensitivityResult:
        nonlocal done
        result = explain(net, photo, method=method, target=target_class, cancel=cancel,
                         progress=_offset_progress(progress, done, total), **options)  # fmt: skip
        done += per_map
        return result

    if original is None:
        original = run(network, target)
    copy = network_copy(network)
    copied_layers = weighted_layers(copy.model)[::-1]
    rng = np.random.default_rng(seed)
    maps, rhos, ious, flat, groups, previous = [], [], [], [], [], 0
    for count in counts:
        if _cancelled(cancel):
            raise CancelledError(f"randomisation check cancelled after {len(maps)} of {len(counts)} steps")
        for layer in copied_layers[previous:count]:
            _reinitialise(layer, rng)
        groups.append(tuple(layer.name for layer in layers[previous:count]))
        previous = count
        randomised = run(copy, original.target).support
        numbers = agreement(original.support, randomised)
        maps.append(randomised)
        rhos.append(numbers["spearman"])
        ious.append(numbers["top_iou"])
        flat.append(bool(np.ptp(randomised) == 0))
    return SanityCheck(
        method=method,
        model_name=network.name,
        target=original.target,
        target_name=original.target_name,
        seed=int(seed),
        threshold=threshold,
        total_layers=len(layers),
        randomised=tuple(counts),
        layers=tuple(groups),
        spearman=tuple(rhos),
        top_iou=tuple(ious),
        flat=tuple(flat),
        passes=done,
        original=original,
        maps=tuple(maps),
    )


__all__: Sequence[str] = ("SanityCheck", "randomisation_check", "randomisation_passes", "cascade_counts")
