"""Streamlit glue shared by the dashboard pages (``app.py`` and ``pages/``).

Only this module, ``app.py`` and ``pages/`` import Streamlit. Pages hold widgets and layout;
everything they share lives here: the session-state model, the photo inbox, the network
catalogue and cached loader, map settings, the result cache, running maps with a progress bar
and a Stop button, and showing errors.

Session-state model (per browser session; nothing is shared between sessions except the
cached, read-only networks of :func:`load_network`):

* ``sensmap.photos``: ``{sha256: PhotoEntry}`` in the order added; ``sensmap.active_photo``:
  the sha256 of the photo being explained.
* ``sensmap.network.A`` / ``sensmap.network.B``: the chosen :class:`NetworkChoice` (or None).
* ``sensmap.settings``: the :class:`MapSettings` of the Map page (shared with Compare and Report);
  ``sensmap.targets``: ``{(sha256, network key): class index}`` chosen on the Map page.
* ``sensmap.results``: ``{ResultKey: SensitivityResult}`` (most recent :data:`MAX_RESULTS`);
  ``sensmap.last``: ``{(sha256, network key): ResultKey}`` of the last finished map.
* ``sensmap.running``: set while a map runs, removed when it ends; still set on the next run
  means the run was interrupted (Stop, or any other click) — see :func:`show_stopped_run`.
* ``sensmap.boxes``: ``{sha256: (y0, x0, y1, x1)}`` the pointing-check box of each photo, in
  fractions of the photo; ``sensmap.box_inputs``: ``{sha256: n}`` the generation of its number inputs.

Stopping: any click (Stop, a changed setting, another page) makes Streamlit (``runner.fastReruns``,
the default) ask the running script to stop and start the next run at once in a new thread. The old
run stops at its next Streamlit call — the progress update after the batch being computed, or any
``st.session_state`` access, so a stopped run never writes into the session (not even a map whose
last batch was running) — and its batch, ``tf.data`` iterator and partial outputs are dropped
(:func:`sensmap.engine.predict_batches`).

Every finished map also gets, in its ``metadata`` (so the ``.npz`` and the reports carry them):
``faithfulness`` (:func:`sensmap.faithfulness`, run through the same progress bar), ``story``
(:func:`sensmap.tell_story`), ``stability`` (:func:`sensmap.metrics.stability` across cover sizes,
and fills when maps with other fills are cached) and, when the photo has a box, ``pointing``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from . import metrics
from .errors import CancelledError, SensmapError
from .images import LoadedImage, load_image
from .registry import REGISTRY, find_spec, read_manifest, variant_label, weights_dir_from_env, weights_status
from .render import COLOUR_CAPTION
from .windows import DEFAULT_SIZES, DEFAULT_STRIDE

if TYPE_CHECKING:  # TensorFlow loads only when a network is needed
    from .models import Network
    from .result import SensitivityResult

PHOTO_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"]
THUMBNAIL_SIDE = 320
MAX_RESULTS = 24
MAX_REPORTS = 4

K_PHOTOS = "sensmap.photos"
K_ACTIVE = "sensmap.active_photo"
K_UPLOADER = "sensmap.uploader_generation"
K_UPLOAD_MESSAGES = "sensmap.upload_messages"
K_NETWORK = {"A": "sensmap.network.A", "B": "sensmap.network.B"}
K_LOADED = "sensmap.loaded_networks"
K_SETTINGS = "sensmap.settings"
K_TARGETS = "sensmap.targets"
K_TOP = "sensmap.top_classes"
K_RESULTS = "sensmap.results"
K_LAST = "sensmap.last"
K_RUNNING = "sensmap.running"
K_REPORTS = "sensmap.reports"
K_BOXES = "sensmap.boxes"
K_BOX_INPUTS = "sensmap.box_inputs"

FAITHFULNESS_STEPS = 20
FAITHFULNESS_RANDOM_ORDERS = 3

SIZE_CHOICES: dict[str, float] = {f"1/{n}": 1 / n for n in (2, 3, 4, 6, 8, 12, 16)}
STRIDE_CHOICES: dict[str, float] = {"1 (side by side)": 1.0, "3/4": 0.75, "1/2": 0.5, "1/3": 1 / 3, "1/4": 0.25}
FILL_CHOICES: dict[str, str] = {
    "gray": "gray (middle grey)",
    "mean": "mean colour of the photo",
    "black": "black",
    "white": "white",
    "blur": "blurred photo",
    "custom": "custom colour",
}
SCORE_CHOICES: dict[str, str] = {"probability": "probability (pp)", "log-odds": "log-odds (saturated networks)"}
MODE_CHOICES: dict[str, str] = {
    "exact": "exact",
    "incremental": "incremental (same map, faster after the first)",
    "fast": "fast (approximate, 2–3× fewer passes)",
}

SAMPLE_PHOTOS: dict[str, tuple[str, str]] = {
    "chelsea.jpg": ("Chelsea the cat", "Chelsea the cat, scikit-image (Stéfan van der Walt), CC0 1.0"),
    "coffee.jpg": ("a cup of espresso", "Coffee, scikit-image (Rachel Michetti), CC0 1.0"),
}

COLOUR_KEY = f"Colours: {COLOUR_CAPTION}. Values in percentage points (pp) of class probability."


def colour_key(score_kind: str = "probability") -> str:
    """The legend under a map: which colour supports, which inhibits, and the unit."""
    if score_kind == "probability":
        return COLOUR_KEY + " +10 pp: covering the area lowers the probability by 10 points."
    return f"Colours: {COLOUR_CAPTION}. Values in log-odds of the class (log p/(1−p))."


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~$:])")


def plain(text: object) -> str:
    """``text`` escaped so Streamlit's Markdown shows it literally (file names, error messages)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def show_error(exc: BaseException) -> None:
    """Show a sensmap error as its message only (never a traceback)."""
    st.error(plain(str(exc)), icon=":material/error:")


