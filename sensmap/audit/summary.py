"""The audit's summary: the Plotly grid of class mean maps, the agreement of two networks per class, photo
thumbnails with maps, and ``summary.png``, ``summary.html`` and ``class_means.npz`` written next to the index."""

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
from .pairs import (
    MOST_DIFFERENT,
    model_pairs,
    pair_group_column,
    pair_results,
    pair_table,
    pair_text,
    paired_class_means,
    pairs_of,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import plotly.graph_objects as go

    from ..figures import Sheet


def class_means_figure(means: Sequence[ClassMean], *, limit: float | None = None, columns: int = 6) -> go.Figure:
    """Plotly grid of mean maps (network grid) on one shared symmetric scale (red supports, blue inhibits), in rows
    of ``columns``; maps of several networks (e.g. :func:`paired_class_means`) are titled with their network."""
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
    models = list(dict.fromkeys(m.model for m in means))
    titles = [plain(m.title if len(models) == 1 else f"{m.model}: {m.title}") for m in means]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles,
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
        title=dict(text=f"{plain(' vs '.join(models))}: mean support map per {by} (network grid)<br>"
                        f"<sup>{colour_caption(means[0])}</sup>", x=0.01, xanchor="left"),
        template="plotly_white", margin=dict(l=10, r=10, t=90, b=10), height=110 + 190 * rows,
    )  # fmt: skip
    return fig


AGREEMENT_METRICS = {"spearman": "Spearman rank correlation", "top_iou": "overlap of the top areas (IoU)"}


def agreement_figure(rows: pd.DataFrame, by: str = "predicted", metric: str = "spearman", *,
                     top: int = SUMMARY_CLASSES) -> go.Figure:  # fmt: skip
    """How far two networks' maps agree, per class: one box (with every image as a point) per top-1 class of
    network A (``by="predicted"``) or per label, the ``top`` most frequent first; ``rows`` from
    :func:`pairs_of`. ``metric``: ``"spearman"`` (−1..1) or ``"top_iou"`` (0..1)."""
    import plotly.graph_objects as go

    from ..errors import ParameterError
    from ..render import plain

    if metric not in AGREEMENT_METRICS:
        raise ParameterError(f"metric is 'spearman' or 'top_iou', got {metric!r}")
    column = pair_group_column(by)
    groups = rows[column].fillna("–").astype(str)
    order = [value for value, _ in sorted(groups.value_counts().items(), key=lambda kv: (-kv[1], kv[0]))][:top]
    fig = go.Figure()
    for value in order:
        part = rows[groups == value]
        fig.add_trace(go.Box(y=part[metric].astype(float), name=f"{plain(value)} ({len(part)})", boxpoints="all",
                             jitter=0.4, pointpos=0, text=[plain(i) for i in part["image_id"]],
                             hovertemplate="%{text}: %{y:.2f}<extra></extra>", marker_color="#495057",
                             line_color="#868e96", showlegend=False))  # fmt: skip
    names = " vs ".join(dict.fromkeys(rows["model_a"].tolist() + rows["model_b"].tolist())) or "no pair"
    what = "top-1 class of " + plain(str(rows["model_a"].iloc[0])) if by == "predicted" and len(rows) else by
    fig.update_layout(
        title=dict(text=f"{AGREEMENT_METRICS[metric].capitalize()} per image, by {what}<br><sup>{plain(names)}: 1 = "
                        "the same areas in the same order; lower = they look at different areas</sup>", x=0.01,
                   xanchor="left"),
        template="plotly_white", margin=dict(l=10, r=10, t=90, b=10), height=440,
        yaxis=dict(range=[-1.05, 1.05] if metric == "spearman" else [-0.05, 1.05], zeroline=True),
    )  # fmt: skip
    return fig


def _map_tile(values: np.ndarray, limit: float, side: int) -> np.ndarray:
    """A map (network grid) in the diverging colours on ``±limit``, resized (bilinear) so its long side is ``side``
    pixels, with a 1-pixel frame in the rule colour: ``(h, w, 3)`` uint8."""
    from PIL import Image

    from ..figures import RULE
    from ..render import diverging_rgba

    rgb, _ = diverging_rgba(values, limit)
    tile = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    scale = side / max(tile.size)
    size = (max(1, round(tile.width * scale)), max(1, round(tile.height * scale)))
    pixels = np.array(tile.resize(size, Image.Resampling.BILINEAR))
    frame = tuple(int(RULE[i : i + 2], 16) for i in (1, 3, 5))
    pixels[[0, -1], :] = frame
    pixels[:, [0, -1]] = frame
    return pixels


