"""Safe download file names for reports and exports: ASCII only, generated from the report kind, the network
names and the time (UTC), never taken from an uploaded file."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime, timezone


def utc(when: datetime | None = None) -> datetime:
    """``when`` (default: now) in UTC."""
    return (when or datetime.now(timezone.utc)).astimezone(timezone.utc)


_TRANSLIT = {
    "α": "a",
    "β": "b",
    "γ": "g",
    "μ": "u",
    "×": "x",
    "−": "-",
    "–": "-",
    "—": "-",
    "→": "->",
    "←": "<-",
    "↑": "^",
    "↓": "v",
    "≥": ">=",
    "≤": "<=",
    "‘": "'",
    "’": "'",
    "“": '"',
    "”": '"',
}


def ascii_text(text: object) -> str:
    """``text`` in printable ASCII for file names: α→a, ×→x, accents dropped, other characters → ``?``.

    Reports print names as given; only file names (and the dataset audit's Pillow summary, until it draws with
    :mod:`sensmap.figures`) need ASCII.
    """
    value = "".join(_TRANSLIT.get(ch, ch) for ch in str(text))
    out = []
    for ch in unicodedata.normalize("NFKD", value):
        if " " <= ch <= "~":
            out.append(ch)
        elif not unicodedata.combining(ch):
            out.append(" " if ch.isspace() else "?")
    return "".join(out)


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME_PART = 40
MAX_MODELS_IN_NAME = 4


def safe_name(text: object, fallback: str, limit: int = MAX_NAME_PART) -> str:
    """A file-name part: ASCII (α→a), only ``[A-Za-z0-9._-]``, no ``..``, at most ``limit`` characters."""
    value = _UNSAFE.sub("_", ascii_text(text))
    value = re.sub(r"\.{2,}", ".", value).strip("._-")[:limit].strip("._-")
    return value or fallback


def report_filename(kind: str, model_names: Sequence[str], ext: str, *, when: datetime | None = None) -> str:
    """A safe download name such as ``sensmap-report-MobileNetV2-vs-MobileNet_a0.75_192px-20261126-141500.png``.

    Only ``[A-Za-z0-9._-]``; built from the report kind, the network names (ASCII-folded, at
    most four) and the time (UTC, default now) — never from an uploaded file's name.
    """
    models = "-vs-".join(safe_name(name, "model") for name in list(model_names)[:MAX_MODELS_IN_NAME])
    stamp = utc(when).strftime("%Y%m%d-%H%M%S")
    extension = re.sub(r"[^A-Za-z0-9]", "", str(ext))[:8] or "bin"
    parts = ["sensmap", safe_name(kind, "report"), models, stamp]
    return "-".join(part for part in parts if part) + "." + extension
