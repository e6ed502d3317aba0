"""The audit's index: the numbers each map contributes (stored with it), ``index.parquet`` rebuilt from the
files, opening an audit, and the queries the dashboard and summary use — filters, class counts, shortcut
suspects, one image's result and the mean map per class. No Ray, no TensorFlow."""

from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import numpy as np

from ..errors import ParameterError, SensmapError
from ..images import box_on_grid
from ..metrics import pointing
from ..result import SensitivityResult, unit_for, unit_words
from .failures import _first_line
from .folder import AUDIT_JSON, ERROR_SUFFIX, INDEX_FILE, MAPS_DIR, MEANS_FILE, _atomic_write, _read_json
from .inputs import BOX_COLUMNS, _finite

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

TOP_K = 5
SUMMARY_CLASSES = 24  # mean maps per network and grouping in the summary (most frequent first)
SUMMARY_SUSPECTS = 12


# --------------------------------------------------------------------------- each map's index numbers (stored with it)


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


# --------------------------------------------------------------------------- building the index from the files


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


def _read_map_meta(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["metadata"]))


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


# --------------------------------------------------------------------------- the opened audit


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

    def network(self, model: str) -> str:
        """The network's name as the dashboard shows it (e.g. "MobileNet α0.25 128px"), else the folder name."""
        return str(self.models.get(model, {}).get("network") or model)

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


# --------------------------------------------------------------------------- queries (dashboard API)


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


def _group_column(by: str) -> str:
    if by not in ("predicted", "label"):
        raise ParameterError(f"group by 'predicted' or 'label', got {by!r}")
    return "predicted_name" if by == "predicted" else "label"


def class_counts(index: AuditIndex | str | os.PathLike, model: str, by: str = "predicted") -> list[tuple[str, int]]:
    """``(class or label, images)`` for one network, most frequent first (``by``: "predicted" or "label")."""
    column = _group_column(by)
    frame = filter_index(index, model=model, status="ok")
    counts = frame[column].dropna().value_counts(sort=False)
    return sorted(((str(k), int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0]))


def load_image_result(index: AuditIndex | str | os.PathLike, image_id: str, model: str) -> SensitivityResult:
    """The full :class:`SensitivityResult` of one image and network (raises if it failed or is missing)."""
    audit = _as_index(index)
    row = audit.row(image_id, model)
    if row["status"] != "ok":
        raise SensmapError(f"{image_id} has no map by {model}: {row.get('error')}")
    return SensitivityResult.load(audit.root / row["file"])


# --------------------------------------------------------------------------- class mean maps


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
    method: str = "occlusion"  # audits map with occlusion (sensmap.sensitivity_map)

    @property
    def title(self) -> str:
        return f"{self.value} ({self.count})"

    @property
    def display_unit(self) -> tuple[float, str]:
        """``(factor, unit)`` of the mean map, as :attr:`SensitivityResult.display_unit` of the maps averaged."""
        return unit_for(self.method, self.score_kind)

    @property
    def unit_description(self) -> str:
        """The mean map's unit in words (:attr:`SensitivityResult.unit_description`)."""
        return unit_words(self.method, self.score_kind)


def _present(value: Any) -> bool:
    import pandas as pd

    return value is not None and not pd.isna(value)


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
    index: AuditIndex | str | os.PathLike,
    model: str,
    by: str = "predicted",
    top: int | None = SUMMARY_CLASSES,
    values: Sequence[str] | None = None,
) -> list[ClassMean]:
    """The mean maps of the ``top`` most frequent classes (or labels) of one network, most frequent first; or of
    the given ``values``, in their order."""
    audit = _as_index(index)
    if values is None:
        values = [value for value, _ in class_counts(audit, model, by)]
        values = values if top is None else values[: int(top)]
    cached = _cached_means(audit)
    missing = [v for v in values if (model, by, v) not in cached]
    fresh = {m.value: m for m in _means_for(audit, model, by, missing)} if missing else {}
    return [cached.get((model, by, v)) or fresh[v] for v in values]