def _state(key: str, default: Callable[[], Any]) -> Any:
    if key not in st.session_state:
        st.session_state[key] = default()
    return st.session_state[key]


# --------------------------------------------------------------------------- photos


@dataclass(frozen=True, eq=False)
class PhotoEntry:
    """A photo of this session: its name, pixels, credit line and a small thumbnail."""

    name: str
    image: LoadedImage
    credit: str | None = None
    thumbnail: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    @property
    def sha256(self) -> str:
        return self.image.sha256

    @property
    def description(self) -> str:
        h, w = self.image.original_size
        text = f"{w}×{h} px" + (f", {self.image.format}" if self.image.format else "")
        return text + ("; " + "; ".join(self.image.notes) if self.image.notes else "")


def photos() -> dict[str, PhotoEntry]:
    """This session's photos, ``{sha256: PhotoEntry}`` in the order added."""
    return _state(K_PHOTOS, dict)


def add_photo_bytes(name: str, data: bytes, credit: str | None = None) -> LoadedImage:
    """Read ``data`` with :func:`sensmap.load_image` and add it to the session's photos.

    The upload widget and the sample buttons (and tests) all come through here. The first photo
    becomes the active one. Raises :class:`~sensmap.errors.ImageError` for a file that is not a
    usable photo; the photos already added stay.
    """
    from .render import display_pixels

    name = os.path.basename(str(name).replace("\\", "/")) or "photo"
    image = load_image(bytes(data), name=name)
    store = photos()
    if image.sha256 not in store:
        thumb = display_pixels(image.pixels, THUMBNAIL_SIDE)
        store[image.sha256] = PhotoEntry(name=name, image=image, credit=credit, thumbnail=thumb)
    if st.session_state.get(K_ACTIVE) not in store:
        st.session_state[K_ACTIVE] = image.sha256
    return image


def add_uploaded_files(files: Sequence[Any]) -> None:
    """Add uploaded files (each through :func:`add_photo_bytes`), note the outcome, empty the uploader.

    A bad file gets an error line of its own; the good ones are kept.
    """
    messages: list[tuple[str, str]] = []
    for upload in files:
        try:
            image = add_photo_bytes(upload.name, upload.getvalue())
        except SensmapError as exc:
            messages.append(("error", str(exc)))
            continue
        notes = f" ({'; '.join(image.notes)})" if image.notes else ""
        messages.append(("success", f"added {image.source}{notes}"))
    st.session_state[K_UPLOAD_MESSAGES] = messages
    st.session_state[K_UPLOADER] = st.session_state.get(K_UPLOADER, 0) + 1
    st.rerun()


def uploader_key() -> str:
    """Key of the upload widget; it changes after each upload so the widget empties."""
    return f"w.upload.{st.session_state.get(K_UPLOADER, 0)}"


def show_upload_messages() -> None:
    """The outcome of the last upload: one error per refused file, one line per added photo."""
    for kind, text in st.session_state.get(K_UPLOAD_MESSAGES, []):
        if kind == "error":
            st.error(plain(text), icon=":material/error:")
        else:
            st.success(plain(text), icon=":material/check:")


def sample_names() -> list[str]:
    return list(SAMPLE_PHOTOS)


def add_sample_photo(file_name: str) -> LoadedImage:
    """Add one of the sample photos shipped with sensmap (CC0, see :func:`sample_licence`)."""
    data = importlib.resources.files("sensmap").joinpath(f"data/samples/{file_name}").read_bytes()
    return add_photo_bytes(file_name, data, credit=SAMPLE_PHOTOS[file_name][1])


