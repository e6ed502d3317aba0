"""Dataset audit at scale: an occlusion map for every image of a folder or manifest, on Ray Data.

"Did the network learn the wolf or the snow?", asked of a whole dataset: ``sensmap audit INPUT --model M
--out DIR`` (or :func:`run_audit`).

* **Input.** A folder of images (searched recursively; an image's label is the name of the folder it is
  in) or a Parquet/CSV manifest with ``image_id``, ``path`` (relative to the manifest) and optional
  ``label`` and box ``x0, y0, x1, y1`` (fractions of the photo's width and height).
* **Pipeline (Ray Data).** The work list → decode and fit to each network's grid on CPU tasks →
  ``map_batches`` with an actor pool: every actor loads each network once from a picklable
  :class:`ModelSpec` (a name or ``.keras`` file plus weights, labels, preprocessing and options — never a
  pickled model; TensorFlow GPU memory growth on; one GPU per actor when the cluster has GPUs) and runs
  :func:`sensmap.sensitivity_map` per image → one ``.npz`` per image and model, written under a temporary
  name and renamed to ``DIR/maps/model=<name>/<image key>.npz``. The maps equal single-machine
  ``sensitivity_map`` results: the actors get the very pixels ``sensitivity_map`` would feed the network.
* **Local or cluster, same code.** Without an address a local Ray is started with enough logical CPUs for
  the actors *and* the decode tasks (``workers + 2`` at least); with ``address`` the cluster is used.
* **Resumable, idempotent.** A rerun skips every image whose ``.npz`` exists (and starts no Ray at all when
  nothing is left); a crash loses only the images in flight; a missing or corrupt image becomes an error
  record (``<image key>.error.json``) and never stops the run — the next run retries it.
* **Index and summary.** ``DIR/index.parquet`` is rebuilt from the files after every run: one row per image
  and model (top-k, target, score, passes, support inside/outside the box, errors). ``summary.png`` and
  ``summary.html`` show, per network, the mean support map on the network grid per predicted class and per
  label, and the images whose support lies mostly outside their box (shortcut suspects); the mean maps
  are kept in ``class_means.npz``.

The dashboard's Audit page uses the pure functions at the end of this module (no Ray, no TensorFlow):
:func:`open_audit`, :func:`filter_index`, :func:`class_counts`, :func:`class_mean_map`,
:func:`class_means`, :func:`shortcut_suspects`, :func:`load_image_result`, :func:`class_means_figure`.

Folder layout::

    DIR/audit.json                         settings, networks (with file fingerprints), last run
    DIR/maps/model=<name>/<key>.npz        one SensitivityResult per image (metadata["audit"]: the index row)
    DIR/maps/model=<name>/<key>.error.json an image that failed (retried by the next run)
    DIR/index.parquet                      the index, rebuilt from the files
    DIR/summary.png, summary.html, class_means.npz
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import io
import json
import logging
import math
import os
import re
import socket
import time
import uuid
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import numpy as np

from . import __version__
from .errors import ModelError, ParameterError, SensmapError
from .fills import fill_label, normalize_fill
from .images import FIT_METHODS, LoadedImage, box_on_grid, fit_image, load_image
from .metrics import pointing
from .registry import get_spec, is_model_file, resolve_weights, variant_label
from .result import SensitivityResult, json_default, validate_mode, validate_score_kind
from .windows import DEFAULT_SIZES, DEFAULT_STRIDE, validate_sizes, validate_stride

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import plotly.graph_objects as go

FORMAT_VERSION = 1
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
MANIFEST_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv"}
BOX_COLUMNS = ("x0", "y0", "x1", "y1")
TOP_K = 5
SUMMARY_CLASSES = 24  # mean maps per network and grouping in the summary (most frequent first)
SUMMARY_SUSPECTS = 12
MAX_KEY_LENGTH = 180
ROWS_PER_BLOCK_MAX_BLOCKS = 2000  # the work list is cut into at most this many Ray blocks
TARGET_LABEL = "label"  # --target label: explain each image's own label class

AUDIT_JSON = "audit.json"
INDEX_FILE = "index.parquet"
MEANS_FILE = "class_means.npz"
SUMMARY_PNG = "summary.png"
SUMMARY_HTML = "summary.html"
MAPS_DIR = "maps"
LOCK_FILE = ".audit.lock"
ERROR_SUFFIX = ".error.json"

_NAME_PREFIX = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)=(.+)$")

log = logging.getLogger(__name__)


class AuditError(SensmapError):
    """The audit stopped before the end (a worker died, an injected crash…); rerun it to resume."""


# --------------------------------------------------------------------------- small helpers


def image_key(image_id: str) -> str:
    """The file-name stem of an image's map: ``image_id`` with every character outside ``[A-Za-z0-9_-]``
    (and ``.`` at the start) percent-encoded, so ids with ``/`` or ``..`` stay inside their folder.
    Long ids are cut and end with a hash of the whole id.
    """
    text = str(image_id)
    if not text:
        raise ParameterError("an image id must not be empty")
    key = quote(text, safe="-_.")
    if key.startswith("."):
        key = "%2E" + key[1:]
    if len(key) > MAX_KEY_LENGTH:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        key = key[: MAX_KEY_LENGTH - 17].rstrip("%") + "~" + digest
    return key


def model_slug(text: str) -> str:
    """A folder-safe network name: ASCII (α→a), ``[A-Za-z0-9._-]`` only, e.g. ``MobileNet_a0.25_128px``."""
    from .report import safe_name

    return safe_name(text, "model", limit=80)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a hidden temporary file beside ``path`` and rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class AuditItem:
    """One image of the dataset: id, absolute path, optional label and box (x0, y0, x1, y1 fractions).

    ``problem`` holds why the row cannot be used (e.g. an invalid box); it becomes an error record.
    """

    image_id: str
    path: str
    label: str | None = None
    box: tuple[float, float, float, float] | None = None
    problem: str | None = None

    @property
    def key(self) -> str:
        return image_key(self.image_id)


def collect_inputs(source: str | os.PathLike, *, exclude: str | os.PathLike | None = None) -> list[AuditItem]:
    """The images of a folder (recursive, sorted) or of a Parquet/CSV manifest.

    Folder: every file with an image extension (hidden files and folders, and ``exclude`` — the audit's own
    output folder — are skipped); the id is the path relative to the folder, the label the name of the
    folder holding the image (none for images at the top). Manifest: columns ``image_id`` (default: the
    path), ``path`` (relative paths are relative to the manifest), optional ``label`` and optional box
    ``x0, y0, x1, y1`` in fractions of the photo (all four columns; a row with all four empty has no box).
    Duplicate ids are refused; a row with an invalid box becomes an error record, not a failure.
    """
    path = Path(os.fspath(source)).expanduser()
    if path.is_dir():
        return _collect_folder(path.resolve(), Path(exclude).resolve() if exclude else None)
    if not path.exists():
        raise ParameterError(f"no such folder or manifest: {path}")
    kind = MANIFEST_EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise ParameterError(f"{path.name}: the input must be a folder of images or a .parquet/.csv manifest")
    return _collect_manifest(path.resolve(), kind)


def _collect_folder(root: Path, exclude: Path | None) -> list[AuditItem]:
    items = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (exclude is None or here / d != exclude))
        for name in sorted(files):
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            relative = (here / name).relative_to(root)
            label = relative.parent.name or None
            items.append(AuditItem(image_id=relative.as_posix(), path=str(here / name), label=label))
    if not items:
        raise ParameterError(f"no images in {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return items


def _read_manifest_table(path: Path, kind: str):
    import pyarrow as pa

    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        import pyarrow.csv as pacsv

        text_columns = {name: pa.string() for name in ("image_id", "path", "label")}
        parse = pacsv.ParseOptions(delimiter="\t" if kind == "tsv" else ",")
        convert = pacsv.ConvertOptions(column_types=text_columns, strings_can_be_null=True)
        return pacsv.read_csv(path, parse_options=parse, convert_options=convert)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise ParameterError(f"cannot read the manifest {path.name}: {str(exc).splitlines()[0]}") from None


def _collect_manifest(path: Path, kind: str) -> list[AuditItem]:
    table = _read_manifest_table(path, kind)
    columns = set(table.column_names)
    if "path" not in columns:
        raise ParameterError(f"the manifest {path.name} needs a 'path' column (it has {', '.join(sorted(columns))})")
    present = [c for c in BOX_COLUMNS if c in columns]
    if present and len(present) != len(BOX_COLUMNS):
        missing = ", ".join(c for c in BOX_COLUMNS if c not in columns)
        raise ParameterError(f"the manifest {path.name} has box columns {', '.join(present)} but not {missing}")
    rows = table.to_pylist()
    items, seen, duplicates = [], set(), []
    for number, row in enumerate(rows, start=2 if kind != "parquet" else 1):
        raw_path = row.get("path")
        image_id = row.get("image_id")
        image_id = str(image_id).strip() if image_id is not None and str(image_id).strip() else None
        if raw_path is None or not str(raw_path).strip():
            raise ParameterError(f"the manifest {path.name} has an empty path (row {number})")
        raw_path = str(raw_path).strip()
        image_id = image_id or raw_path
        if image_id in seen:
            duplicates.append(image_id)
            continue
        seen.add(image_id)
        file_path = Path(raw_path).expanduser()
        if not file_path.is_absolute():
            file_path = path.parent / file_path
        label = row.get("label")
        label = str(label).strip() if label is not None and str(label).strip() else None
        box, problem = None, None
        if present:
            box, problem = _parse_box([row.get(c) for c in BOX_COLUMNS])
        items.append(AuditItem(image_id=image_id, path=str(file_path), label=label, box=box, problem=problem))
    if duplicates:
        shown = ", ".join(repr(d) for d in duplicates[:5])
        raise ParameterError(f"the manifest {path.name} repeats image ids ({len(duplicates)}): {shown}")
    if not items:
        raise ParameterError(f"the manifest {path.name} lists no images")
    return items


def _parse_box(values: Sequence[Any]) -> tuple[tuple[float, float, float, float] | None, str | None]:
    """A manifest row's box (x0, y0, x1, y1 fractions), or why it cannot be used; no box when all are empty."""
    numbers = [_finite(v) for v in values]
    if all(v is None for v in numbers):
        return None, None
    if any(v is None for v in numbers):
        return None, f"incomplete box x0,y0,x1,y1 = {list(values)}: give all four fractions or none"
    x0, y0, x1, y1 = numbers
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        return None, f"invalid box x0,y0,x1,y1 = {numbers}: need 0 ≤ x0 < x1 ≤ 1 and 0 ≤ y0 < y1 ≤ 1 (fractions)"
    return (x0, y0, x1, y1), None


