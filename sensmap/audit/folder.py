"""The audit folder's state: its layout, ``audit.json`` (map settings and networks, checked on resume), the
lock, atomic writes, which maps are done, and the audit folders the dashboard may open."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import ParameterError, SensmapError
from ..fills import fill_label, normalize_fill
from ..images import FIT_METHODS
from ..result import json_default, resolve_mode_engine, validate_score_kind
from ..windows import DEFAULT_SIZES, DEFAULT_STRIDE, validate_sizes, validate_stride
from .failures import AuditError

if TYPE_CHECKING:  # pragma: no cover
    from .networks import ModelSpec

FORMAT_VERSION = 1

# The folder's layout (see the package docstring).
AUDIT_JSON = "audit.json"
INDEX_FILE = "index.parquet"
PAIRS_FILE = "pairs.parquet"
MEANS_FILE = "class_means.npz"
SUMMARY_PNG = "summary.png"
SUMMARY_HTML = "summary.html"
MAPS_DIR = "maps"
LOCK_FILE = ".audit.lock"
ERROR_SUFFIX = ".error.json"

TARGET_LABEL = "label"  # --target label: explain each image's own label class


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


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SensmapError(f"cannot read {path}: {exc}") from None


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
    mode: str = "exact"  # which windows: exact (all) or fast (approximate); "incremental" arrives as exact below
    engine: str = "dense"  # how each window is computed: dense, incremental or auto (never changes the maps)

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
        mode, engine = resolve_mode_engine(values.pop("mode", "exact"), values.pop("engine", None))
        if max_passes is None and os.environ.get("SENSMAP_MAX_PASSES", "").strip():
            max_passes = os.environ["SENSMAP_MAX_PASSES"].strip()
        if values:
            raise TypeError(f"unknown settings: {', '.join(values)}")
        try:
            max_passes = None if max_passes is None else int(max_passes)
        except ValueError:
            raise ParameterError(f"the pass budget must be a whole number, got {max_passes!r}") from None
        batch_size = None if batch_size is None else int(batch_size)
        return cls(sizes, stride, fill, score, fit, target, batch_size, max_passes, mode, engine)

    def identity(self) -> dict[str, Any]:
        """The settings that change the maps (compared with an existing audit folder)."""
        return {
            "sizes": list(self.sizes),
            "stride": self.stride,
            "fill": self.fill,
            "score": self.score,
            "fit": self.fit,
            "target": self.target,
            # every engine gives exact's maps (a folder resumes with any); fast maps are approximate (older: exact)
            **({"mode": "fast"} if self.mode == "fast" else {}),
        }


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