def overlay_thumbnail(
    path: str,
    support: np.ndarray,
    fit: str,
    side: int = 200,
    *,
    limit: float | None = None,
    box: Sequence[float] | None = None,
) -> np.ndarray | None:
    """The photo at ``path`` (long side ``side`` px) with ``support`` (network grid) blended on it on ``±limit``
    (default: its own largest ``|support|``) and the box ``(x0, y0, x1, y1)`` (fractions) drawn in green:
    ``(h, w, 3)`` uint8, or ``None`` when the photo is not readable here."""
    from PIL import Image, ImageDraw

    from ..images import map_to_photo
    from ..render import blend_overlay, symmetric_limit

    try:
        photo = load_image(str(path))
    except Exception:  # noqa: BLE001 - a moved photo only loses its thumbnail
        return None
    height, width = photo.pixels.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    shown = np.asarray(Image.fromarray(np.ascontiguousarray(photo.pixels)).resize(size, Image.Resampling.LANCZOS))
    bound = symmetric_limit(support, limit=limit)
    image = Image.fromarray(blend_overlay(shown, map_to_photo(support, shown.shape[:2], fit), bound))
    if box is not None:
        h, w = shown.shape[:2]
        x0, y0, x1, y1 = (float(v) for v in box)
        ImageDraw.Draw(image).rectangle([x0 * w, y0 * h, x1 * w - 1, y1 * h - 1], outline=(0, 200, 0), width=2)
    return np.asarray(image)


def suspect_thumbnail(index: AuditIndex, row: Any, side: int = 200) -> np.ndarray | None:
    """A shortcut suspect (a row of :func:`shortcut_suspects`): its photo with its map and its box (green)."""
    try:
        with np.load(index.root / row["file"], allow_pickle=False) as data:
            support = np.array(data["support"])
    except Exception:  # noqa: BLE001 - a damaged map only loses its thumbnail
        return None
    box = [row[c] for c in BOX_COLUMNS]
    return overlay_thumbnail(row["path"], support, index.settings.get("fit", "squash"), side, box=box)