# --------------------------------------------------------------------------- networks


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads a network — picklable, resolved on the driver without TensorFlow.

    ``source`` is a Keras Applications name or an absolute ``.keras`` path; ``weights`` ``"imagenet"``,
    an absolute weights file, or ``None`` (random). ``name`` is the folder name (``maps/model=<name>``),
    ``network`` the network's display name, ``input_size`` its grid and ``fingerprint`` a hash of the
    spec and of the files it reads (a changed file is refused by an existing audit folder).
    """

    name: str
    network: str
    source: str
    weights: str | None
    labels: str | None
    preprocess: str | None
    options: tuple[tuple[str, Any], ...]
    input_size: tuple[int, int]
    fingerprint: str

    def load(self):
        """The :class:`sensmap.Network` (imports TensorFlow; called in the workers)."""
        from .models import load_model

        return load_model(
            self.source, weights=self.weights, labels=self.labels, preprocess=self.preprocess, **dict(self.options)
        )

    def describe(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "source": self.source,
            "weights": self.weights,
            "labels": self.labels,
            "preprocess": self.preprocess,
            "options": dict(self.options),
            "input_size": list(self.input_size),
            "fingerprint": self.fingerprint,
        }


def resolve_model(
    text: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = "imagenet",
    labels: str | os.PathLike | None = None,
    preprocess: str | None = None,
    options: dict[str, Any] | None = None,
    name: str | None = None,
) -> ModelSpec:
    """A :class:`ModelSpec` for a Keras Applications name or ``.keras`` file (``NAME=SOURCE`` names the folder).

    Mirrors :func:`sensmap.load_model`'s resolution of weights (``SENSMAP_WEIGHTS_DIR``, weights folders
    and their ``manifest.json``) without building the network, so mistakes surface before any work.
    """
    text = os.fspath(text).strip()
    match = _NAME_PREFIX.match(text)
    if match and name is None and not os.path.exists(text):
        name, text = match.group(1), match.group(2).strip()
    options = dict(options or {})
    labels_path = str(Path(labels).expanduser().resolve()) if labels else None
    if labels_path and not Path(labels_path).is_file():
        raise ModelError(f"no such labels file: {labels_path}")
    files: dict[str, str] = {}
    if labels_path:
        files["labels"] = _file_sha256(Path(labels_path))
    if is_model_file(text):
        path = Path(text).expanduser().resolve()
        if not path.is_file():
            raise ModelError(f"no such model file: {path}")
        if path.suffix.lower() != ".keras":
            raise ModelError(f"{path.name}: own models must be saved in the Keras 3 format (model.save('name.keras'))")
        files["model"] = _file_sha256(path)
        network, source, weights_arg = path.stem, str(path), None
        input_size = _keras_input_size(path)
        default_name = model_slug(network)
    else:
        spec = get_spec(text)
        weights_arg, options, custom = resolve_weights(spec.name, weights, options)
        if weights_arg not in (None, "imagenet"):
            files["weights"] = _file_sha256(Path(weights_arg))
        network, source = variant_label(spec.name, options), spec.name
        input_size = spec.options_input_size(options)
        default_name = model_slug(network)
        if weights_arg is None:
            default_name += "-random"
        elif custom:
            default_name += "-" + model_slug(Path(weights_arg).name.split(".")[0])
    folder_name = model_slug(name) if name else default_name
    ordered = tuple(sorted((str(k), _plain_option(v)) for k, v in options.items()))
    identity = {
        "source": source,
        "weights": weights_arg,
        "labels": labels_path,
        "preprocess": preprocess,
        "options": ordered,
        "files": files,
    }
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return ModelSpec(
        name=folder_name,
        network=network,
        source=source,
        weights=weights_arg,
        labels=labels_path,
        preprocess=preprocess,
        options=ordered,
        input_size=(int(input_size[0]), int(input_size[1])),
        fingerprint=fingerprint,
    )


def _plain_option(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_plain_option(v) for v in value)
    return value


def _keras_input_size(path: Path) -> tuple[int, int]:
    """The (H, W) input of a ``.keras`` file, read from its ``config.json`` (no TensorFlow)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelError(f"cannot read {path.name}: it is not a Keras 3 .keras file ({exc})") from None
    inner = config.get("config", {}) if isinstance(config, dict) else {}
    shapes = []
    for layer in inner.get("layers", []) if isinstance(inner, dict) else []:
        if isinstance(layer, dict) and layer.get("class_name") == "InputLayer":
            layer_config = layer.get("config", {})
            shapes.append(layer_config.get("batch_shape") or layer_config.get("batch_input_shape"))
    if not shapes and isinstance(inner, dict) and inner.get("build_input_shape"):
        shapes.append(inner["build_input_shape"])
    if len(shapes) != 1 or not shapes[0] or len(shapes[0]) != 4:
        raise ModelError(f"{path.name}: sensmap needs a model with exactly one image input (batch, H, W, 3)")
    height, width = shapes[0][1], shapes[0][2]
    if not isinstance(height, int) or not isinstance(width, int):
        raise ModelError(f"{path.name}: the input size is not fixed ({shapes[0]}); build it with a fixed input_shape")
    return height, width


# --------------------------------------------------------------------------- settings and the audit folder


@dataclass(frozen=True)
class AuditSettings:
    """Map settings shared by every image; those that change the maps must match an existing audit folder."""

    sizes: tuple[float, ...] = DEFAULT_SIZES
    stride: float = DEFAULT_STRIDE
    fill: str = "gray"
    score: str = "probability"
    fit: str = "squash"
    target: str | None = None  # None: top-1; "label": each image's label; else a class index or name
    batch_size: int | None = None
    max_passes: int | None = None
    mode: str = "exact"  # sensmap.result.MODES; incremental gives exact's maps, fast approximate ones

    @classmethod
    def make(cls, **values: Any) -> AuditSettings:
        sizes = validate_sizes(values.pop("sizes", DEFAULT_SIZES) or DEFAULT_SIZES)
        stride = validate_stride(values.pop("stride", DEFAULT_STRIDE))
        fill = fill_label(normalize_fill(values.pop("fill", "gray")))
        score = validate_score_kind(values.pop("score", "probability"))
        fit = str(values.pop("fit", "squash"))
        if fit not in FIT_METHODS:
            raise ParameterError(f"unknown fit {fit!r}: use {' or '.join(FIT_METHODS)}")
        target = values.pop("target", None)
        target = None if target is None or str(target).strip() == "" else str(target).strip()
        batch_size = values.pop("batch_size", None)
        if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
            raise ParameterError(f"batch size must be a whole number ≥ 1, got {batch_size!r}")
        max_passes = values.pop("max_passes", None)
        mode = validate_mode(values.pop("mode", "exact"))
        if max_passes is None and os.environ.get("SENSMAP_MAX_PASSES", "").strip():
            max_passes = os.environ["SENSMAP_MAX_PASSES"].strip()
        if values:
            raise TypeError(f"unknown settings: {', '.join(values)}")
        try:
            max_passes = None if max_passes is None else int(max_passes)
        except ValueError:
            raise ParameterError(f"the pass budget must be a whole number, got {max_passes!r}") from None
        batch_size = None if batch_size is None else int(batch_size)
        return cls(sizes, stride, fill, score, fit, target, batch_size, max_passes, mode)

    def identity(self) -> dict[str, Any]:
        """The settings that change the maps (compared with an existing audit folder)."""
        return {
            "sizes": list(self.sizes),
            "stride": self.stride,
            "fill": self.fill,
            "score": self.score,
            "fit": self.fit,
            "target": self.target,
            # exact and incremental maps are the same maps; fast maps are approximate (older folders: exact)
            **({"mode": "fast"} if self.mode == "fast" else {}),
        }


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SensmapError(f"cannot read {path}: {exc}") from None


def _prepare_folder(out: Path, settings: AuditSettings, specs: Sequence[ModelSpec], source: str) -> dict[str, Any]:
    """Create or check ``audit.json``: same settings, and each folder name bound to one network fingerprint."""
    out.mkdir(parents=True, exist_ok=True)
    state = _read_json(out / AUDIT_JSON)
    if state is None:
        state = {"format_version": FORMAT_VERSION, "created": _now(), "settings": settings.identity(), "models": {}}
    elif state.get("settings") != settings.identity():
        old = state.get("settings", {})
        changed = ", ".join(f"{k} {old.get(k)!r} → {v!r}" for k, v in settings.identity().items() if old.get(k) != v)
        raise ParameterError(
            f"{out} holds an audit made with other map settings ({changed}): use another --out folder, "
            "or the same settings to resume it"
        )
    names = Counter(spec.name for spec in specs)
    clashes = [n for n, c in names.items() if c > 1]
    if clashes:
        raise ParameterError(
            f"two networks would share the folder maps/model={clashes[0]}: name them, e.g. --model a={specs[0].source}"
        )
    for spec in specs:
        known = state["models"].get(spec.name)
        if known is not None and known.get("fingerprint") != spec.fingerprint:
            raise ParameterError(
                f"{out}/maps/model={spec.name} holds maps of another network or of other files "
                f"(was {known.get('source')} with weights {known.get('weights')}): name this one differently "
                "(--model NAME=SOURCE) or use another --out folder"
            )
        state["models"][spec.name] = spec.describe()
        (out / MAPS_DIR / f"model={spec.name}").mkdir(parents=True, exist_ok=True)
    state["source"] = source
    state["sensmap_version"] = __version__
    _atomic_write(out / AUDIT_JSON, json.dumps(state, indent=2, default=json_default).encode("utf-8"))
    return state