def sample_licence() -> str:
    return importlib.resources.files("sensmap").joinpath("data/samples/LICENSE.md").read_text("utf-8")


def active_photo() -> PhotoEntry | None:
    """The photo being explained (None before any is added)."""
    return photos().get(st.session_state.get(K_ACTIVE))


def set_active_photo(sha256: str) -> None:
    if sha256 in photos():
        st.session_state[K_ACTIVE] = sha256


def remove_photo(sha256: str) -> None:
    """Forget a photo and its maps; another photo becomes active if it was."""
    store = photos()
    store.pop(sha256, None)
    results = _state(K_RESULTS, dict)
    for key in [k for k in results if k.photo == sha256]:
        del results[key]
    if st.session_state.get(K_ACTIVE) == sha256:
        st.session_state[K_ACTIVE] = next(iter(store), None)


# --------------------------------------------------------------------------- networks


@dataclass(frozen=True)
class NetworkChoice:
    """A network to load, hashable (the :func:`load_network` cache key).

    ``name`` is a Keras Applications name or a ``.keras`` path; ``options`` the constructor
    options as sorted ``(name, value)`` pairs; ``weights`` ``"imagenet"``, a weights file or
    None; ``labels`` a labels file; ``preprocess`` a preprocessing name.
    """

    name: str
    options: tuple[tuple[str, Any], ...] = ()
    weights: str | None = "imagenet"
    labels: str | None = None
    preprocess: str | None = None

    @property
    def is_file(self) -> bool:
        return self.name.lower().endswith(".keras")

    @property
    def label(self) -> str:
        """Display name, e.g. ``MobileNet α0.75 192px`` or ``flowers (own model)``."""
        if self.is_file:
            return f"{Path(self.name).stem} (own model)"
        return variant_label(self.name, dict(self.options))

    @property
    def key(self) -> str:
        """A short stable text key (result cache, widget keys)."""
        text = repr((self.name, self.options, self.weights, self.labels, self.preprocess))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def load(self) -> Network:
        from .models import load_model

        if self.is_file:
            return load_model(self.name, labels=self.labels, preprocess=self.preprocess)
        return load_model(
            self.name, weights=self.weights, labels=self.labels, preprocess=self.preprocess, **dict(self.options)
        )

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


STATUS_TEXT = {"local": "ready", "cached": "cached", "download": "needs download", "file": "own model"}
READY_GROUP = "Ready on this machine"
OWN_GROUP = "Own models"


def _options_tuple(options: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))


def models_dir_from_env() -> Path | None:
    """The operator's folder of own ``.keras`` models, from ``SENSMAP_MODELS_DIR``, if set."""
    value = os.environ.get("SENSMAP_MODELS_DIR", "").strip()
    return Path(value).expanduser() if value else None


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
        alpha = item.options.get("alpha", 1.0)
        params = f"{spec.params_millions:g} M" + (f" at α1; fewer at α{alpha:g}" if alpha != 1.0 else "")
        entries.append(CatalogueEntry(choice, READY_GROUP, size, params, "ready"))
    ready_labels = {e.choice.label for e in entries}
    for spec in REGISTRY.values():
        choice = NetworkChoice(spec.name)
        if choice.label in ready_labels:
            continue
        status = STATUS_TEXT[weights_status(spec)]
        size = (spec.input_size, spec.input_size)
        entries.append(CatalogueEntry(choice, spec.family, size, f"{spec.params_millions:g} M", status))
    models = models_dir_from_env()
    if models is not None and models.is_dir():
        for path in sorted(models.glob("*.keras")):
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
    """The chosen network A (primary; default: the first ready one) or B (comparison; default none)."""
    key = K_NETWORK[role]
    if key not in st.session_state:
        ready = [e for e in catalogue() if e.group == READY_GROUP]
        st.session_state[key] = ready[0].choice if role == "A" and ready else None
    return st.session_state[key]


def set_network_choice(role: str, choice: NetworkChoice | None) -> None:
    st.session_state[K_NETWORK[role]] = choice


@st.cache_resource(show_spinner=False, max_entries=4)
def _cached_network(choice: NetworkChoice) -> Network:
    return choice.load()


def load_network(choice: NetworkChoice) -> Network | None:
    """The loaded network (cached for all sessions), or None after showing why it failed.

    While ImageNet weights download, an ``st.status`` says so; errors appear with :func:`show_error`.
    """
    loaded = _state(K_LOADED, set)
    try:
        if choice.key not in loaded and choice.weights_state() == "download":
            with st.status(f"Downloading ImageNet weights for {plain(choice.label)}…", expanded=True) as status:
                st.write("The first use of this network downloads its weights into Keras' cache.")
                try:
                    network = _cached_network(choice)
                except Exception:
                    status.update(label=f"{plain(choice.label)}: weights not available", state="error")
                    raise
                status.update(label=f"{plain(choice.label)} is ready", state="complete", expanded=False)
        elif choice.key in loaded:  # already loaded by this session: the cache answers at once
            network = _cached_network(choice)
        else:
            with st.spinner(f"Loading {plain(choice.label)}…"):
                network = _cached_network(choice)
    except SensmapError as exc:
        show_error(exc)
        return None
    loaded.add(choice.key)
    return network