def pair_thumbnails(
    index: AuditIndex, image_id: str, model_a: str, model_b: str, side: int = 200
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The photo with network A's map and with network B's (the maps :func:`pair_results` compares), on one
    colour scale."""
    from ..render import shared_limit

    results = pair_results(index, image_id, model_a, model_b)
    path, limit = index.row(image_id, model_a)["path"], shared_limit(results)
    a, b = (overlay_thumbnail(path, r.support, r.fit, side, limit=limit) for r in results)
    return a, b


def _counts_line(audit: AuditIndex, model: str) -> str:
    frame = audit.frame[audit.frame["model"] == model]
    ok = int((frame["status"] == "ok").sum())
    errors = int((frame["status"] == "error").sum())
    correct = frame["correct"].dropna()
    accuracy = f", top-1 = label on {correct.mean():.0%} of {len(correct)} labelled" if len(correct) else ""
    return f"{audit.network(model)}: {ok} images mapped, {errors} errors{accuracy}"


_PNG_TILE = 132  # side of a tile (mean map or suspect thumbnail), pixels
_PNG_GAP = 12  # between tiles, pixels
_PNG_CAPTION = 60  # below a tile: its name and two lines of notes, pixels
_PNG_MARGIN = 24
_PNG_WIDTH = 1280


def _tiles(sheet: Sheet, y: float, tiles: Sequence[tuple[np.ndarray | None, str, str, str]]) -> float:
    """Tiles ``(pixels or None, name, note, note)`` in rows across the page, each captioned with its name and two
    muted lines; returns the y below."""
    from ..figures import MUTED, TEXT

    per_row = (_PNG_WIDTH - 2 * _PNG_MARGIN) // (_PNG_TILE + _PNG_GAP)
    for i, (pixels, name, *notes) in enumerate(tiles):
        x = _PNG_MARGIN + (i % per_row) * (_PNG_TILE + _PNG_GAP)
        top = y + (i // per_row) * (_PNG_TILE + _PNG_CAPTION)
        if pixels is not None:
            sheet.image(x, top, pixels)
        below = sheet.text(x, top + _PNG_TILE + 4, name, 13, TEXT, width=_PNG_TILE)
        for note in notes:
            below = sheet.text(x, below, note, 11, MUTED, width=_PNG_TILE)
    return y + math.ceil(len(tiles) / per_row) * (_PNG_TILE + _PNG_CAPTION)


def _png_means(sheet: Sheet, y: float, by: str, means: Sequence[ClassMean]) -> float:
    from ..figures import TEXT
    from ..render import count_text, symmetric_limit
    from ..result import format_value

    factor, unit = means[0].display_unit
    limit = symmetric_limit(*(m.mean for m in means))
    width = _PNG_WIDTH - 2 * _PNG_MARGIN
    heading = f"Mean support map per {'predicted class' if by == 'predicted' else 'label'} (network grid; most " \
              "frequent first)"  # fmt: skip
    y = sheet.text(_PNG_MARGIN, y, heading, 16, TEXT, width)
    y = sheet.colour_bar(_PNG_MARGIN, y + 6, 420, limit * factor, unit) + 12
    tiles = [(_map_tile(m.mean, limit, _PNG_TILE), m.value, count_text(m.count, "image"),
              f"peak {format_value(m.mean.max() * factor, unit)}") for m in means]  # fmt: skip
    return _tiles(sheet, y, tiles) + 30


def _png_suspects(sheet: Sheet, y: float, audit: AuditIndex, suspects: pd.DataFrame) -> float:
    from ..figures import TEXT

    heading = "Shortcut suspects: share of the positive support outside the box (green)"
    y = sheet.text(_PNG_MARGIN, y, heading, 16, TEXT, _PNG_WIDTH - 2 * _PNG_MARGIN) + 14
    tiles = [(suspect_thumbnail(audit, row, _PNG_TILE), row["image_id"],
              f"{row['outside_share']:.0%} of support outside", f"{row['outside_area']:.0%} of the area")
             for _, row in suspects.iterrows()]  # fmt: skip
    return _tiles(sheet, y, tiles)


_PNG_PAIR_CLASSES = 4  # classes per pair of networks in the PNG (A's and B's mean map side by side)
_PNG_PAIR_IMAGES = 4  # most different images per pair of networks in the PNG (A's and B's map side by side)


def _png_pair(sheet: Sheet, y: float, audit: AuditIndex, pair) -> float:
    """One pair of networks: the agreement in words, mean maps side by side, the most different images."""
    from ..figures import MUTED, TEXT
    from ..render import count_text, symmetric_limit

    model_a, model_b, rows, means = pair
    width = _PNG_WIDTH - 2 * _PNG_MARGIN
    y = sheet.rule(y + 4, _PNG_MARGIN, _PNG_WIDTH - _PNG_MARGIN)
    y = sheet.text(_PNG_MARGIN, y + 10, f"Two networks compared: {audit.network(model_a)} vs "
                   f"{audit.network(model_b)}", 20, TEXT, width)  # fmt: skip
    y = sheet.paragraph(_PNG_MARGIN, y + 2, pair_text(audit, model_a, model_b, rows), width, 14, MUTED) + 14
    shown = means[: 2 * _PNG_PAIR_CLASSES]
    if shown:
        factor, unit = shown[0].display_unit
        limit = symmetric_limit(*(m.mean for m in shown))
        y = sheet.text(_PNG_MARGIN, y, "Mean support map per predicted class, both networks side by side (one "
                       "colour scale)", 16, TEXT, width)  # fmt: skip
        y = sheet.colour_bar(_PNG_MARGIN, y + 6, 420, limit * factor, unit) + 12
        tiles = [(_map_tile(m.mean, limit, _PNG_TILE), m.value, m.model, count_text(m.count, "image")) for m in shown]
        y = _tiles(sheet, y, tiles) + 30
    different = rows.head(_PNG_PAIR_IMAGES)
    if len(different):
        heading = "Where the two networks look most differently (lowest Spearman ρ): both maps on one colour scale"
        y = sheet.text(_PNG_MARGIN, y, heading, 16, TEXT, width)
        y = sheet.text(_PNG_MARGIN, y, f"left: {audit.network(model_a)}, right: {audit.network(model_b)}", 14,
                       MUTED, width) + 10  # fmt: skip
        tiles = []
        for row in different.itertuples():
            thumbs = pair_thumbnails(audit, row.image_id, model_a, model_b, _PNG_TILE)
            tiles.append((thumbs[0], row.image_id, f"map for {row.class_name}", f"top-1 {row.predicted_name_a}"))
            tiles.append((thumbs[1], f"ρ {row.spearman:+.2f} · IoU {row.top_iou:.2f}", f"map for {row.class_b}",
                          f"top-1 {row.predicted_name_b}"))  # fmt: skip
        y = _tiles(sheet, y, tiles) + 16
    return y


def _summary_png(audit: AuditIndex, sections, pairs=()) -> bytes:
    """The summary page (matplotlib, :class:`sensmap.figures.Sheet`): settings, then per network its counts, mean
    maps per predicted class and per label, and shortcut suspects; then per pair of networks their agreement.
    Names are printed as given."""
    from ..figures import MUTED, TEXT, Sheet
    from ..render import COLOUR_CAPTION

    sheet = Sheet(_PNG_WIDTH)
    width = _PNG_WIDTH - 2 * _PNG_MARGIN
    settings = audit.settings
    y = sheet.text(_PNG_MARGIN, _PNG_MARGIN, f"sensmap dataset audit: {audit.root.name}", 26, TEXT, width)
    line = (f"sizes {settings.get('sizes')}, stride {settings.get('stride')}, fill {settings.get('fill')}, score "
            f"{settings.get('score')}, fit {settings.get('fit')}. Colours: {COLOUR_CAPTION}.")  # fmt: skip
    y = sheet.paragraph(_PNG_MARGIN, y + 2, line, width, 13, MUTED)
    for model, groups, suspects in sections:
        y = sheet.rule(y + 4, _PNG_MARGIN, _PNG_WIDTH - _PNG_MARGIN)
        y = sheet.text(_PNG_MARGIN, y + 10, _counts_line(audit, model), 20, TEXT, width) + 16
        for by, means in groups.items():
            if means:
                y = _png_means(sheet, y, by, means)
        if len(suspects):
            y = _png_suspects(sheet, y, audit, suspects)
    for pair in pairs:
        y = _png_pair(sheet, y, audit, pair)
    sheet.pad(y + _PNG_MARGIN)
    return sheet.png()


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


def _html_pair(audit: AuditIndex, pair, embed) -> str:
    """One pair of networks: the agreement in words and per class, mean maps side by side, the most different
    images (photo with A's and B's map on one colour scale)."""
    from ..render import jpeg_data_uri

    model_a, model_b, rows, means = pair
    names = f"{audit.network(model_a)} vs {audit.network(model_b)}"
    parts = [f"<section><h2>Two networks compared: {html.escape(names)}</h2>",
             f"<p>{html.escape(pair_text(audit, model_a, model_b, rows))}</p>"]  # fmt: skip
    if len(rows):
        parts.append(embed(agreement_figure(rows, "predicted")))
        if rows["label"].notna().any():
            parts.append(embed(agreement_figure(rows, "label")))
    if means:
        parts.append(embed(class_means_figure(means, columns=4)))
    table = []
    for row in rows.head(MOST_DIFFERENT).itertuples():
        thumbs = pair_thumbnails(audit, row.image_id, model_a, model_b)
        cells = [f'<img class="thumb" src="{jpeg_data_uri(t)}" alt="">' if t is not None else "" for t in thumbs]
        table.append((*cells, row.image_id, row.label, row.predicted_name_a, row.predicted_name_b, row.class_b,
                      f"{row.spearman:+.2f}", f"{row.top_iou:.2f}"))  # fmt: skip
    if table:
        parts.append("<h3>Where the two networks look most differently</h3><p class=\"muted\">Lowest Spearman first; "
                     "each photo with both maps on one colour scale.</p>")  # fmt: skip
        header = (model_a, model_b, "image", "label", f"top-1 {model_a}", f"top-1 {model_b}", "class mapped by B",
                  "Spearman", f"IoU top {rows['q'].iloc[0]:.0%}")  # fmt: skip
        parts.append(_html_table(table, header, raw=(0, 1)))
    return "".join(parts) + "</section>"


def _summary_html(audit: AuditIndex, sections, pairs=()) -> str:
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
                thumb = suspect_thumbnail(audit, row)
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
    parts += [_html_pair(audit, pair, embed) for pair in pairs]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>sensmap audit {html.escape(audit.root.name)}</title><style>{_HTML_CSS}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )


def write_summary(index: AuditIndex | str | os.PathLike, *, top: int = SUMMARY_CLASSES,
                  suspects: int = SUMMARY_SUSPECTS) -> dict[str, str]:  # fmt: skip
    """Write ``summary.png``, ``summary.html`` and ``class_means.npz`` next to the index (and ``pairs.parquet`` when
    it is missing or stale: the summary has a section per pair of networks); returns their paths."""
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
    table = pair_table(audit)
    pairs = [(a, b, pairs_of(table, a, b), paired_class_means(audit, a, b, "predicted", top // 2))
             for a, b in model_pairs(audit)]  # fmt: skip
    _atomic_write(audit.root / SUMMARY_PNG, _summary_png(audit, sections, pairs))
    _atomic_write(audit.root / SUMMARY_HTML, _summary_html(audit, sections, pairs).encode("utf-8"))
    return {name: str(audit.root / name) for name in (SUMMARY_PNG, SUMMARY_HTML, MEANS_FILE)}