@contextlib.contextmanager
def _folder_lock(out: Path) -> Iterator[None]:
    """One audit at a time per folder (an advisory lock; a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    handle = open(out / LOCK_FILE, "a+")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise AuditError(f"another audit is writing to {out}; wait for it or use another --out folder") from None
        yield
    finally:
        handle.close()


def _clean_temporaries(out: Path) -> int:
    """Remove what a killed run left: half-written files and its run token."""
    removed = 0
    for token in out.glob(".run-*"):
        with contextlib.suppress(OSError):
            token.unlink()
    for folder in (out / MAPS_DIR).glob("model=*"):
        for tmp in folder.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


def _done_keys(folder: Path, with_errors: bool) -> set[str]:
    """Keys with a map (and, ``with_errors``, with an error record) in one network's folder."""
    try:
        names = [entry.name for entry in os.scandir(folder)]
    except FileNotFoundError:
        return set()
    keys = {name[:-4] for name in names if name.endswith(".npz")}
    if with_errors:
        keys |= {name[: -len(ERROR_SUFFIX)] for name in names if name.endswith(ERROR_SUFFIX)}
    return keys


# --------------------------------------------------------------------------- progress and statistics


@dataclass(frozen=True)
class AuditProgress:
    """Images done of this run's total, with rate (images/s since the first one finished) and time left."""

    done: int
    total: int
    skipped: int
    errors: int
    elapsed_s: float
    images_per_s: float
    eta_s: float | None

    def line(self) -> str:
        eta = "" if self.eta_s is None else f"  ETA {_duration(self.eta_s)}"
        errors = f"  {self.errors} error{'s' if self.errors != 1 else ''}" if self.errors else ""
        return f"{self.done}/{self.total} images  {self.images_per_s:.2f} images/s{eta}{errors}"


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class AuditStats:
    """What one :func:`run_audit` call did."""

    out_dir: str
    images: int  # images in the input
    models: list[str]
    skipped: int = 0  # images whose maps all existed
    processed: int = 0  # images handled by this run
    maps: int = 0  # .npz files written by this run
    errors: int = 0  # error records written by this run
    workers: int = 0
    cluster: str = "none (nothing to do)"
    elapsed_s: float = 0.0  # whole call, Ray start and index/summary included
    pipeline_s: float = 0.0  # from the pipeline start to the last image (actor start-up included)
    steady_images_per_s: float = 0.0  # after the first image finished
    attempts: int = 0
    failed_images: int = 0  # images with an error record in the index (this run or before)
    index_path: str | None = None
    summary: dict[str, str] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.processed / self.pipeline_s if self.pipeline_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": self.images_per_s}


# --------------------------------------------------------------------------- the Ray pipeline


def _default_workers(gpus: float = 0.0, cluster_cpus: float | None = None) -> int:
    """One actor per GPU; without GPUs one per core up to 4 on this machine (measured: on 2 cores two
    one-thread actors map more images per second than one two-thread actor), a quarter of a cluster's CPUs."""
    if gpus >= 1:
        return int(gpus)
    if cluster_cpus is not None:
        return max(1, int(cluster_cpus) // 4)
    return max(1, min(os.cpu_count() or 1, 4))


def local_cpus(workers: int) -> int:
    """Logical CPUs for a local Ray: room for every actor and at least two decode tasks beside them.

    With only as many CPUs as actors the decode tasks could never be scheduled (a 2-core machine hung
    with ``num_cpus=2`` and 2 workers, and ran with 4).
    """
    return max(os.cpu_count() or 1, workers + 2)


@contextlib.contextmanager
def _quiet_ray_data() -> Iterator[Any]:
    """Ray Data without progress bars and INFO chatter (restored afterwards)."""
    import ray.data

    context = ray.data.DataContext.get_current()
    saved = (context.enable_progress_bars, getattr(context, "enable_operator_progress_bars", None))
    loggers = [logging.getLogger(name) for name in ("ray.data", "ray")]
    levels = [logger.level for logger in loggers]
    context.enable_progress_bars = False
    if saved[1] is not None:
        context.enable_operator_progress_bars = False
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield context
    finally:
        context.enable_progress_bars = saved[0]
        if saved[1] is not None:
            context.enable_operator_progress_bars = saved[1]
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def _ray_session(address: str | None, workers: int | None, num_cpus: int | None) -> Iterator[str]:
    """Connect to ``address``, reuse a session the caller started, or start a local Ray (and stop it after)."""
    import ray

    if ray.is_initialized():
        yield "existing Ray session"
        return
    address = address or os.environ.get("RAY_ADDRESS") or None  # ray.init() would follow RAY_ADDRESS anyway
    common = dict(log_to_driver=False, logging_level=logging.ERROR)
    if address:
        try:
            ray.init(address=address, **common)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise AuditError(f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
        where = f"Ray cluster {address}"
    else:
        cpus = num_cpus or local_cpus(workers or _default_workers())
        ray.init(num_cpus=cpus, include_dashboard=False, **common)
        where = f"local Ray ({cpus} CPUs)"
    try:
        yield where
    finally:
        ray.shutdown()


def _decode_rows(batch: dict[str, np.ndarray], grids: Sequence[tuple[int, int]], fit: str) -> dict[str, Any]:
    """CPU task: decode each photo and fit it to every network grid (uint8 bytes; empty on error)."""
    count = len(batch["image_id"])
    errors, meta, heights, widths, refit = [], [], [], [], []
    pixels: dict[str, list[bytes]] = {_grid_column(g): [] for g in grids}
    for i in range(count):
        problem = str(batch["problem"][i] or "")
        photo = None
        if not problem:
            try:
                photo = load_image(str(batch["path"][i]))
            except Exception as exc:  # noqa: BLE001 - any unreadable image is an error row, never a stop
                problem = str(exc) or type(exc).__name__
        errors.append(problem)
        heights.append(photo.height if photo is not None else 0)
        widths.append(photo.width if photo is not None else 0)
        exact = True
        for grid in grids:
            data = b""
            if photo is not None:
                fitted = fit_image(photo, grid, fit)
                as_bytes = fitted.astype(np.uint8)
                if np.array_equal(as_bytes, fitted):
                    data = as_bytes.tobytes()
                else:  # a resampling that is not whole numbers: the worker fits the photo itself
                    exact = False
            pixels[_grid_column(grid)].append(data)
        refit.append(not exact)
        meta.append(
            json.dumps(
                {
                    "source": photo.source,
                    "sha256": photo.sha256,
                    "notes": list(photo.notes),
                    "format": photo.format,
                    "original_size": list(photo.original_size),
                }
                if photo is not None
                else {}
            )
        )
    out = {name: batch[name] for name in ("image_id", "key", "path", "label", "box", "todo")}
    out.update(error=np.array(errors, dtype=object), photo=np.array(meta, dtype=object))
    out.update(photo_h=np.array(heights, dtype=np.int64), photo_w=np.array(widths, dtype=np.int64))
    out["refit"] = np.array(refit, dtype=bool)
    for name, values in pixels.items():
        out[name] = np.array(values, dtype=object)
    return out


def _grid_column(grid: Sequence[int]) -> str:
    return f"px_{int(grid[0])}x{int(grid[1])}"


class _InjectedCrash(RuntimeError):
    pass


class AuditWorker:
    """Ray actor: loads every network once, then maps each image with each network it still needs.

    Constructed by Ray Data in a worker process from picklable arguments only. ``fail_after`` (tests)
    makes the actor crash after that many maps: ``("raise", n)`` raises, ``("exit", n)`` kills the process.
    """

    def __init__(
        self,
        specs: Sequence[ModelSpec],
        settings: AuditSettings,
        out_dir: str,
        threads: int | None = None,
        fail_after: tuple[str, int] | None = None,
        run_token: str | None = None,
    ) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.run_token = run_token
        import tensorflow as tf

        if threads:
            with contextlib.suppress(RuntimeError):  # only possible before TensorFlow's runtime starts
                tf.config.threading.set_intra_op_parallelism_threads(int(threads))
                tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, int(threads))))
        for gpu in tf.config.list_physical_devices("GPU"):
            with contextlib.suppress(RuntimeError, ValueError):
                tf.config.experimental.set_memory_growth(gpu, True)
        from .engine import sensitivity_map

        self._sensitivity_map = sensitivity_map
        self.specs = list(specs)
        self.settings = settings
        self.out = Path(out_dir)
        self.networks = []
        for spec in self.specs:
            network = spec.load()
            if tuple(network.input_size) != tuple(spec.input_size):
                raise ModelError(
                    f"{spec.network}: the network takes {network.input_size}, the audit planned {spec.input_size}"
                )
            self.networks.append(network)
        self.fail_after = fail_after
        self.mapped = 0
        self.host = socket.gethostname()
        self.device = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids, maps, errors, messages = [], [], [], []
        for i in range(len(batch["image_id"])):
            row = {name: batch[name][i] for name in batch}
            done = failed = 0
            message = ""
            for k in (int(v) for v in str(row["todo"]).split(",") if v != ""):
                outcome = self._one(row, k)
                if outcome is None:
                    continue
                if outcome == "ok":
                    done += 1
                else:
                    failed += 1
                    message = message or outcome
            ids.append(str(row["image_id"]))
            maps.append(done)
            errors.append(failed)
            messages.append(message)
        return {
            "image_id": np.array(ids, dtype=object),
            "maps": np.array(maps, dtype=np.int64),
            "errors": np.array(errors, dtype=np.int64),
            "error": np.array(messages, dtype=object),
        }

    def _one(self, row: dict[str, Any], k: int) -> str | None:
        """Map one image with network ``k``: ``"ok"``, the error text, or ``None`` if another run did it."""
        spec, network = self.specs[k], self.networks[k]
        folder = self.out / MAPS_DIR / f"model={spec.name}"
        key = str(row["key"])
        final = folder / f"{key}.npz"
        if final.exists() or not self._running():
            return None
        started = time.perf_counter()
        record = _row_record(row, spec)
        try:
            if row["error"]:
                raise _InputProblem(str(row["error"]))
            result = self._map(row, network, spec)
            result.metadata["audit"] = {
                **record,
                **_index_fields(result, record["label"], record["box"], network),
                "seconds": time.perf_counter() - started,
                "host": self.host,
                "pid": os.getpid(),
                "device": self.device,
                "computed_at": _now(),
            }
            data = result.to_npz_bytes()
            if not self._running():
                return None
            _atomic_write(final, data)
            with contextlib.suppress(FileNotFoundError):
                (folder / f"{key}{ERROR_SUFFIX}").unlink()
        except Exception as exc:  # noqa: BLE001 - one image's failure is recorded, the run goes on
            stage = "input" if isinstance(exc, _InputProblem) else "map"
            message = str(exc).strip() or type(exc).__name__
            error = {**record, "stage": stage, "error": message, "at": _now(), "host": self.host, "pid": os.getpid()}
            if not self._running():
                return None
            _atomic_write(folder / f"{key}{ERROR_SUFFIX}", json.dumps(error, default=json_default).encode("utf-8"))
            return message
        self.mapped += 1
        if self.fail_after is not None and self.mapped >= int(self.fail_after[1]):
            if self.fail_after[0] == "exit":
                os._exit(3)
            raise _InjectedCrash(f"injected crash after {self.mapped} maps")
        return "ok"

    def _running(self) -> bool:
        """Whether the driver still runs this audit (its run token exists)."""
        return self.run_token is None or os.path.exists(self.run_token)

    def _map(self, row: dict[str, Any], network: Any, spec: ModelSpec) -> SensitivityResult:
        settings = self.settings
        target: Any = settings.target
        if target == TARGET_LABEL:
            if not row["label"]:
                raise ParameterError("--target label, but this image has no label")
            target = str(row["label"])
        elif target is not None and target.lstrip("-").isdigit():
            target = int(target)
        options = dict(
            sizes=settings.sizes,
            stride=settings.stride,
            fill=settings.fill,
            target=target,
            score=settings.score,
            batch_size=settings.batch_size,
            fit=settings.fit,
            max_passes=settings.max_passes,
            mode=settings.mode,
        )
        data = row.get(_grid_column(spec.input_size)) or b""
        if row["refit"] or not data:
            return self._sensitivity_map(network, load_image(str(row["path"])), **options)
        meta = json.loads(str(row["photo"]))
        height, width = spec.input_size
        pixels = np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
        # The network input exactly as sensitivity_map would fit the photo (fit_image keeps an H×W photo as is);
        # the photo's own size and identity are restored afterwards.
        fitted = LoadedImage(
            pixels=pixels,
            notes=tuple(meta["notes"]),
            source=meta["source"],
            format=meta["format"],
            original_size=tuple(meta["original_size"]),
            sha256=meta["sha256"],
        )
        result = self._sensitivity_map(network, fitted, **options)
        result.photo_size = (int(row["photo_h"]), int(row["photo_w"]))
        result._photo_support = None
        return result


