"""How the Audit page shows an audit folder: its name, the last run in words and numbers, tables without
server paths, the photo behind a map, and the shortcut-suspects gallery.

Nothing here names a server path, host or address: audits are named relative to ``SENSMAP_AUDITS_DIR``,
messages pass through :func:`~sensmap.ui.text.without_paths`, and the ``path`` column is never shown.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from ..render import count_text
from .map_settings import MapSettings, describe_settings
from .text import percent, plain, without_paths

if TYPE_CHECKING:
    import pandas as pd

    from ..audit import AuditIndex
    from ..images import LoadedImage

MISSING = "–"
"""Shown for a value an image does not have (no label, no box, an error row's class…)."""

INDEX_COLUMNS: dict[str, str] = {
    "image_id": "image", "model": "network", "status": "status", "label": "label", "predicted_name": "top-1",
    "predicted_probability": "top-1 p", "target_name": "map for", "outside_share": "support outside box",
    "passes": "passes", "stage": "failed at", "error": "error",
}  # fmt: skip
"""Index columns the page shows, and their headers."""

PAIR_COLUMNS: dict[str, str] = {
    "image_id": "image", "label": "label", "predicted_name_a": "top-1 A", "predicted_name_b": "top-1 B",
    "class_b": "class of B's map", "spearman": "Spearman", "top_iou": "IoU top 20%",
}  # fmt: skip
"""Pair-table columns the page shows, and their headers."""

_PERCENT = {"predicted_probability", "outside_share"}
_SIGNED = {"spearman"}
_FRACTION = {"top_iou"}
_MESSAGES = {"error"}


def audit_name(folder: Path, root: Path) -> str:
    """An audit folder as the browser sees it: its path relative to the operator's ``SENSMAP_AUDITS_DIR``
    (the folder's own name when it is that folder itself)."""
    try:
        relative = Path(folder).relative_to(root).as_posix()
    except ValueError:
        relative = Path(folder).name
    return Path(root).name if relative in ("", ".") else relative


def _cell(column: str, value: Any) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, (list, tuple, np.ndarray)) and pd.isna(value)):
        return MISSING
    if column in _PERCENT:
        return f"{float(value):.0%}" if column == "outside_share" else percent(float(value))
    if column in _SIGNED:
        return f"{float(value):+.2f}"
    if column in _FRACTION:
        return f"{float(value):.2f}"
    if column in _MESSAGES:
        return without_paths(value)
    return str(value)