def is_loaded(choice: NetworkChoice) -> bool:
    """Whether this session already loaded ``choice`` successfully."""
    return choice.key in st.session_state.get(K_LOADED, set())


@st.cache_resource(show_spinner="Timing one batch of the network for the cost estimate…", max_entries=16)
def _seconds_per_pass(choice: NetworkChoice) -> float:
    """Seconds per forward pass: one compiled batch of the network timed after a warm-up batch."""
    from .engine import auto_batch_size

    network = _cached_network(choice)
    height, width = network.input_size
    batch = np.full((auto_batch_size(height, width), height, width, 3), 127.5, dtype=np.float32)
    network.predict(batch)  # traces the compiled function and warms it up
    started = time.perf_counter()
    network.predict(batch)
    return (time.perf_counter() - started) / len(batch)


def faithfulness_passes(steps: int = FAITHFULNESS_STEPS, random_orders: int = FAITHFULNESS_RANDOM_ORDERS) -> int:
    """Forward passes of the faithfulness check run after each map (see :func:`sensmap.metrics.faithfulness_passes`)."""
    return metrics.faithfulness_passes(steps, random_orders)


@dataclass(frozen=True)
class Cost:
    """What pressing Run map costs: the map's passes, the faithfulness check's, and the time."""

    map_passes: int
    check_passes: int
    seconds: float

    @property
    def passes(self) -> int:
        return self.map_passes + self.check_passes


def cost_preview(choice: NetworkChoice, network: Network, settings: MapSettings) -> Cost:
    """Forward passes and estimated seconds of a map plus its faithfulness check (probe timed once per network)."""
    from .engine import plan_passes

    passes = plan_passes(network, settings.sizes, settings.stride, settings.mode)
    check = faithfulness_passes()
    return Cost(passes, check, (passes + check) * _seconds_per_pass(choice))


# --------------------------------------------------------------------------- settings and results


@dataclass(frozen=True)
class MapSettings:
    """The Map page's settings; :meth:`kwargs` feeds :func:`sensmap.sensitivity_map`."""

    sizes: tuple[float, ...] = DEFAULT_SIZES
    stride: float = DEFAULT_STRIDE
    fill: str = "gray"  # a name of FILL_CHOICES; "custom" uses colour
    colour: str = "#808080"
    score: str = "probability"
    mode: str = "exact"  # a key of MODE_CHOICES (sensmap.result.MODES)

    def fill_value(self) -> str | tuple[float, float, float]:
        if self.fill != "custom":
            return self.fill
        text = self.colour.lstrip("#")
        return tuple(float(int(text[i : i + 2], 16)) for i in (0, 2, 4))  # type: ignore[return-value]

    def kwargs(self, target: int | None = None) -> dict[str, Any]:
        return dict(
            sizes=self.sizes, stride=self.stride, fill=self.fill_value(), score=self.score, target=target,
            mode=self.mode,
        )  # fmt: skip

    @property
    def key(self) -> tuple:
        return (tuple(round(s, 6) for s in self.sizes), round(self.stride, 6), self.fill_value(), self.score, self.mode)


def label_for(choices: dict[str, Any], value: Any) -> str:
    """The label of ``value`` in a ``{label: value}`` mapping (closest value for floats)."""
    if isinstance(value, float):
        return min(choices, key=lambda label: abs(choices[label] - value))
    return next((label for label, v in choices.items() if v == value), next(iter(choices)))


def settings() -> MapSettings:
    return _state(K_SETTINGS, MapSettings)


def set_settings(value: MapSettings) -> None:
    st.session_state[K_SETTINGS] = value


@dataclass(frozen=True)
class ResultKey:
    """What a map depends on: photo, network, settings and target class."""

    photo: str
    network: str
    settings: tuple
    target: int


def top_classes(choice: NetworkChoice, network: Network, photo: PhotoEntry) -> list[tuple[int, str, float]]:
    """Top-5 ``(index, name, probability)`` of the whole photo (kept per photo and network)."""
    from .engine import classify

    store = _state(K_TOP, dict)
    key = (photo.sha256, choice.key)
    if key not in store:
        store[key] = [(p.index, p.name, p.probability) for p in classify(network, photo.image, top=5)]
    return store[key]