class _InputProblem(Exception):
    pass


def _row_record(row: dict[str, Any], spec: ModelSpec) -> dict[str, Any]:
    box = row["box"]
    box = [float(v) for v in box] if box is not None and len(box) == 4 and not np.isnan(box).any() else None
    return {
        "image_id": str(row["image_id"]),
        "path": str(row["path"]),
        "label": str(row["label"]) if row["label"] else None,
        "box": box,
        "model": spec.name,
        "network": spec.network,
    }


def grid_box(
    box: Sequence[float], photo_size: tuple[int, int], grid: tuple[int, int], fit: str
) -> tuple[float, float, float, float] | None:
    """A photo box ``(x0, y0, x1, y1)`` (fractions of the photo) as ``(y0, x0, y1, x1)`` fractions of the
    network grid — the same with ``squash``; with ``crop`` cut to the part the network sees (``None`` if none).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    return box_on_grid((y0, x0, y1, x1), photo_size, grid, fit)


def box_support(support: np.ndarray, box: tuple[float, float, float, float] | None) -> dict[str, Any]:
    """Support inside and outside a box ``(y0, x0, y1, x1)`` (fractions of the map), as :func:`metrics.pointing`.

    ``support_inside``/``support_outside``: mean support per grid pixel; ``outside_share``: the share of the
    positive support outside the box (NaN if nothing supports the class); ``outside_area``: the share of the
    map outside the box (what a map spread evenly would give); ``peak_inside``: the strongest pixel is in it.
    """
    empty = {"support_inside": None, "support_outside": None, "outside_share": None, "outside_area": None,
             "peak_inside": None}  # fmt: skip
    if box is None:
        return empty
    values = np.asarray(support, dtype=np.float64)
    height, width = values.shape
    y0, x0, y1, x1 = box
    inside = np.zeros(values.shape, dtype=bool)
    rows = slice(int(np.floor(y0 * height)), max(int(np.floor(y0 * height)) + 1, int(np.ceil(y1 * height))))
    cols = slice(int(np.floor(x0 * width)), max(int(np.floor(x0 * width)) + 1, int(np.ceil(x1 * width))))
    inside[rows, cols] = True
    check = pointing(values, box)
    positive = np.clip(values, 0, None).sum()
    return {
        "support_inside": float(values[inside].mean()),
        "support_outside": float(values[~inside].mean()) if (~inside).any() else None,
        "outside_share": float(1.0 - check["share_inside"]) if positive > 0 else None,
        "outside_area": float(1.0 - check["box_area"]),
        "peak_inside": bool(check["peak_inside"]),
    }


def _index_fields(result: SensitivityResult, label: str | None, box: Sequence[float] | None, network: Any) -> dict:
    """The index numbers of one map, stored with it (``metadata["audit"]``) so the index is rebuilt fast."""
    label_index = -1
    if label is not None:
        with contextlib.suppress(SensmapError):
            label_index = int(network.class_index(label))
    on_grid = grid_box(box, result.photo_size, result.input_size, result.fit) if box is not None else None
    support = result.support
    return {
        "top_k": [[i, name, p] for i, name, p in result.top_k(10)],
        "label_index": label_index,
        "score": result.score,
        "probability": result.probability,
        "support_max": float(support.max()),
        "support_min": float(support.min()),
        "support_mean": float(support.mean()),
        "grid_box": list(on_grid) if on_grid is not None else None,
        **box_support(support, on_grid),
    }


def run_audit(
    source: str | os.PathLike,
    models: Sequence[str | ModelSpec],
    out_dir: str | os.PathLike,
    *,
    sizes: Sequence[float] = DEFAULT_SIZES,
    stride: float = DEFAULT_STRIDE,
    fill: Any = "gray",
    score: str = "probability",
    fit: str = "squash",
    target: int | str | None = None,
    batch_size: int | None = None,
    max_passes: int | None = None,
    mode: str = "exact",
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    progress: Callable[[AuditProgress], Any] | None = None,
    summary: bool = True,
    retry_errors: bool = False,
    retries: int = 1,
    fail_after: tuple[str, int] | None = None,
) -> AuditStats:
    """Audit a folder or manifest with one or more networks; returns what this call did.

    ``models``: names or ``.keras`` paths (``NAME=SOURCE`` names the folder) or :class:`ModelSpec` from
    :func:`resolve_model`. ``target``: ``None`` (each image's top-1 class), ``"label"`` (each image's label)
    or a class index/name. ``workers``: actors (default: one per GPU; without GPUs one per core up to 4 on a
    local Ray, a quarter of the CPUs of a cluster). ``threads``:
    TensorFlow threads per actor (default on a local CPU run: cores / workers). ``address``: a Ray cluster
    (default: a local Ray with :func:`local_cpus` logical CPUs; a Ray session the caller already started is
    reused and left running). ``progress`` is called after each image. Images with a map are skipped, and so
    are those with an error record unless ``retry_errors``. A worker that dies is retried
    ``retries`` times (a rerun of the pending images); a crash otherwise raises :class:`AuditError` after
    the index is rebuilt — rerun to resume. ``fail_after`` injects a crash (tests).
    """
    started = time.perf_counter()
    settings = AuditSettings.make(
        sizes=sizes, stride=stride, fill=fill, score=score, fit=fit, target=target, batch_size=batch_size,
        max_passes=max_passes, mode=mode,
    )  # fmt: skip
    if isinstance(models, (str, os.PathLike, ModelSpec)):
        models = [models]
    specs = [m if isinstance(m, ModelSpec) else resolve_model(m) for m in models]
    if not specs:
        raise ParameterError("give at least one network (--model)")
    out = Path(os.fspath(out_dir)).expanduser().resolve()
    items = collect_inputs(source, exclude=out)
    if workers is not None and int(workers) < 1:
        raise ParameterError(f"workers must be at least 1, got {workers!r}")
    out.mkdir(parents=True, exist_ok=True)
    stats = AuditStats(out_dir=str(out), images=len(items), models=[s.name for s in specs])
    with _folder_lock(out):
        state = _prepare_folder(out, settings, specs, str(Path(os.fspath(source)).expanduser().resolve()))
        _clean_temporaries(out)
        failure: BaseException | None = None
        before = _snapshot(out, specs)
        try:
            _run_pipeline(items, specs, settings, out, stats, workers, threads, address, num_cpus, progress,
                          retries, fail_after, retry_errors)  # fmt: skip
        except AuditError as exc:
            failure = exc
        finally:
            stats.elapsed_s = time.perf_counter() - started
        # The files are the truth: a crash can leave maps the driver never heard of.
        stats.maps, stats.errors = _written(before, _snapshot(out, specs))
        stats.processed = max(stats.processed, len(items) - stats.skipped - len(_pending(items, specs, out, False)))
        index = rebuild_index(out)
        stats.index_path = str(out / INDEX_FILE)
        errors = index.frame[index.frame["status"] == "error"]
        stats.failed_images = int(errors["image_id"].nunique())
        if summary:
            stats.summary = write_summary(index)
        stats.elapsed_s = time.perf_counter() - started
        state["last_run"] = {"finished": _now(), "complete": failure is None, **stats.as_dict()}
        _atomic_write(out / AUDIT_JSON, json.dumps(state, indent=2, default=json_default).encode("utf-8"))
    if failure is not None:
        raise failure
    return stats


def _snapshot(out: Path, specs: Sequence[ModelSpec]) -> dict[str, int]:
    """``{file: mtime_ns}`` of the map files and error records of these networks."""
    files = {}
    for spec in specs:
        folder = out / MAPS_DIR / f"model={spec.name}"
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(folder):
                if not entry.name.startswith(".") and entry.name.endswith((".npz", ERROR_SUFFIX)):
                    files[f"{spec.name}/{entry.name}"] = entry.stat().st_mtime_ns
    return files


def _written(before: dict[str, int], after: dict[str, int]) -> tuple[int, int]:
    """Map files and error records that are new or rewritten between two snapshots."""
    changed = [name for name, stamp in after.items() if before.get(name) != stamp]
    return sum(n.endswith(".npz") for n in changed), sum(n.endswith(ERROR_SUFFIX) for n in changed)


def _pending(
    items: Sequence[AuditItem], specs: Sequence[ModelSpec], out: Path, retry_errors: bool
) -> list[dict[str, Any]]:
    done = [_done_keys(out / MAPS_DIR / f"model={spec.name}", not retry_errors) for spec in specs]
    rows = []
    for item in items:
        key = item.key
        todo = [k for k in range(len(specs)) if key not in done[k]]
        if todo:
            rows.append(
                {
                    "image_id": item.image_id,
                    "key": key,
                    "path": item.path,
                    "label": item.label or "",
                    "box": np.array(item.box if item.box else [np.nan] * 4, dtype=np.float64),
                    "problem": item.problem or "",
                    "todo": ",".join(str(k) for k in todo),
                }
            )
    return rows


def _run_pipeline(
    items, specs, settings, out, stats, workers, threads, address, num_cpus, progress, retries, fail_after,
    retry_errors,
) -> None:  # fmt: skip
    rows = _pending(items, specs, out, retry_errors)
    stats.skipped = len(items) - len(rows)
    if not rows:
        return
    total = len(rows)
    with _ray_session(address, workers, num_cpus) as where, _quiet_ray_data():
        import ray

        stats.cluster = where
        gpus = float(ray.cluster_resources().get("GPU", 0))
        cluster_cpus = float(ray.cluster_resources().get("CPU", 1)) if where.startswith("Ray cluster") else None
        stats.workers = count = max(1, min(int(workers or _default_workers(gpus, cluster_cpus)), total))
        if threads is None and cluster_cpus is None and gpus < 1:
            threads = max(1, (os.cpu_count() or 1) // count)
        pipeline_started = time.perf_counter()
        first_done: float | None = None
        done = errors = 0
        if progress is not None:
            progress(AuditProgress(0, total, stats.skipped, 0, 0.0, 0.0, None))
        # Workers write only while this run's token exists: once the driver gives up (a crash, Ctrl-C), a worker
        # still busy in a Ray session the caller keeps alive discards its map instead of writing behind our back.
        token = out / f".run-{uuid.uuid4().hex[:12]}"
        token.touch()
        try:
            for attempt in range(int(retries) + 1):
                stats.attempts = attempt + 1
                if attempt:
                    token.unlink()  # the last attempt's workers stop writing
                    token = out / f".run-{uuid.uuid4().hex[:12]}"
                    token.touch()
                    rows = _pending(items, specs, out, retry_errors=False)
                    if not rows:
                        break
                dataset = _build_dataset(rows, specs, settings, out, count, gpus, threads,
                                         fail_after if attempt == 0 else None, token)  # fmt: skip
                try:
                    for result in dataset.iter_rows():
                        now = time.perf_counter()
                        first_done = first_done or now
                        done += 1
                        stats.processed += 1
                        stats.maps += int(result["maps"])
                        stats.errors += int(result["errors"])
                        errors += int(result["errors"]) > 0
                        rate = _rate(done, now - pipeline_started, now - first_done)
                        stats.pipeline_s = now - pipeline_started
                        stats.steady_images_per_s = rate
                        if progress is not None:
                            eta = (total - done) / rate if rate > 0 else None
                            elapsed = now - pipeline_started
                            progress(AuditProgress(min(done, total), total, stats.skipped, errors, elapsed, rate, eta))
                    break
                except Exception as exc:  # noqa: BLE001 - Ray wraps worker failures in many types
                    if _is_system_failure(exc) and attempt < int(retries):
                        log.warning("a worker died (%s); resuming the pending images", _first_line(exc))
                        continue
                    left = len(_pending(items, specs, out, retry_errors=False))
                    raise AuditError(
                        f"{_first_line(exc)} — {total - left} of the {total} images to do are done, {left} are left. "
                        "Maps written so far are kept; run the same command again to resume."
                    ) from None
        finally:
            with contextlib.suppress(OSError):
                token.unlink()


def _rate(done: int, elapsed: float, since_first: float) -> float:
    """Images per second: after the first image once that spans ≥ 2 images and ≥ 1 s, else overall."""
    if done >= 3 and since_first >= 1.0:
        return (done - 1) / since_first
    return done / max(elapsed, 1e-9)


_OWN_ERROR = re.compile(r"(?:sensmap\.errors\.\w+|sensmap\.audit\._InjectedCrash|ModelError|WeightsError): (.+)")


def _first_line(exc: BaseException) -> str:
    """The message that matters in a Ray error: sensmap's own error when a worker raised one, else the first line."""
    text = str(exc).strip()
    for line in reversed(text.splitlines()):
        found = _OWN_ERROR.search(line)
        if found:
            return found.group(1).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _is_system_failure(exc: BaseException) -> bool:
    from ray import exceptions as ray_exceptions

    system = tuple(
        getattr(ray_exceptions, name)
        for name in ("RayActorError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OwnerDiedError")
        if hasattr(ray_exceptions, name)
    )
    return isinstance(exc, system) and "creation task" not in str(exc)  # a worker that cannot start stays so


