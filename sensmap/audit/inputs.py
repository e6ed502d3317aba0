"""Collecting an audit's inputs: a folder of images or a Parquet/CSV manifest, as :class:`AuditItem` rows
(id, path, label, box), and the file-name key of each image id."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import ParameterError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
MANIFEST_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "tsv"}
BOX_COLUMNS = ("x0", "y0", "x1", "y1")
MAX_KEY_LENGTH = 180


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


def _finite(value: Any) -> float | None:
    """``value`` as a float, or ``None`` when it is missing, not a number or not finite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


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