def target_for(choice: NetworkChoice, network: Network, photo: PhotoEntry) -> int:
    """The class the map explains: the one picked on the Map page, else the top-1 class."""
    chosen = _state(K_TARGETS, dict).get((photo.sha256, choice.key))
    return chosen if chosen is not None else top_classes(choice, network, photo)[0][0]


def set_target(choice: NetworkChoice, photo: PhotoEntry, index: int) -> None:
    _state(K_TARGETS, dict)[(photo.sha256, choice.key)] = int(index)


def target_widget_key(choice: NetworkChoice, photo: PhotoEntry) -> str:
    return f"w.target.{photo.sha256[:16]}.{choice.key}"


def same_class(network: Network, name: str, fallback: int) -> int:
    """Index of class ``name`` in ``network`` (for comparing two networks on one class), else ``fallback``."""
    try:
        return network.class_index(name)
    except SensmapError:
        return fallback


def result_key(choice: NetworkChoice, photo: PhotoEntry, value: MapSettings, target: int) -> ResultKey:
    return ResultKey(photo.sha256, choice.key, value.key, int(target))


def results() -> dict[ResultKey, SensitivityResult]:
    return _state(K_RESULTS, dict)


def store_result(key: ResultKey, result: SensitivityResult) -> None:
    store = results()
    store.pop(key, None)
    store[key] = result
    while len(store) > MAX_RESULTS:
        del store[next(iter(store))]
    _state(K_LAST, dict)[(key.photo, key.network)] = key


def result_to_show(key: ResultKey) -> tuple[SensitivityResult | None, bool]:
    """``(result, exact)``: the map for ``key``, else the last finished one of this photo and network."""
    store = results()
    if key in store:
        return store[key], True
    last = st.session_state.get(K_LAST, {}).get((key.photo, key.network))
    return (store[last], False) if last in store else (None, False)


def last_key(photo: PhotoEntry, choice: NetworkChoice) -> ResultKey | None:
    """The key of the last finished map of this photo and network (None before any)."""
    return st.session_state.get(K_LAST, {}).get((photo.sha256, choice.key))


def stop_button() -> Any:
    """A Stop button shown while maps run (any click reruns the page, which interrupts the run).

    Returns its placeholder: call ``.empty()`` on it when the run is over.
    """
    slot = st.empty()
    slot.button("Stop", icon=":material/stop_circle:", key="w.stop", help="Stop the running map")
    return slot


class _RunProgress:
    """One progress bar over several phases (the map, then its faithfulness check) and the run marker."""

    def __init__(self, label: str, total: int, phase: str) -> None:
        self.label, self.total = label, total
        self.running = {"label": label, "done": 0, "total": total, "phase": phase}
        st.session_state[K_RUNNING] = self.running
        self.bar = st.progress(0.0, text=plain(f"{label}: starting…"))

    def phase(self, name: str, offset: int) -> Callable[[int, int], None]:
        """A ``progress(done, total)`` callback for one phase whose passes start at ``offset``."""
        self.running["phase"] = name

        def progress(done: int, _total: int) -> None:
            done = offset + done
            self.running["done"] = done
            self.bar.progress(
                min(1.0, done / max(self.total, 1)),
                text=plain(f"{self.label}: {done:,} of {self.total:,} forward passes ({name})"),
            )

        return progress

    def close(self) -> None:
        st.session_state.pop(K_RUNNING, None)
        self.bar.empty()

    def stopped(self) -> None:
        self.close()
        st.warning(plain(_stopped_text(self.running)), icon=":material/stop_circle:")


def run_map_with_progress(
    choice: NetworkChoice,
    network: Network,
    photo: PhotoEntry,
    value: MapSettings,
    target: int,
    *,
    cancel: Callable[[], bool] | None = None,
) -> SensitivityResult | None:
    """Compute (or fetch) one map and its faithfulness check with a progress bar; None when the map
    failed or was stopped.

    The progress callback updates the bar, and every Streamlit call is a point where a pending
    stop (the Stop button, or any other click; see the module notes) interrupts the script;
    ``sensmap.running`` then stays set and the next run reports the stop (:func:`show_stopped_run`).
    ``cancel`` (a callable returning True to stop) ends the run with
    :class:`~sensmap.errors.CancelledError`.
    Finished maps go into the session's result cache (with their story, stability and pointing
    numbers, see :func:`describe_result`) before the faithfulness check runs, so stopping the check
    keeps the map; failures leave earlier results as they are.
    """
    from .engine import sensitivity_map

    key = result_key(choice, photo, value, target)
    if key in results():
        return results()[key]
    from .engine import plan_passes

    map_passes = plan_passes(network, value.sizes, value.stride, value.mode)
    run = _RunProgress(f"{choice.label} on {photo.name}", map_passes + faithfulness_passes(), "map")
    result = None
    with _reporting(run):
        result = sensitivity_map(
            network, photo.image, **value.kwargs(target), progress=run.phase("map", 0), cancel=cancel
        )
        store_result(key, result)
        describe_result(key, result)
        _check_faithfulness(network, photo, result, run.phase("faithfulness check", map_passes), cancel)
    return result