def _build_dataset(rows, specs, settings, out, workers, gpus, threads, fail_after, token):
    import ray.data

    grids = sorted({tuple(spec.input_size) for spec in specs})
    blocks = max(1, min(len(rows), ROWS_PER_BLOCK_MAX_BLOCKS))
    dataset = ray.data.from_items(rows, override_num_blocks=blocks)
    # Decode tasks ask for half a CPU: cheap, several run beside the actors, and their different resources keep
    # Ray Data from fusing them into the actors (decoding stays off the GPU workers).
    dataset = dataset.map_batches(
        _decode_rows, fn_kwargs={"grids": grids, "fit": settings.fit}, batch_size=4, num_cpus=0.5
    )
    with warnings.catch_warnings():
        # max_restarts has no named parameter in Ray 2.60 (ray_remote_args are deprecated from 2.64 on)
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        return _actor_stage(dataset, len(rows), specs, settings, out, workers, gpus, threads, fail_after, token)


def _actor_stage(dataset, count, specs, settings, out, workers, gpus, threads, fail_after, token):
    import ray.data

    return dataset.map_batches(
        AuditWorker,
        fn_constructor_kwargs={
            "specs": list(specs),
            "settings": settings,
            "out_dir": str(out),
            "threads": threads,
            "fail_after": fail_after,
            "run_token": str(token),
        },
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=max(1, min(workers, count))),
        num_cpus=1,
        num_gpus=1 if gpus >= 1 else 0,
        max_restarts=0,  # a dead actor fails fast; the driver resumes the pending images (retries)
    )


# --------------------------------------------------------------------------- the index

_INDEX_COLUMNS: list[tuple[str, str]] = [
    ("image_id", "string"), ("model", "string"), ("network", "string"), ("status", "string"), ("error", "string"),
    ("stage", "string"), ("label", "string"), ("path", "string"), ("predicted", "int64"),
    ("predicted_name", "string"), ("predicted_probability", "float64"), ("correct", "bool"),
    ("label_index", "int64"), ("target", "int64"), ("target_name", "string"), ("score", "float64"),
    ("probability", "float64"), ("score_kind", "string"), ("passes", "int64"), ("top_k_indices", "list<int64>"),
    ("top_k_names", "list<string>"), ("top_k_probabilities", "list<float64>"), ("x0", "float64"), ("y0", "float64"),
    ("x1", "float64"), ("y1", "float64"), ("support_inside", "float64"), ("support_outside", "float64"),
    ("outside_share", "float64"), ("outside_area", "float64"), ("peak_inside", "bool"), ("support_max", "float64"),
    ("support_min", "float64"), ("support_mean", "float64"), ("photo_height", "int64"), ("photo_width", "int64"),
    ("grid_height", "int64"), ("grid_width", "int64"), ("seconds", "float64"), ("device", "string"),
    ("computed_at", "string"), ("file", "string"),
]  # fmt: skip


def _index_schema():
    import pyarrow as pa

    types = {
        "string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(),
        "list<int64>": pa.list_(pa.int64()), "list<string>": pa.list_(pa.string()),
        "list<float64>": pa.list_(pa.float64()),
    }  # fmt: skip
    return pa.schema([(name, types[kind]) for name, kind in _INDEX_COLUMNS])


