"""Two networks across the dataset: per image and pair of networks, how far their maps agree, kept in
``pairs.parquet`` beside the index; and the queries the dashboard and the summary use. No Ray, no TensorFlow.

The two maps of a pair are those the Compare page would show: network A's map of its target class, and
network B's map of **the same class** (recomputed from B's kept outputs, no new forward passes) when B has a
class of that name, else of B's own target (``same_class`` False). Their agreement is
:func:`sensmap.render.photo_agreement`: :func:`sensmap.metrics.agreement` of both maps resampled onto the photo
grid — Spearman rank correlation (−1..1) and IoU of the top-20 % areas (0..1). With a fast-mode audit the
maps are approximate, B's map of another class more so (``approximate`` True).
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import replace
from itertools import combinations
from typing import TYPE_CHECKING, Any

from .folder import INDEX_FILE, PAIRS_FILE, _atomic_write
from .index import (
    SUMMARY_CLASSES,
    AuditIndex,
    ClassMean,
    _as_index,
    _present,
    _to_pandas,
    class_counts,
    class_means,
    load_image_result,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..result import SensitivityResult

PAIR_COLUMNS: list[tuple[str, str]] = [
    ("image_id", "string"), ("model_a", "string"), ("model_b", "string"), ("label", "string"),
    ("class_name", "string"), ("class_b", "string"), ("same_class", "bool"), ("predicted_name_a", "string"),
    ("predicted_name_b", "string"), ("same_top1", "bool"), ("spearman", "float64"), ("top_iou", "float64"),
    ("q", "float64"), ("approximate", "bool"),
]  # fmt: skip
"""``pairs.parquet``: one row per image mapped by both networks of a pair (``model_a`` before ``model_b`` in the
folder's order). ``class_name``: the class A's map explains; ``class_b``: the class B's map explains
(``same_class``: the same); ``same_top1``: both networks' top-1 classes have the same name; ``spearman``,
``top_iou`` (of the top ``q`` areas): their maps' agreement on the photo grid."""

MOST_DIFFERENT = 12  # images per pair shown as the most different, in the summary


def model_pairs(index: AuditIndex | str | os.PathLike) -> list[tuple[str, str]]:
    """The pairs of networks of an audit, in the folder's order (none with one network)."""
    return list(combinations(_as_index(index).model_names, 2))


def pair_results(
    index: AuditIndex | str | os.PathLike, image_id: str, model_a: str, model_b: str
) -> tuple[SensitivityResult, SensitivityResult]:
    """The two maps of one image that a pair compares: A's, and B's of A's class when B has a class of that name
    (from B's kept outputs), else B's own (see the module docstring)."""
    audit = _as_index(index)
    result_a = load_image_result(audit, image_id, model_a)
    result_b = load_image_result(audit, image_id, model_b)
    if result_a.target_name in result_b.labels:
        wanted = result_b.labels.index(result_a.target_name)
        if wanted != result_b.target:
            result_b = replace(result_b, target=wanted, metadata=dict(result_b.metadata))
    return result_a, result_b


def _text(row: dict[str, Any], column: str) -> str | None:
    """A text cell of an index row; ``None`` where the index has none (pandas gives NaN or NA)."""
    value = row.get(column)
    return str(value) if _present(value) else None


def _pair_row(audit: AuditIndex, image_id: str, model_a: str, model_b: str, rows: dict[str, Any]) -> dict[str, Any]:
    from ..render import photo_agreement

    result_a, result_b = pair_results(audit, image_id, model_a, model_b)
    numbers = photo_agreement(result_a, result_b)
    top_a, top_b = _text(rows[model_a], "predicted_name"), _text(rows[model_b], "predicted_name")
    label = _text(rows[model_a], "label")
    return {
        "image_id": image_id,
        "model_a": model_a,
        "model_b": model_b,
        "label": label,
        "class_name": result_a.target_name,
        "class_b": result_b.target_name,
        "same_class": result_a.target_name == result_b.target_name,
        "predicted_name_a": top_a,
        "predicted_name_b": top_b,
        "same_top1": top_a == top_b if top_a is not None and top_b is not None else None,
        "spearman": numbers["spearman"],
        "top_iou": numbers["top_iou"],
        "q": numbers["q"],
        "approximate": result_a.approximate or result_b.approximate,
    }


def _pairs_schema():
    import pyarrow as pa

    types = {"string": pa.string(), "float64": pa.float64(), "bool": pa.bool_()}
    return pa.schema([(name, types[kind]) for name, kind in PAIR_COLUMNS])


def build_pairs(index: AuditIndex | str | os.PathLike, *, write: bool = True) -> pd.DataFrame:
    """Compute the pair table from the map files (every image mapped by both networks of each pair);
    ``write``: also save ``pairs.parquet``, tied to the index it was computed from (only when that index is the
    folder's ``index.parquet``; an unwritable folder keeps the table in memory only)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    audit = _as_index(index)
    frame = audit.frame
    ok = frame[frame["status"] == "ok"] if len(frame) else frame
    by_image: dict[str, dict[str, Any]] = {}
    for row in ok.to_dict("records"):
        by_image.setdefault(row["image_id"], {})[row["model"]] = row
    out = []
    for model_a, model_b in model_pairs(audit):
        for image_id in sorted(by_image):
            rows = by_image[image_id]
            if model_a in rows and model_b in rows:
                out.append(_pair_row(audit, image_id, model_a, model_b, rows))
    schema = _pairs_schema()
    table = pa.table({name: [row[name] for row in out] for name in schema.names}, schema=schema)
    table = table.replace_schema_metadata({"sensmap_index_id": audit.index_id})
    if write and audit.index_id and (audit.root / INDEX_FILE).is_file():  # tied to the index on disk
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        with contextlib.suppress(OSError):
            _atomic_write(audit.root / PAIRS_FILE, buffer.getvalue())
    return _to_pandas(table)


def pair_table(index: AuditIndex | str | os.PathLike, *, write: bool = True) -> pd.DataFrame:
    """The pair table of an audit: ``pairs.parquet`` when it was computed from the same index, else computed now
    from the ``.npz`` maps (an older folder, or one changed since) and, with ``write``, saved for the next time."""
    import pyarrow.parquet as pq

    audit = _as_index(index)
    path = audit.root / PAIRS_FILE
    if audit.index_id and path.is_file():
        with contextlib.suppress(Exception):  # a damaged or stale table is computed again
            table = pq.read_table(path)
            if (table.schema.metadata or {}).get(b"sensmap_index_id", b"").decode() == audit.index_id:
                return _to_pandas(table)
    return build_pairs(audit, write=write)


def pairs_of(pairs: pd.DataFrame, model_a: str, model_b: str) -> pd.DataFrame:
    """The rows of one pair of networks, most different first (lowest Spearman, then lowest IoU)."""
    rows = pairs[(pairs["model_a"] == model_a) & (pairs["model_b"] == model_b)]
    return rows.sort_values(["spearman", "top_iou", "image_id"], kind="stable")


def pair_numbers(rows: pd.DataFrame) -> dict[str, Any]:
    """Summary of one pair's rows: ``images``, ``mean_spearman``, ``median_spearman``, ``mean_top_iou`` (NaN
    without rows), ``same_top1`` (images whose top-1 classes agree), ``same_class`` (images whose two maps
    explain one class) and ``q`` (the top share of the IoU)."""
    from ..metrics import DEFAULT_Q

    spearman, iou = rows["spearman"].astype(float), rows["top_iou"].astype(float)
    return {
        "images": len(rows),
        "mean_spearman": float(spearman.mean()),
        "median_spearman": float(spearman.median()),
        "mean_top_iou": float(iou.mean()),
        "same_top1": int(rows["same_top1"].fillna(False).sum()),
        "same_class": int(rows["same_class"].fillna(False).sum()),
        "q": float(rows["q"].iloc[0]) if len(rows) else DEFAULT_Q,
    }


def pair_group_column(by: str) -> str:
    """The column a pair's rows are grouped by: A's top-1 class (``by="predicted"``) or the label."""
    from .index import _group_column

    return "predicted_name_a" if _group_column(by) == "predicted_name" else "label"


def paired_class_means(
    index: AuditIndex | str | os.PathLike,
    model_a: str,
    model_b: str,
    by: str = "predicted",
    top: int | None = SUMMARY_CLASSES,
) -> list[ClassMean]:
    """Mean maps of the classes (``by="predicted"``: top-1 classes both networks predict) or labels both networks
    have, side by side: A's then B's for each value, A's most frequent first (``top`` values at most)."""
    audit = _as_index(index)
    theirs = {value for value, _ in class_counts(audit, model_b, by)}
    values = [value for value, _ in class_counts(audit, model_a, by) if value in theirs]
    values = values if top is None else values[: int(top)]
    means_a = class_means(audit, model_a, by, values=values)
    means_b = class_means(audit, model_b, by, values=values)
    return [mean for pair in zip(means_a, means_b, strict=True) for mean in pair]


def pair_text(index: AuditIndex | str | os.PathLike, model_a: str, model_b: str, rows: pd.DataFrame) -> str:
    """One pair of networks in words: images mapped by both, mean (median) Spearman, mean IoU, same top-1."""
    audit = _as_index(index)
    numbers = pair_numbers(rows)
    names = f"{audit.network(model_a)} vs {audit.network(model_b)}"
    if not numbers["images"]:
        return f"{names}: no image mapped by both"
    from ..render import count_text

    count = numbers["images"]
    return (
        f"{names}: {count_text(count, 'image')} mapped by both; mean Spearman "
        f"{numbers['mean_spearman']:+.2f} (median {numbers['median_spearman']:+.2f}), mean overlap of the top "
        f"{numbers['q']:.0%} areas (IoU) {numbers['mean_top_iou']:.2f}; the same top-1 class on "
        f"{numbers['same_top1']} of {count}"
    )