@contextlib.contextmanager
def _reporting(run: _RunProgress) -> Iterator[None]:
    """Close the progress bar when the block ends: a stop says so, a sensmap error is shown with
    ``st.error`` (the caller keeps what it had); anything else (Streamlit's own rerun) passes on."""
    try:
        yield
    except CancelledError:
        run.stopped()
    except SensmapError as exc:
        run.close()
        show_error(exc)
    else:
        run.close()


def _check_faithfulness(
    network: Network,
    photo: PhotoEntry,
    result: SensitivityResult,
    progress: Callable[[int, int], None] | None,
    cancel: Callable[[], bool] | None,
) -> dict:
    from .engine import faithfulness

    return faithfulness(
        network,
        photo.image,
        result,
        steps=FAITHFULNESS_STEPS,
        random_orders=FAITHFULNESS_RANDOM_ORDERS,
        progress=progress,
        cancel=cancel,
    )


def run_faithfulness_with_progress(
    choice: NetworkChoice,
    network: Network,
    photo: PhotoEntry,
    result: SensitivityResult,
    *,
    cancel: Callable[[], bool] | None = None,
) -> dict | None:
    """The faithfulness check of a finished map (when its automatic run was stopped), with a progress bar."""
    run = _RunProgress(f"{choice.label} on {photo.name}", faithfulness_passes(), "faithfulness check")
    numbers = None
    with _reporting(run):
        numbers = _check_faithfulness(network, photo, result, run.phase("faithfulness check", 0), cancel)
    return numbers


def faithfulness_button(
    choice: NetworkChoice, network: Network, photo: PhotoEntry, result: SensitivityResult, key: str
) -> None:
    """For a map without faithfulness numbers (its check was stopped): a button that runs the check."""
    if st.button(f"Check faithfulness ({faithfulness_passes()} forward passes)", key=key, icon=":material/rule:"):
        stop = stop_button()
        numbers = run_faithfulness_with_progress(choice, network, photo, result)
        stop.empty()
        if numbers is not None:
            st.rerun()


def _stopped_text(running: dict) -> str:
    phase = running.get("phase", "map")
    where = f"after {running['done']:,} of {running['total']:,} forward passes"
    if phase == "map":
        return (
            f"Stopped: the map of {running['label']} was interrupted {where}. "
            "Earlier maps are kept; press Run to start again."
        )
    return (
        f"Stopped: the {phase} of {running['label']} was interrupted {where}. "
        "The map is kept; run the check from its Faithfulness tab."
    )


def show_stopped_run() -> None:
    """If the previous run of the script was interrupted while a map ran, say so (once)."""
    running = st.session_state.pop(K_RUNNING, None)
    if running:
        st.warning(plain(_stopped_text(running)), icon=":material/stop_circle:")


# --------------------------------------------------------------------------- story, stability, pointing


def describe_result(key: ResultKey, result: SensitivityResult) -> None:
    """Add the story, the stability and (when the photo has a box) the pointing numbers to the metadata."""
    story_text(result)
    stability_numbers(key, result)
    apply_pointing(result, st.session_state.get(K_BOXES, {}).get(key.photo))


def story_text(result: SensitivityResult) -> str:
    """:func:`sensmap.tell_story` of the result (kept in ``metadata["story"]``)."""
    from .story import tell_story

    if not isinstance(result.metadata.get("story"), str):
        result.metadata["story"] = tell_story(result)
    return result.metadata["story"]


def stability_numbers(key: ResultKey, result: SensitivityResult) -> tuple[np.ndarray, float, str]:
    """``(spread map, mean spread, across)``: :func:`sensmap.metrics.stability` of the map's per-size maps
    and those of the cached maps that differ from it only by the fill (same photo, network, class, cover
    sizes, stride and score). Kept in ``metadata["stability"]`` (arrays' units: probability difference
    or log-odds)."""
    from .metrics import stability

    others = [
        other
        for other_key, other in results().items()
        if other_key != key
        and (other_key.photo, other_key.network, other_key.target) == (key.photo, key.network, key.target)
        and (other_key.settings[0], other_key.settings[1], other_key.settings[3])
        == (key.settings[0], key.settings[1], key.settings[3])
        and other_key.settings[2] != key.settings[2]  # another fill (not the same map in another mode)
    ]
    spread, score = stability([m for r in (result, *others) for m in r.per_size])
    fills = [r.fill for r in (result, *others)]
    covers = ", ".join(label_for(SIZE_CHOICES, s) for s in result.sizes)
    across = f"cover sizes {covers}" + (f" and fills {', '.join(fills)}" if others else "")
    finite = spread[np.isfinite(spread)]
    result.metadata["stability"] = {
        "score": score,
        "max": float(finite.max()) if finite.size else 0.0,
        "score_kind": result.score_kind,
        "across": across,
        "fills": fills,
        "maps": len(fills) * len(result.sizes),
    }
    return spread, score, across


