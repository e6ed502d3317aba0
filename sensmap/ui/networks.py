"""The network catalogue, the chosen networks A and B, and loading them (cached for all sessions)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from ..errors import SensmapError
from ..registry import (
    REGISTRY,
    NetworkSpec,
    find_spec,
    parameter_count,
    read_manifest,
    variant_label,
    weights_dir_from_env,
    weights_status,
)
from ..serving.jobs import MODEL_SUFFIXES, NetworkSource  # own models in SENSMAP_MODELS_DIR: these suffixes
from .map_settings import DASHBOARD_SIZES, SIZE_CHOICES
from .session import K_LOADED, K_NETWORK, state
from .text import plain, show_error

if TYPE_CHECKING:  # TensorFlow loads only when a network is needed
    from ..models import Network


@dataclass(frozen=True)
class NetworkChoice(NetworkSource):
    """A network the user chose: how to load it (:class:`~sensmap.serving.NetworkSource`'s fields), hashable (the
    :func:`load_network` cache key), with its display label, text key and weights state."""

    @property
    def label(self) -> str:
        """Display name, e.g. ``MobileNet α0.75 192px``, ``flowers (own model)`` or ``flowers (own model, ONNX)``."""
        if self.is_file:
            kind = ", ONNX" if self.name.lower().endswith(".onnx") else ""
            return f"{Path(self.name).stem} (own model{kind})"
        return variant_label(self.name, dict(self.options))

    @property
    def key(self) -> str:
        """A short stable text key (result cache, widget keys)."""
        text = repr((self.name, self.options, self.weights, self.labels, self.preprocess))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def source(self) -> NetworkSource:
        """How to load this network anywhere (a plain, picklable :class:`~sensmap.serving.NetworkSource`; a Ray
        actor loads it from this)."""
        return NetworkSource(self.name, self.options, self.weights, self.labels, self.preprocess)

    def weights_state(self) -> str:
        """``"local"``, ``"cached"``, ``"download"`` (ImageNet weights not on this machine), or ``"file"``."""
        spec = find_spec(self.name)
        if self.is_file or spec is None:
            return "file"
        if self.weights != "imagenet":
            return "local" if self.weights is None or Path(self.weights).is_file() else "file"
        return weights_status(spec, dict(self.options))


@dataclass(frozen=True)
class CatalogueEntry:
    choice: NetworkChoice
    group: str  # "Ready on this machine", a registry family, or "Own models"
    input_size: tuple[int, int]
    params: str
    status: str  # "ready", "cached", "needs download", "own model"


DEFAULT_NETWORK = "MobileNetV2"  # network A when no network is ready on this machine
STATUS_TEXT = {"local": "ready", "cached": "cached", "download": "needs download", "file": "own model"}
READY_GROUP = "Ready on this machine"
OWN_GROUP = "Own models"


def _options_tuple(options: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))


def models_dir_from_env() -> Path | None:
    """The operator's folder of own ``.keras`` and ``.onnx`` models, from ``SENSMAP_MODELS_DIR``, if set."""
    value = os.environ.get("SENSMAP_MODELS_DIR", "").strip()
    return Path(value).expanduser() if value else None


def _parameters_text(spec: NetworkSpec, options: dict[str, Any]) -> str:
    """The variant's parameter count in millions: exact for these options where the architecture's arithmetic is
    known (MobileNet, MobileNetV2), built without weights for other variants with options, else Keras' published
    count for the default variant."""
    count = parameter_count(spec.name, options)
    if count is None and {k: v for k, v in options.items() if k != "input_shape"}:
        from ..models import built_parameter_count  # TensorFlow: only for such variants

        count = built_parameter_count(spec.name, options)
    return f"{spec.params_millions:g} M" if count is None else f"{count / 1e6:.2f} M"