def shown_table(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """The ``columns`` of ``frame`` (those it has) as text for the page: headers renamed, percentages and
    correlations formatted, missing values as :data:`MISSING`, messages without server paths."""
    import pandas as pd

    kept = [c for c in columns if c in frame.columns]
    return pd.DataFrame({columns[c]: [_cell(c, v) for v in frame[c].tolist()] for c in kept}, dtype=object)


def _when(stamp: Any) -> str:
    try:
        return datetime.fromisoformat(str(stamp)).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return MISSING


def _where(cluster: Any) -> str:
    """Where the run ran, without addresses: "local Ray (4 CPUs)", "a Ray cluster", "an existing Ray session"."""
    text = str(cluster or "")
    if text.startswith("local Ray"):
        return text
    if text.startswith("existing"):
        return "an existing Ray session"
    return "a Ray cluster" if text.startswith("Ray cluster") else ""


def audit_settings(index: AuditIndex) -> str:
    """The audit's map settings worded as the Map page words its own, plus the fit and the target."""
    from ..windows import DEFAULT_SIZES, DEFAULT_STRIDE

    settings = index.settings
    value = MapSettings(
        sizes=tuple(float(s) for s in settings.get("sizes") or DEFAULT_SIZES),
        stride=float(settings.get("stride", DEFAULT_STRIDE)),
        fill=str(settings.get("fill", "gray")), score=str(settings.get("score", "probability")),
        mode=str(settings.get("mode", "exact")),
    )  # fmt: skip
    target = settings.get("target")
    target = {None: "each image's top-1 class", "label": "each image's label"}.get(target, f"class {target}")
    return f"{describe_settings(value)} · fit {settings.get('fit', 'squash')} · map for {target}"


def run_lines(index: AuditIndex) -> list[str]:
    """The audit in words, as Markdown lines (names escaped): networks, settings, the last run (when, how long,
    images/s, where) and, when some images failed, a link to the page's error rows (anchor ``errors``)."""
    from ..audit import duration_text

    frame = index.frame
    networks = ", ".join(
        plain(index.network(m)) + ("" if index.network(m) == m else f" (folder {plain(m)})") for m in index.model_names
    )
    lines = [f"**Networks:** {networks or MISSING}", f"**Settings:** {plain(audit_settings(index))}"]
    run = index.last_run
    if run:
        processed = int(run.get("processed") or 0)
        if processed:
            speed = float(run.get("images_per_s") or 0)
            rate = f"{count_text(processed, 'image')} mapped at {speed:.2f} images/s"
        else:
            rate = "nothing left to map"
        skipped = int(run.get("skipped") or 0)
        where = _where(run.get("cluster"))
        workers = int(run.get("workers") or 0)
        parts = [f"finished {_when(run.get('finished'))}", f"took {duration_text(float(run.get('elapsed_s') or 0))}",
                 rate + (f" ({skipped} already done)" if skipped else "")]  # fmt: skip
        if workers:
            parts.append(count_text(workers, "worker") + (f" on {where}" if where else ""))
        state = "" if run.get("complete", True) else " — **stopped before the end**: run the same command to resume"
        lines.append(f"**Last run:** {plain(', '.join(parts))}{state}")
    failed = frame[frame["status"] == "error"]["image_id"].nunique() if len(frame) else 0
    if failed:
        lines.append(f"**Errors:** {count_text(failed, 'image')} could not be mapped — "
                     "[see the error rows](#errors)")  # fmt: skip
    return lines


def show_run_summary(index: AuditIndex) -> None:
    """Four numbers (images, networks, maps, images with errors) and :func:`run_lines`."""
    frame = index.frame
    images = frame["image_id"].nunique() if len(frame) else 0
    maps = int((frame["status"] == "ok").sum()) if len(frame) else 0
    failed = frame[frame["status"] == "error"]["image_id"].nunique() if len(frame) else 0
    columns = st.columns(4)
    columns[0].metric("Images", images)
    columns[1].metric("Networks", len(index.model_names))
    columns[2].metric("Maps", maps)
    columns[3].metric("Images with errors", failed)
    st.markdown("  \n".join(run_lines(index)))


def audit_photo(index: AuditIndex, image_id: str, model: str) -> LoadedImage | None:
    """The photo of an image of the audit, or ``None`` when it is not readable on this machine."""
    from ..errors import SensmapError
    from ..images import load_image

    path = Path(str(index.row(image_id, model)["path"]))
    try:
        return load_image(path) if path.is_file() else None
    except SensmapError:
        return None


def stand_in_photo(photo_size: tuple[int, int]) -> np.ndarray:
    """A light grey ``(h, w, 3)`` photo, for drawing maps on when the real photo is not readable here."""
    return np.full((*photo_size, 3), 235, dtype=np.uint8)


def suspects_gallery(index: AuditIndex, suspects: pd.DataFrame, columns: int = 4, side: int = 320) -> None:
    """The shortcut suspects as photos with their map (and their box, green), a caption each."""
    from ..audit import suspect_thumbnail

    rows = list(suspects.iterrows())
    for start in range(0, len(rows), columns):
        cells = st.columns(columns)
        for cell, (_, row) in zip(cells, rows[start : start + columns], strict=False):
            caption = (f"{row['image_id']}: {row['outside_share']:.0%} of the support outside the box "
                       f"({row['outside_area']:.0%} of the area), top-1 {row['predicted_name']}")  # fmt: skip
            thumb = suspect_thumbnail(index, row, side)
            if thumb is None:
                cell.caption(plain(f"{caption} (photo not readable here)"))
            else:
                cell.image(thumb, caption=plain(caption), width="stretch")