def pointing_box(photo: PhotoEntry) -> tuple[float, float, float, float] | None:
    """The photo's pointing-check box ``(y0, x0, y1, x1)`` in fractions of the photo, or None."""
    return st.session_state.get(K_BOXES, {}).get(photo.sha256)


def same_box(a: Sequence[float] | None, b: Sequence[float] | None, tolerance: float = 5e-4) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return all(abs(float(u) - float(v)) <= tolerance for u, v in zip(a, b, strict=True))


def set_pointing_box(photo: PhotoEntry, box: Sequence[float] | None, *, refresh_inputs: bool = False) -> None:
    """Store (None: forget) the photo's box and update the pointing numbers of all its maps.

    ``refresh_inputs`` gives the number inputs new keys so they show the new box (after a box
    drawn on the photo, or cleared).
    """
    boxes = _state(K_BOXES, dict)
    if box is None:
        boxes.pop(photo.sha256, None)
    else:
        boxes[photo.sha256] = tuple(float(v) for v in box)
    for key, result in results().items():
        if key.photo == photo.sha256:
            apply_pointing(result, boxes.get(photo.sha256))
    if refresh_inputs:
        generations = _state(K_BOX_INPUTS, dict)
        generations[photo.sha256] = generations.get(photo.sha256, 0) + 1


def apply_pointing(result: SensitivityResult, box: Sequence[float] | None) -> dict | None:
    """:func:`sensmap.metrics.pointing` of the map against a photo box (kept in ``metadata["pointing"]``).

    None (and no ``pointing`` entry) without a box or when the network sees no part of it (``fit="crop"``).
    """
    from .metrics import pointing
    from .render import photo_box_to_grid

    grid = photo_box_to_grid(result, box) if box is not None else None
    if grid is None:
        result.metadata.pop("pointing", None)
        return None
    numbers = {"box_photo": [float(v) for v in box], "box_grid": list(grid), **pointing(result.support, grid)}
    result.metadata["pointing"] = numbers
    return numbers