def catalogue() -> list[CatalogueEntry]:
    """Every network the dashboard offers: local weights first, then Keras Applications, then own models."""
    entries: list[CatalogueEntry] = []
    folder = weights_dir_from_env()
    try:
        local = read_manifest(folder) if folder is not None else []
    except SensmapError:
        local = []
    for item in local:
        spec = find_spec(item.application)
        if spec is None:
            continue
        choice = NetworkChoice(spec.name, _options_tuple(item.options), weights=str(item.path))
        size = spec.options_input_size(item.options)
        entries.append(CatalogueEntry(choice, READY_GROUP, size, _parameters_text(spec, item.options), "ready"))
    ready_labels = {e.choice.label for e in entries}
    for spec in REGISTRY.values():
        choice = NetworkChoice(spec.name)
        if choice.label in ready_labels:
            continue
        status = STATUS_TEXT[weights_status(spec)]
        size = (spec.input_size, spec.input_size)
        entries.append(CatalogueEntry(choice, spec.family, size, _parameters_text(spec, {}), status))
    models = models_dir_from_env()
    if models is not None and models.is_dir():
        for path in sorted(p for p in models.iterdir() if p.suffix.lower() in MODEL_SUFFIXES and p.is_file()):
            labels = path.with_suffix(".txt")
            choice = NetworkChoice(str(path), weights=None, labels=str(labels) if labels.is_file() else None)
            entries.append(CatalogueEntry(choice, OWN_GROUP, (0, 0), "see after loading", "own model"))
    return entries


def choice_labels() -> dict[str, CatalogueEntry]:
    """``{display label: entry}`` of the catalogue, in catalogue order (labels are unique)."""
    out: dict[str, CatalogueEntry] = {}
    for entry in catalogue():
        out.setdefault(entry.choice.label, entry)
    return out


def network_choice(role: str) -> NetworkChoice | None:
    """The chosen network A (primary; default: the first ready one, else MobileNetV2, whose weights download only
    when the user loads it) or B (comparison; default none)."""
    key = K_NETWORK[role]
    if key not in st.session_state:
        ready = [e for e in catalogue() if e.group == READY_GROUP]
        default = ready[0].choice if ready else NetworkChoice(DEFAULT_NETWORK)
        st.session_state[key] = default if role == "A" else None
    return st.session_state[key]


def load_on_open(choice: NetworkChoice, changed: bool) -> bool:
    """Whether the Networks page loads ``choice`` by itself: when it is already loaded, or was just picked and
    needs no download. Weights to download wait for the user's explicit Load button (nothing downloads unasked)."""
    return is_loaded(choice) or (changed and choice.weights_state() != "download")


def set_network_choice(role: str, choice: NetworkChoice | None) -> None:
    st.session_state[K_NETWORK[role]] = choice


#: The cover sizes the incremental engine is prepared for: the dashboard's defaults first (coarsest first, as a
#: map runs them), then the other sizes offered.
WARM_UP_SIZES: tuple[float, ...] = tuple(
    dict.fromkeys([*DASHBOARD_SIZES, *sorted(SIZE_CHOICES.values(), reverse=True)])
)


@st.cache_resource(show_spinner=False, max_entries=4)
def cached_network(choice: NetworkChoice) -> Network:
    """The loaded network, one for all sessions (read-only after loading); pages use :func:`load_network`.

    Loading starts the network's incremental-engine warm-up for every cover size offered
    (:func:`sensmap.prepare_incremental`: a background thread, once per loaded network, shared by all sessions);
    until it is ready, ``engine="auto"`` maps run the covers not traced yet densely."""
    from ..engine import prepare_incremental

    network = choice.load()
    prepare_incremental(network, WARM_UP_SIZES)
    return network


def load_network(choice: NetworkChoice) -> Network | None:
    """The loaded network (cached for all sessions), or None after showing why it failed.

    While ImageNet weights download, an ``st.status`` says so; errors appear with :func:`show_error`. A loaded
    network's incremental engine starts preparing in the background (:func:`cached_network`).
    """
    loaded = state(K_LOADED, set)
    try:
        if choice.key not in loaded and choice.weights_state() == "download":
            with st.status(f"Downloading ImageNet weights for {plain(choice.label)}…", expanded=True) as status:
                st.write("The first use of this network downloads its weights into Keras' cache.")
                try:
                    network = cached_network(choice)
                except Exception:
                    status.update(label=f"{plain(choice.label)}: weights not available", state="error")
                    raise
                status.update(label=f"{plain(choice.label)} is ready", state="complete", expanded=False)
        elif choice.key in loaded:  # already loaded by this session: the cache answers at once
            network = cached_network(choice)
        else:
            with st.spinner(f"Loading {plain(choice.label)}…"):
                network = cached_network(choice)
    except SensmapError as exc:
        show_error(exc)
        return None
    loaded.add(choice.key)
    return network


def is_loaded(choice: NetworkChoice) -> bool:
    """Whether this session already loaded ``choice`` successfully."""
    return choice.key in st.session_state.get(K_LOADED, set())
