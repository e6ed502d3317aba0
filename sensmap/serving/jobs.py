"""Model work as a picklable description: which network, which sensmap function, which arguments.

The dashboard runs every map, faithfulness check and randomisation check through :func:`run_work`: in its own
process, or in a Ray actor that keeps its networks loaded (:mod:`sensmap.serving.remote`). Both call the same
sensmap function with the same arguments, so a map computed on the cluster equals the local one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..models import Network

#: The functions model work may name, ``"module:function"``; each takes the network first and accepts
#: ``progress`` and ``cancel`` keywords.
MODEL_SUFFIXES = (".keras", ".onnx")  # network files (else a Keras Applications name)

WORK_FUNCTIONS = {
    "sensmap.engine:sensitivity_map",  # accepts on_partial (maps refine cover size by cover size)
    "sensmap.methods:explain",
    "sensmap.faithful:faithfulness",
    "sensmap.methods:randomisation_check",
}


@dataclass(frozen=True)
class NetworkSource:
    """How to load a network (picklable, no TensorFlow): the arguments of :func:`sensmap.load_model`.

    ``name``: a Keras Applications name or a ``.keras``/``.onnx`` path; ``options``: constructor options as sorted
    ``(name, value)`` pairs; ``weights``: ``"imagenet"``, a weights file or None; ``labels``: a labels file;
    ``preprocess``: a preprocessing name. Paths must be readable where the network is loaded (a Ray worker
    reads the same paths as the dashboard).
    """

    name: str
    options: tuple[tuple[str, Any], ...] = ()
    weights: str | None = "imagenet"
    labels: str | None = None
    preprocess: str | None = None

    @property
    def is_file(self) -> bool:
        return self.name.lower().endswith(MODEL_SUFFIXES)

    def load(self) -> Network:
        """The loaded :class:`sensmap.Network` (imports TensorFlow, or ONNX Runtime for ``.onnx``)."""
        from ..models import load_model

        if self.is_file:
            return load_model(self.name, labels=self.labels, preprocess=self.preprocess)
        return load_model(
            self.name, weights=self.weights, labels=self.labels, preprocess=self.preprocess, **dict(self.options)
        )


@dataclass(frozen=True)
class ModelWork:
    """One call of a sensmap function on a network: ``function(network, *args, progress=, cancel=, **kwargs)``.

    ``function`` is one of :data:`WORK_FUNCTIONS`; ``partials``: the function refines its result and takes
    ``on_partial`` (each partial map, marked partial). ``passes``: its forward passes (for progress and ETAs).
    """

    function: str
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    partials: bool = False
    passes: int = 0


def run_work(
    work: ModelWork,
    network: Network,
    *,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    on_partial: Callable[[Any], Any] | None = None,
) -> Any:
    """Run ``work`` on a loaded ``network``; what the function returns (a map, or the check's numbers).

    ``progress(done, total)`` counts forward passes; ``cancel()`` returning True stops the work with
    :class:`~sensmap.errors.CancelledError`; ``on_partial`` gets each partial map of work that refines.
    """
    if work.function not in WORK_FUNCTIONS:
        raise ValueError(f"not a sensmap work function: {work.function!r}")
    module, name = work.function.split(":")
    function = getattr(importlib.import_module(module), name)
    extra = {"on_partial": on_partial} if work.partials and on_partial is not None else {}
    return function(network, *work.args, progress=progress, cancel=cancel, **dict(work.kwargs), **extra)