def box_from_selection(selection: Any, photo_size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """The last box of a Plotly box selection (photo pixels) as ``(y0, x0, y1, x1)`` fractions of the photo.

    ``st.plotly_chart(..., on_select="rerun", selection_mode="box")`` returns the selection's boxes
    as ``{"xref", "yref", "x": [x0, x1], "y": [y0, y1]}`` in data coordinates, corners in drawing
    order; they are sorted, clipped to the photo and rounded to 0.1 %. None without a usable box.
    """
    boxes = (selection or {}).get("box") or []
    if not boxes:
        return None
    last = boxes[-1]
    xs, ys = list(last.get("x") or []), list(last.get("y") or [])
    if len(xs) < 2 or len(ys) < 2:
        return None
    height, width = photo_size
    y0, y1 = sorted(round(float(np.clip(float(v) / height, 0.0, 1.0)), 3) for v in ys[:2])
    x0, x1 = sorted(round(float(np.clip(float(v) / width, 0.0, 1.0)), 3) for v in xs[:2])
    return (y0, x0, y1, x1) if y1 - y0 >= 0.005 and x1 - x0 >= 0.005 else None


BOX_EDGES = (("y0", "top"), ("x0", "left"), ("y1", "bottom"), ("x1", "right"))


def box_inputs(photo: PhotoEntry, box: Sequence[float] | None) -> tuple[float, float, float, float] | None:
    """Four number inputs (top, left, bottom, right in % of the photo): the keyboard way to set the box.

    Returns the typed box (fractions) when all four are filled in and form a box, else None (with a
    warning for a box whose edges cross).
    """
    generation = st.session_state.get(K_BOX_INPUTS, {}).get(photo.sha256, 0)
    values = []
    columns = [*st.columns(2), *st.columns(2)]  # top-left corner, then bottom-right corner
    for column, (edge, word), current in zip(columns, BOX_EDGES, box or (None,) * 4, strict=True):
        values.append(
            column.number_input(
                f"{word} (%)", min_value=0.0, max_value=100.0, step=1.0, format="%.1f",
                value=None if current is None else round(100 * current, 1),
                key=f"w.box.{photo.sha256[:16]}.{generation}.{edge}",
                help=f"The box's {word} edge, in % of the photo's {'height' if edge[0] == 'y' else 'width'}.",
            )
        )  # fmt: skip
    if any(v is None for v in values):
        return None
    y0, x0, y1, x1 = (float(v) / 100 for v in values)
    if y0 >= y1 or x0 >= x1:
        st.warning("The box needs top < bottom and left < right.", icon=":material/warning:")
        return None
    return y0, x0, y1, x1


def agreement_numbers(photo: PhotoEntry, result_a: SensitivityResult, result_b: SensitivityResult) -> dict:
    """:func:`sensmap.metrics.agreement` of two maps resampled onto the same photo grid."""
    from .metrics import agreement
    from .render import map_on_photo

    shape = photo.image.pixels.shape[:2]
    return agreement(map_on_photo(result_a, result_a.support, shape), map_on_photo(result_b, result_b.support, shape))


def wrap_subplot_titles(fig: Any, width: int = 30) -> Any:
    """Break long subplot titles (Plotly annotations) into lines of about ``width`` characters, so
    the titles of side-by-side panels do not run into each other; the top margin grows to fit."""
    import textwrap

    extra = 0
    for annotation in fig.layout.annotations or ():
        text = annotation.text or ""
        if len(text) > width and "<br>" not in text:
            lines = textwrap.wrap(text, width, break_long_words=False)
            annotation.text = "<br>".join(lines)
            extra = max(extra, len(lines) - 1)
    if extra:
        fig.update_layout(margin_t=(fig.layout.margin.t or 80) + 50 * extra)
    return fig


def approximate_note(result: SensitivityResult) -> str:
    """The warning shown over a fast-mode map: what was measured and what was predicted."""
    from .report import mode_text

    return f"Approximate map ({mode_text(result)}). Run it in exact or incremental mode before relying on details."


def describe_settings(value: MapSettings) -> str:
    """One line about the settings, e.g. ``covers 1/2, 1/4 · stride 1/2 · fill gray · probability``."""
    covers = ", ".join(label_for(SIZE_CHOICES, s) for s in value.sizes)
    fill = value.colour if value.fill == "custom" else value.fill
    mode = "" if value.mode == "exact" else f" · {value.mode} mode"
    return f"covers {covers} · stride {label_for(STRIDE_CHOICES, value.stride)} · fill {fill} · {value.score}{mode}"


# --------------------------------------------------------------------------- reports


def report_keys(photo: PhotoEntry, choice_a: NetworkChoice, choice_b: NetworkChoice | None) -> list[ResultKey]:
    """The maps a report can show: network A's map of the photo (current settings, else the last
    finished one) and, when computed with the same settings, network B's map for comparison."""
    store = results()
    chosen = st.session_state.get(K_TARGETS, {}).get((photo.sha256, choice_a.key))
    top = st.session_state.get(K_TOP, {}).get((photo.sha256, choice_a.key))
    target = chosen if chosen is not None else (top[0][0] if top else None)
    key_a = result_key(choice_a, photo, settings(), target) if target is not None else None
    if key_a not in store:
        key_a = st.session_state.get(K_LAST, {}).get((photo.sha256, choice_a.key))
    if key_a not in store:
        return []
    if choice_b is None:
        return [key_a]
    name = store[key_a].target_name
    candidates = [k for k in store if (k.photo, k.network, k.settings) == (photo.sha256, choice_b.key, key_a.settings)]
    candidates.sort(key=lambda k: store[k].target_name == name)
    return [key_a, candidates[-1]] if candidates else [key_a]


def report_png_cached(photo: PhotoEntry, keys: Sequence[ResultKey]) -> bytes:
    """The PNG report of these results (kept for the session: the preview and the download share it)."""
    from .report import report_png

    for key in keys:  # maps with other fills may have finished since: the stability numbers include them
        stability_numbers(key, results()[key])
    store = _state(K_REPORTS, dict)
    cache_key = (tuple(keys), tuple(_trust_fingerprint(results()[k]) for k in keys))
    if cache_key not in store:
        store[cache_key] = report_png(photo.image, [results()[k] for k in keys], photo_credit=photo.credit)
        while len(store) > MAX_REPORTS:
            del store[next(iter(store))]
    return store[cache_key]


def _trust_fingerprint(result: SensitivityResult) -> tuple:
    """What of a result's trust numbers can change after it is made (a report shows the current ones)."""
    meta = result.metadata
    box = (meta.get("pointing") or {}).get("box_photo")
    return (tuple(box) if box else None, (meta.get("stability") or {}).get("score"), "faithfulness" in meta)


def percent(value: float) -> str:
    return f"{value:.1%}" if value >= 0.001 else f"{value:.2g}"