def _ok_row(meta: dict[str, Any], file: str, top_k: int) -> dict[str, Any]:
    audit = meta["metadata"]["audit"]
    top = audit.get("top_k", [])[:top_k]
    box = audit.get("box") or [None] * 4
    label_index = int(audit.get("label_index", -1))
    predicted = int(top[0][0]) if top else None
    return {
        "image_id": audit["image_id"],
        "model": audit["model"],
        "network": audit.get("network") or meta.get("model_name"),
        "status": "ok",
        "label": audit.get("label"),
        "path": audit.get("path"),
        "predicted": predicted,
        "predicted_name": top[0][1] if top else None,
        "predicted_probability": float(top[0][2]) if top else None,
        "correct": (predicted == label_index) if label_index >= 0 and predicted is not None else None,
        "label_index": label_index,
        "target": int(meta["target"]),
        "target_name": meta.get("target_name"),
        "score": _finite(audit.get("score")),
        "probability": _finite(audit.get("probability")),
        "score_kind": meta.get("score_kind"),
        "passes": int(meta.get("passes", 0)),
        "top_k_indices": [int(t[0]) for t in top],
        "top_k_names": [str(t[1]) for t in top],
        "top_k_probabilities": [float(t[2]) for t in top],
        **dict(zip(BOX_COLUMNS, box, strict=True)),
        **{
            name: _finite(audit.get(name))
            for name in (
                "support_inside",
                "support_outside",
                "outside_share",
                "outside_area",
                "support_max",
                "support_min",
                "support_mean",
                "seconds",
            )
        },  # fmt: skip
        "peak_inside": audit.get("peak_inside"),
        "photo_height": int(meta["photo_size"][0]),
        "photo_width": int(meta["photo_size"][1]),
        "grid_height": int(meta["input_size"][0]),
        "grid_width": int(meta["input_size"][1]),
        "device": audit.get("device"),
        "computed_at": audit.get("computed_at"),
        "file": file,
    }


def _error_row(record: dict[str, Any], file: str, model: str) -> dict[str, Any]:
    box = record.get("box") or [None] * 4
    return {
        "image_id": record.get("image_id"),
        "model": record.get("model") or model,
        "network": record.get("network"),
        "status": "error",
        "error": record.get("error"),
        "stage": record.get("stage"),
        "label": record.get("label"),
        "path": record.get("path"),
        **dict(zip(BOX_COLUMNS, box, strict=True)),
        "computed_at": record.get("at"),
        "file": file,
    }


def _read_map_meta(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["metadata"]))


def rebuild_index(folder: str | os.PathLike, *, write: bool = True, top_k: int = TOP_K) -> AuditIndex:
    """Rebuild the index from the map and error files (``write``: also save ``index.parquet``).

    A map file that cannot be read is renamed ``*.npz.corrupt`` (when writing) and listed as an error,
    so the next run computes it again.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(os.fspath(folder)).expanduser().resolve()
    rows: list[dict[str, Any]] = []
    for model_dir in sorted((root / MAPS_DIR).glob("model=*")):
        model = model_dir.name.split("=", 1)[1]
        names = sorted(os.listdir(model_dir))
        have = {n[:-4] for n in names if n.endswith(".npz")}
        for name in names:
            path = model_dir / name
            file = path.relative_to(root).as_posix()
            if name.startswith("."):
                continue
            if name.endswith(".npz"):
                try:
                    rows.append(_ok_row(_read_map_meta(path), file, top_k))
                except Exception as exc:  # noqa: BLE001 - a damaged file is reported, never fatal
                    if write:
                        with contextlib.suppress(OSError):
                            os.replace(path, path.with_name(name + ".corrupt"))
                    message = f"unreadable map file {name} ({_first_line(exc)}); the next run recomputes it"
                    rows.append({"image_id": unquote(name[:-4]), "model": model, "status": "error", "stage": "index",
                                 "error": message, "file": file})  # fmt: skip
            elif name.endswith(ERROR_SUFFIX) and name[: -len(ERROR_SUFFIX)] not in have:
                try:
                    record = json.loads(path.read_text("utf-8"))
                except (OSError, ValueError):
                    record = {"error": f"unreadable error record {name}"}
                rows.append(_error_row(record, file, model))
    schema = _index_schema()
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    index_id = uuid.uuid4().hex
    table = pa.table(columns, schema=schema).replace_schema_metadata({"sensmap_index_id": index_id})
    if write:
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        _atomic_write(root / INDEX_FILE, buffer.getvalue())
    return _make_index(root, table)


# --------------------------------------------------------------------------- opening an audit (dashboard API)


@dataclass
class AuditIndex:
    """An opened audit folder: the index as a pandas DataFrame plus the folder's settings and networks."""

    root: Path
    frame: pd.DataFrame  # one row per image and network; see the README's "Dataset audit" section
    settings: dict[str, Any]  # the map settings (sizes, stride, fill, score, fit, target)
    models: dict[str, dict[str, Any]]  # folder name → network, source, weights, input size, fingerprint
    last_run: dict[str, Any]  # what the last run did (images, maps, errors, images/s, …)
    index_id: str

    @property
    def model_names(self) -> list[str]:
        names = list(self.models)
        names += sorted(set(self.frame["model"].dropna()) - set(names)) if len(self.frame) else []
        return names

    def row(self, image_id: str, model: str) -> dict[str, Any]:
        """The index row of one image and network (``KeyError`` if there is none)."""
        frame = self.frame
        found = frame[(frame["image_id"] == image_id) & (frame["model"] == model)]
        if found.empty:
            raise KeyError(f"no map of {image_id!r} by {model!r} in {self.root}")
        return found.iloc[0].to_dict()


def _to_pandas(table) -> pd.DataFrame:
    """The index as pandas with nullable integers and booleans (error rows have no class, no box…)."""
    import pandas as pd
    import pyarrow as pa

    mapping = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    return table.to_pandas(types_mapper=mapping.get)


def _make_index(root: Path, table) -> AuditIndex:
    state = _read_json(root / AUDIT_JSON) or {}
    metadata = table.schema.metadata or {}
    return AuditIndex(
        root=root,
        frame=_to_pandas(table),
        settings=state.get("settings", {}),
        models=state.get("models", {}),
        last_run=state.get("last_run", {}),
        index_id=metadata.get(b"sensmap_index_id", b"").decode(),
    )


def open_audit(folder: str | os.PathLike, *, refresh: bool = False) -> AuditIndex:
    """Open an audit folder: its ``index.parquet`` (rebuilt in memory when missing, or with ``refresh`` —
    e.g. while a run is still writing maps). Read-only: nothing in the folder is changed.
    """
    import pyarrow.parquet as pq

    root = Path(os.fspath(folder)).expanduser().resolve()
    if not (root / AUDIT_JSON).is_file() and not (root / MAPS_DIR).is_dir():
        raise ParameterError(f"{root} is not a sensmap audit folder (no {AUDIT_JSON})")
    path = root / INDEX_FILE
    if refresh or not path.is_file():
        return rebuild_index(root, write=False)
    try:
        return _make_index(root, pq.read_table(path))
    except Exception:  # noqa: BLE001 - a damaged index is rebuilt from the files
        return rebuild_index(root, write=False)


def _as_index(index: AuditIndex | str | os.PathLike) -> AuditIndex:
    return index if isinstance(index, AuditIndex) else open_audit(index)


def _one_or_many(value: Any) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return [value]


def filter_index(
    index: AuditIndex | str | os.PathLike,
    *,
    model: str | Sequence[str] | None = None,
    status: str | Sequence[str] | None = None,
    label: str | Sequence[str] | None = None,
    predicted: str | int | Sequence[str | int] | None = None,
    text: str | None = None,
    has_box: bool | None = None,
    correct: bool | None = None,
    min_outside_share: float | None = None,
) -> pd.DataFrame:
    """Rows of the index matching every filter given (one value or a list each).

    ``predicted``: class names or indices of the top-1 class; ``text``: case-insensitive part of the image
    id, path, label or predicted class; ``correct``: top-1 equals the label (images whose label is a class
    of the network); ``min_outside_share``: at least this share of the support outside the box.
    """
    frame = _as_index(index).frame
    mask = np.ones(len(frame), dtype=bool)
    for column, wanted in (("model", model), ("status", status), ("label", label)):
        values = _one_or_many(wanted)
        if values is not None:
            mask &= frame[column].isin(values).to_numpy()
    values = _one_or_many(predicted)
    if values is not None:
        names = [v for v in values if isinstance(v, str)]
        numbers = [int(v) for v in values if not isinstance(v, str)]
        mask &= (frame["predicted_name"].isin(names) | frame["predicted"].isin(numbers)).to_numpy()
    if text:
        needle = str(text).lower()
        hit = np.zeros(len(frame), dtype=bool)
        for column in ("image_id", "path", "label", "predicted_name"):
            hit |= frame[column].fillna("").astype(str).str.lower().str.contains(needle, regex=False).to_numpy()
        mask &= hit
    if has_box is not None:
        mask &= (frame["x0"].notna() == bool(has_box)).to_numpy()
    if correct is not None:
        mask &= (frame["correct"] == bool(correct)).fillna(False).to_numpy(dtype=bool)
    if min_outside_share is not None:
        mask &= (frame["outside_share"] >= float(min_outside_share)).fillna(False).to_numpy(dtype=bool)
    return frame[mask]


def shortcut_suspects(
    index: AuditIndex | str | os.PathLike, model: str | None = None, top: int | None = SUMMARY_SUSPECTS
) -> pd.DataFrame:
    """Images with a box ranked by the share of their support outside the box (highest first)."""
    frame = filter_index(index, model=model, status="ok")
    frame = frame[frame["outside_share"].notna()]
    frame = frame.sort_values(["outside_share", "support_max"], ascending=[False, False], kind="stable")
    return frame if top is None else frame.head(int(top))


def class_counts(index: AuditIndex | str | os.PathLike, model: str, by: str = "predicted") -> list[tuple[str, int]]:
    """``(class or label, images)`` for one network, most frequent first (``by``: "predicted" or "label")."""
    column = _group_column(by)
    frame = filter_index(index, model=model, status="ok")
    counts = frame[column].dropna().value_counts(sort=False)
    return sorted(((str(k), int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0]))


