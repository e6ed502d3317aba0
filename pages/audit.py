"""Audit: browse a dataset audit written by `sensmap audit` — index, filters, class mean maps, one image."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from sensmap import SensmapError, audit, render, ui
from sensmap.images import load_image

st.title("Audit")
root = audit.audits_dir_from_env()
folders = audit.list_audit_folders(root) if root else []
if not folders:
    st.info(
        "No audit to open. Run one with `sensmap audit PHOTOS --model MobileNetV2 --out AUDITS/my-audit`, then start "
        "the dashboard with `SENSMAP_AUDITS_DIR=AUDITS` (the operator's folder: the browser never names paths).",
        icon=":material/info:",
    )
    st.stop()
folder = st.selectbox("Audit folder", folders, format_func=lambda p: p.name or str(p), key="w.audit.folder")
try:
    index = audit.open_audit(folder)
except SensmapError as exc:
    ui.show_error(exc)
    st.stop()
run = index.last_run
st.caption(ui.plain(f"{len(index.frame)} rows · settings {index.settings} · last run: {run}"))
model = st.selectbox("Network", index.model_names, key="w.audit.model")

with st.expander("Filters", expanded=True, icon=":material/filter_list:"):
    left, middle, right = st.columns(3)
    status = left.selectbox("Status", ["all", "ok", "error"], key="w.audit.status")
    classes = [c for c, _ in audit.class_counts(index, model)]
    predicted = middle.multiselect("Predicted class", classes, key="w.audit.pred")
    labels = right.multiselect("Label", [c for c, _ in audit.class_counts(index, model, "label")], key="w.audit.label")
    text = left.text_input("Search (image, path, label, class)", key="w.audit.text")
    correct = middle.selectbox("Top-1 vs label", ["all", "correct", "wrong"], key="w.audit.correct")
    outside = right.slider("Support outside the box at least", 0.0, 1.0, 0.0, 0.05, key="w.audit.outside")
rows = audit.filter_index(
    index, model=model, status=None if status == "all" else status, predicted=predicted or None,
    label=labels or None, text=text or None, correct={"all": None, "correct": True, "wrong": False}[correct],
    min_outside_share=outside or None,
)  # fmt: skip
columns = ["image_id", "status", "label", "predicted_name", "predicted_probability", "target_name", "outside_share",
           "passes", "error"]  # fmt: skip
st.dataframe(rows[[c for c in columns if c in rows]], hide_index=True, width="stretch", height=320)

by = st.radio("Mean maps by", ["predicted", "label"], horizontal=True, key="w.audit.by",
              format_func={"predicted": "predicted class", "label": "label"}.get)  # fmt: skip
means = audit.class_means(index, model, by)
st.plotly_chart(audit.class_means_figure(means), key="chart.audit.means")
if means:
    st.caption(ui.colour_key(means[0]))
suspects = audit.shortcut_suspects(index, model)
if len(suspects):
    st.subheader("Shortcut suspects")
    st.caption("Images whose support lies mostly outside their labelled box: the network may look at the context.")
    st.dataframe(suspects[[c for c in columns if c in suspects]], hide_index=True, width="stretch")

st.subheader("One image")
ok = rows[rows["status"] == "ok"]["image_id"].tolist()
if not ok:
    st.info("No mapped image matches the filters.", icon=":material/info:")
    st.stop()
image_id = st.selectbox("Image", ok, key="w.audit.image")
try:
    result = audit.load_image_result(index, image_id, model)
    path = Path(str(index.row(image_id, model)["path"]))
    photo = load_image(path) if path.is_file() else None
except SensmapError as exc:
    ui.show_error(exc)
    st.stop()
st.markdown(ui.plain(f"**{result.model_name}**: '{result.target_name}' ({ui.percent(result.probability)})"))
if photo is not None:
    st.plotly_chart(render.overlay_figure(photo, result), key="chart.audit.overlay", height=560)
else:
    st.warning(ui.plain(f"The photo {path} is not readable here; showing the maps on the network grid."))
    st.plotly_chart(render.per_size_figure(result), key="chart.audit.per_size", height=460)
