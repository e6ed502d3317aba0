"""The audit's summary: the Plotly grid of class mean maps, and ``summary.png``, ``summary.html`` and
``class_means.npz`` written next to the index."""

from __future__ import annotations

import html
import io
import json
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..images import load_image
from .folder import MEANS_FILE, SUMMARY_HTML, SUMMARY_PNG, _atomic_write, _now
from .index import (
    SUMMARY_CLASSES,
    SUMMARY_SUSPECTS,
    AuditIndex,
    ClassMean,
    _as_index,
    class_counts,
    class_means,
    shortcut_suspects,
)
from .inputs import BOX_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go


def class_means_figure(means: Sequence[ClassMean], *, limit: float | None = None, columns: int = 6) -> go.Figure:
    """Plotly grid of mean maps (network grid) on one shared symmetric scale (red supports, blue inhibits)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from ..render import colour_caption, plain, support_heatmap, symmetric_limit

    if not means:
        fig = go.Figure()
        fig.update_layout(title="no mapped images", template="plotly_white")
        return fig
    factor, unit = means[0].display_unit
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
                        f"<sup>{colour_caption(means[0])}</sup>", x=0.01, xanchor="left"),
        template="plotly_white", margin=dict(l=10, r=10, t=90, b=10), height=110 + 190 * rows,
    )  # fmt: skip
    return fig


def _map_rgb(values: np.ndarray, limit: float) -> np.ndarray:
    from ..render import diverging_rgba

    rgb, _ = diverging_rgba(values, limit)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _suspect_thumbnail(audit: AuditIndex, row: Any, side: int = 200) -> np.ndarray | None:
    """The photo (≤ ``side`` px) with the map blended on it and the box drawn in green; ``None`` if unreadable."""
    from PIL import Image, ImageDraw

    from ..images import map_to_photo
    from ..render import blend_overlay, symmetric_limit

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

    from ..images import to_png_bytes
    from ..render import symmetric_limit
    from ..report import ascii_text

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
            factor, unit = means[0].display_unit
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

    from ..render import COLOUR_CAPTION, jpeg_data_uri

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