def _group_column(by: str) -> str:
    if by not in ("predicted", "label"):
        raise ParameterError(f"group by 'predicted' or 'label', got {by!r}")
    return "predicted_name" if by == "predicted" else "label"


def load_image_result(index: AuditIndex | str | os.PathLike, image_id: str, model: str) -> SensitivityResult:
    """The full :class:`SensitivityResult` of one image and network (raises if it failed or is missing)."""
    audit = _as_index(index)
    row = audit.row(image_id, model)
    if row["status"] != "ok":
        raise SensmapError(f"{image_id} has no map by {model}: {row.get('error')}")
    return SensitivityResult.load(audit.root / row["file"])


@dataclass
class ClassMean:
    """The mean support map (network grid, score units) of one class or label of one network."""

    model: str
    by: str  # "predicted" or "label"
    value: str  # the class name or label
    mean: np.ndarray  # (H, W) float32
    count: int
    image_ids: tuple[str, ...]
    score_kind: str = "probability"

    @property
    def title(self) -> str:
        return f"{self.value} ({self.count})"


def _row_map(root: Path, row: Any, by: str) -> np.ndarray:
    """The map a row contributes: support of its predicted class (``by="predicted"``), or of its label's
    class when the label is one of the network's classes, else of its target (``by="label"``)."""
    if by == "predicted":
        wanted = int(row["predicted"])
    else:
        label_index = row["label_index"]
        wanted = int(label_index) if _present(label_index) and int(label_index) >= 0 else int(row["target"])
    path = root / row["file"]
    if wanted == int(row["target"]):
        with np.load(path, allow_pickle=False) as data:
            return np.asarray(data["support"], dtype=np.float64)
    return SensitivityResult.load(path).maps_for(wanted)[1].astype(np.float64)


def _present(value: Any) -> bool:
    import pandas as pd

    return value is not None and not pd.isna(value)


def _means_for(audit: AuditIndex, model: str, by: str, values: Sequence[str]) -> list[ClassMean]:
    column = _group_column(by)
    frame = filter_index(audit, model=model, status="ok")
    score_kind = str(frame["score_kind"].iloc[0]) if len(frame) else "probability"
    out = []
    for value in values:
        rows = frame[frame[column] == value]
        if rows.empty:
            raise ParameterError(f"no mapped image of {model} with {by} {value!r}")
        total = None
        for _, row in rows.iterrows():
            values_map = _row_map(audit.root, row, by)
            total = values_map if total is None else total + values_map
        mean = (total / len(rows)).astype(np.float32)
        out.append(ClassMean(model, by, str(value), mean, len(rows), tuple(rows["image_id"]), score_kind))
    return out


def _cached_means(audit: AuditIndex) -> dict[tuple[str, str, str], ClassMean]:
    path = audit.root / MEANS_FILE
    if not audit.index_id or not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            table = json.loads(str(data["table"]))
            if table.get("index_id") != audit.index_id:
                return {}
            return {
                (e["model"], e["by"], e["value"]): ClassMean(
                    e["model"], e["by"], e["value"], np.array(data[e["key"]]), e["count"], tuple(e["image_ids"]),
                    e.get("score_kind", "probability"),
                )
                for e in table["means"]
            }  # fmt: skip
    except (OSError, ValueError, KeyError):
        return {}


def class_mean_map(
    index: AuditIndex | str | os.PathLike, model: str, value: str | int, *, by: str = "predicted"
) -> ClassMean:
    """Where ``model`` looks for a class across the dataset: the mean support map on the network grid.

    ``by="predicted"``: over the images whose top-1 class is ``value`` (a name or index), the map of that
    class. ``by="label"``: over the images labelled ``value``, the map of the label's class when it is one
    of the network's classes, else of each image's target. Served from ``class_means.npz`` when the
    summary of the same index holds it.
    """
    audit = _as_index(index)
    if by == "predicted" and not isinstance(value, str):
        names = filter_index(audit, model=model, status="ok", predicted=int(value))["predicted_name"]
        if names.empty:
            raise ParameterError(f"no mapped image of {model} has top-1 class {value}")
        value = str(names.iloc[0])
    cached = _cached_means(audit).get((model, by, str(value)))
    if cached is not None:
        return cached
    return _means_for(audit, model, by, [str(value)])[0]


def class_means(
    index: AuditIndex | str | os.PathLike, model: str, by: str = "predicted", top: int | None = SUMMARY_CLASSES
) -> list[ClassMean]:
    """The mean maps of the ``top`` most frequent classes (or labels) of one network, most frequent first."""
    audit = _as_index(index)
    values = [value for value, _ in class_counts(audit, model, by)]
    values = values if top is None else values[: int(top)]
    cached = _cached_means(audit)
    missing = [v for v in values if (model, by, v) not in cached]
    fresh = {m.value: m for m in _means_for(audit, model, by, missing)} if missing else {}
    return [cached.get((model, by, v)) or fresh[v] for v in values]


# --------------------------------------------------------------------------- figures and the summary


def _unit(score_kind: str) -> tuple[float, str]:
    return (100.0, "pp") if score_kind == "probability" else (1.0, "log-odds")


def class_means_figure(means: Sequence[ClassMean], *, limit: float | None = None, columns: int = 6) -> go.Figure:
    """Plotly grid of mean maps (network grid) on one shared symmetric scale (red supports, blue inhibits)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from .render import COLOUR_CAPTION, plain, support_heatmap, symmetric_limit

    if not means:
        fig = go.Figure()
        fig.update_layout(title="no mapped images", template="plotly_white")
        return fig
    factor, unit = _unit(means[0].score_kind)
    bound = symmetric_limit(*(m.mean for m in means), limit=limit) * factor
    cols = max(1, min(int(columns), len(means)))
    rows = math.ceil(len(means) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[plain(m.title) for m in means],
                        horizontal_spacing=0.02, vertical_spacing=0.08 / max(1, rows / 3))  # fmt: skip
    for i, mean in enumerate(means):
        trace = support_heatmap(mean.mean * factor, mean.mean.shape, bound, unit, showscale=i == 0)
        fig.add_trace(trace, row=i // cols + 1, col=i % cols + 1)
    hidden = dict(showgrid=False, zeroline=False, showticklabels=False, ticks="")
    fig.update_xaxes(constrain="domain", **hidden)
    fig.update_yaxes(autorange="reversed", constrain="domain", **hidden)
    for i in range(len(means)):
        suffix = "" if i == 0 else str(i + 1)
        fig.update_layout({f"yaxis{suffix}": dict(scaleanchor=f"x{suffix}")})
    by = "predicted class" if means[0].by == "predicted" else "label"
    fig.update_layout(
        title=dict(text=f"{plain(means[0].model)}: mean support map per {by} (network grid)<br>"
                        f"<sup>{COLOUR_CAPTION}</sup>", x=0.01, xanchor="left"),
        template="plotly_white", margin=dict(l=10, r=10, t=90, b=10), height=110 + 190 * rows,
    )  # fmt: skip
    return fig


def _map_rgb(values: np.ndarray, limit: float) -> np.ndarray:
    from .render import diverging_rgba

    rgb, _ = diverging_rgba(values, limit)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _suspect_thumbnail(audit: AuditIndex, row: Any, side: int = 200) -> np.ndarray | None:
    """The photo (≤ ``side`` px) with the map blended on it and the box drawn in green; ``None`` if unreadable."""
    from PIL import Image, ImageDraw

    from .images import map_to_photo
    from .render import blend_overlay, symmetric_limit

    try:
        photo = load_image(str(row["path"]))
        with np.load(audit.root / row["file"], allow_pickle=False) as data:
            support = np.array(data["support"])
    except Exception:  # noqa: BLE001 - a moved photo only loses its thumbnail
        return None
    height, width = photo.pixels.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    shown = np.asarray(Image.fromarray(np.ascontiguousarray(photo.pixels)).resize(size, Image.Resampling.LANCZOS))
    fit = audit.settings.get("fit", "squash")
    blended = blend_overlay(shown, map_to_photo(support, shown.shape[:2], fit), symmetric_limit(support))
    image = Image.fromarray(blended)
    h, w = shown.shape[:2]
    x0, y0, x1, y1 = (float(row[c]) for c in BOX_COLUMNS)
    ImageDraw.Draw(image).rectangle([x0 * w, y0 * h, x1 * w - 1, y1 * h - 1], outline=(0, 200, 0), width=2)
    return np.asarray(image)


def write_summary(index: AuditIndex | str | os.PathLike, *, top: int = SUMMARY_CLASSES,
                  suspects: int = SUMMARY_SUSPECTS) -> dict[str, str]:  # fmt: skip
    """Write ``summary.png``, ``summary.html`` and ``class_means.npz`` next to the index; returns their paths."""
    audit = _as_index(index)
    entries: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    sections = []
    for model in audit.model_names:
        groups = {by: class_means(audit, model, by, top) if class_counts(audit, model, by) else []
                  for by in ("predicted", "label")}  # fmt: skip
        for by, means in groups.items():
            for mean in means:
                key = f"mean_{len(entries)}"
                arrays[key] = mean.mean
                entries.append({"key": key, "model": model, "by": by, "value": mean.value, "count": mean.count,
                                "image_ids": list(mean.image_ids), "score_kind": mean.score_kind})  # fmt: skip
        sections.append((model, groups, shortcut_suspects(audit, model, suspects)))
    buffer = io.BytesIO()
    table = {"index_id": audit.index_id, "means": entries}
    np.savez_compressed(buffer, table=np.array(json.dumps(table)), **arrays)
    _atomic_write(audit.root / MEANS_FILE, buffer.getvalue())
    _atomic_write(audit.root / SUMMARY_PNG, _summary_png(audit, sections))
    _atomic_write(audit.root / SUMMARY_HTML, _summary_html(audit, sections).encode("utf-8"))
    return {name: str(audit.root / name) for name in (SUMMARY_PNG, SUMMARY_HTML, MEANS_FILE)}


def _counts_line(audit: AuditIndex, model: str) -> str:
    frame = audit.frame[audit.frame["model"] == model]
    ok = int((frame["status"] == "ok").sum())
    errors = int((frame["status"] == "error").sum())
    correct = frame["correct"].dropna()
    accuracy = f", top-1 = label on {correct.mean():.0%} of {len(correct)} labelled" if len(correct) else ""
    network = audit.models.get(model, {}).get("network", model)
    return f"{network}: {ok} images mapped, {errors} errors{accuracy}"


_PNG_TILE = 132
_PNG_MARGIN = 24
_PNG_WIDTH = 1280


def _summary_png(audit: AuditIndex, sections) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    from .images import to_png_bytes
    from .render import symmetric_limit
    from .report import ascii_text

    def font(size: int):
        return ImageFont.load_default(size=size)

    per_row = (_PNG_WIDTH - 2 * _PNG_MARGIN) // (_PNG_TILE + 12)
    blocks: list[tuple[str, Any]] = [("title", None)]
    for model, groups, suspects in sections:
        blocks.append(("model", model))
        for by, means in groups.items():
            if means:
                blocks.append(("means", (by, means)))
        if len(suspects):
            blocks.append(("suspects", suspects))
    height = _PNG_MARGIN
    for kind, payload in blocks:
        if kind in ("title", "model"):
            height += 56
        elif kind == "means":
            height += 40 + math.ceil(len(payload[1]) / per_row) * (_PNG_TILE + 44) + 30
        else:
            height += 40 + math.ceil(len(payload) / per_row) * (_PNG_TILE + 44)
    canvas = Image.new("RGB", (_PNG_WIDTH, height + _PNG_MARGIN), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)

    def text(xy, value, size=14, fill=(33, 37, 41), width=None):
        line = ascii_text(value)
        if width is not None:
            while line and draw.textlength(line, font=font(size)) > width:
                line = line[:-2] + "…" if len(line) > 2 else ""
        draw.text(xy, line.replace("…", "..."), font=font(size), fill=fill)

    y = _PNG_MARGIN
    for kind, payload in blocks:
        if kind == "title":
            text((_PNG_MARGIN, y), f"sensmap dataset audit: {audit.root.name}", 26)
            settings = audit.settings
            text(
                (_PNG_MARGIN, y + 32),
                f"sizes {settings.get('sizes')}, stride {settings.get('stride')}, fill "
                f"{settings.get('fill')}, score {settings.get('score')}, fit {settings.get('fit')}. Red: covering "
                "lowers the class score (the area supports it); blue: covering raises it.",
                13,
                (108, 117, 125),
            )
            y += 56
        elif kind == "model":
            draw.line([(_PNG_MARGIN, y), (_PNG_WIDTH - _PNG_MARGIN, y)], fill=(206, 212, 218))
            text((_PNG_MARGIN, y + 10), _counts_line(audit, payload), 20)
            y += 56
        elif kind == "means":
            by, means = payload
            factor, unit = _unit(means[0].score_kind)
            limit = symmetric_limit(*(m.mean for m in means))
            scale = f"-{limit * factor:.1f}..+{limit * factor:.1f} {unit}"
            text(
                (_PNG_MARGIN, y),
                f"Mean support map per {'predicted class' if by == 'predicted' else 'label'} "
                f"(network grid; colour scale {scale}; most frequent first)",
                16,
            )
            y += 40
            for i, mean in enumerate(means):
                x = _PNG_MARGIN + (i % per_row) * (_PNG_TILE + 12)
                top = y + (i // per_row) * (_PNG_TILE + 44)
                tile = Image.fromarray(_map_rgb(mean.mean, limit))
                scale = _PNG_TILE / max(tile.size)
                tile = tile.resize((max(1, round(tile.width * scale)), max(1, round(tile.height * scale))),
                                   Image.Resampling.BILINEAR)  # fmt: skip
                canvas.paste(tile, (x, top))
                draw.rectangle([x, top, x + tile.width - 1, top + tile.height - 1], outline=(206, 212, 218))
                text((x, top + _PNG_TILE + 4), mean.value, 13, width=_PNG_TILE)
                text((x, top + _PNG_TILE + 21), f"{mean.count} images, peak {mean.mean.max() * factor:+.1f} {unit}",
                     11, (108, 117, 125), width=_PNG_TILE)  # fmt: skip
            y += math.ceil(len(means) / per_row) * (_PNG_TILE + 44) + 30
        else:
            text((_PNG_MARGIN, y), "Shortcut suspects: share of the positive support outside the box (green)", 16)
            y += 40
            for i, (_, row) in enumerate(payload.iterrows()):
                x = _PNG_MARGIN + (i % per_row) * (_PNG_TILE + 12)
                top = y + (i // per_row) * (_PNG_TILE + 44)
                thumb = _suspect_thumbnail(audit, row, _PNG_TILE)
                if thumb is not None:
                    canvas.paste(Image.fromarray(thumb), (x, top))
                text((x, top + _PNG_TILE + 4), row["image_id"], 13, width=_PNG_TILE)
                text((x, top + _PNG_TILE + 21), f"{row['outside_share']:.0%} outside ({row['outside_area']:.0%} area)",
                     11, (108, 117, 125), width=_PNG_TILE)  # fmt: skip
            y += math.ceil(len(payload) / per_row) * (_PNG_TILE + 44)
    return to_png_bytes(np.asarray(canvas))


_HTML_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #212529; margin: 2rem auto;
       max-width: 1280px; padding: 0 1rem; } .muted { color: #6c757d; } section { margin-bottom: 2.5rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; } td, th { padding: 0.2rem 0.7rem 0.2rem 0;
text-align: left; vertical-align: middle; border-bottom: 1px solid #dee2e6; } img.thumb { max-height: 120px; }
"""


def _html_table(rows: Sequence[Sequence[Any]], header: Sequence[str], raw: Sequence[int] = ()) -> str:
    def cell(i: int, value: Any) -> str:
        return str(value) if i in raw else html.escape("" if value is None else str(value))

    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{cell(i, v)}</td>" for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _summary_html(audit: AuditIndex, sections) -> str:
    import plotly.io as pio

    from .render import COLOUR_CAPTION, jpeg_data_uri

    first = True

    def embed(fig) -> str:
        nonlocal first
        fragment = pio.to_html(fig, include_plotlyjs=first, full_html=False,
                               config={"displaylogo": False, "responsive": True})  # fmt: skip
        first = False
        return fragment

    run = audit.last_run
    settings = audit.settings
    parts = [
        f"<h1>sensmap dataset audit: {html.escape(audit.root.name)}</h1>",
        f'<p class="muted">Generated {_now()} by sensmap {html.escape(__version__)}. Colour key: '
        f"{html.escape(COLOUR_CAPTION)}. Maps are on each network's input grid.</p>",
        _html_table([(k, json.dumps(v)) for k, v in settings.items()], ("setting", "value")),
    ]
    if run:
        parts.append(_html_table([(k, run.get(k)) for k in ("images", "processed", "skipped", "maps", "errors",
                                  "workers", "cluster", "images_per_s", "finished") if k in run],
                                 ("last run", "")))  # fmt: skip
    for model, groups, suspects in sections:
        parts.append(f"<section><h2>{html.escape(_counts_line(audit, model))}</h2>")
        for by, means in groups.items():
            if not means:
                continue
            parts.append(embed(class_means_figure(means)))
            counts = class_counts(audit, model, by)
            extra = ""
            if len(counts) > len(means):
                extra = f" (maps above: the {len(means)} most frequent of {len(counts)})"
            parts.append(f"<details><summary>Images per {'predicted class' if by == 'predicted' else 'label'}"
                         f"{html.escape(extra)}</summary>{_html_table(counts, (by, 'images'))}</details>")  # fmt: skip
        if len(suspects):
            rows = []
            for _, row in suspects.iterrows():
                thumb = _suspect_thumbnail(audit, row)
                image = f'<img class="thumb" src="{jpeg_data_uri(thumb)}" alt="">' if thumb is not None else ""
                rows.append((image, row["image_id"], row["label"], row["predicted_name"],
                             f"{row['predicted_probability']:.0%}", f"{row['outside_share']:.0%}",
                             f"{row['outside_area']:.0%}", "yes" if row["peak_inside"] else "no"))  # fmt: skip
            parts.append("<h3>Shortcut suspects: most of the support outside the box</h3>")
            parts.append('<p class="muted">Share of the positive support outside the box (green), against the share '
                         "of the image outside it (what an evenly spread map would give).</p>")  # fmt: skip
            parts.append(_html_table(rows, ("", "image", "label", "top-1", "p", "support outside", "area outside",
                                            "peak in box"), raw=(0,)))  # fmt: skip
        errors = audit.frame[(audit.frame["model"] == model) & (audit.frame["status"] == "error")]
        if len(errors):
            rows = [(r["image_id"], r["path"], r["error"]) for _, r in errors.head(100).iterrows()]
            parts.append(f"<h3>Errors ({len(errors)})</h3>" + _html_table(rows, ("image", "path", "error")))
        parts.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>sensmap audit {html.escape(audit.root.name)}</title><style>{_HTML_CSS}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )


# --------------------------------------------------------------------------- audit folders for the dashboard


def audits_dir_from_env() -> Path | None:
    """The operator's folder of audits, from ``SENSMAP_AUDITS_DIR`` (trusted: the browser never names paths)."""
    value = os.environ.get("SENSMAP_AUDITS_DIR", "").strip()
    return Path(value).expanduser() if value else None


def list_audit_folders(root: str | os.PathLike) -> list[Path]:
    """Audit folders (holding ``audit.json``) at ``root`` itself or one level below it, by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [root] if (root / AUDIT_JSON).is_file() else []
    found += sorted(child for child in root.iterdir() if child.is_dir() and (child / AUDIT_JSON).is_file())
    return found
