"""Audit: browse a dataset audit written by `sensmap audit` — the run, index, filters, class mean maps, shortcut
suspects, two networks compared, one image."""

from __future__ import annotations

import streamlit as st

from sensmap import SensmapError, audit, render, ui

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
folder = st.selectbox("Audit", folders, format_func=lambda p: ui.audit_name(p, root), key="w.audit.folder")
try:
    index = audit.open_audit(folder)
except SensmapError as exc:
    ui.show_error(exc)
    st.stop()
ui.show_run_summary(index)

model = st.selectbox("Network", index.model_names, format_func=index.network, key="w.audit.model")
with st.expander("Filters", expanded=True, icon=":material/filter_list:"):
    left, middle, right = st.columns(3)
    status = left.selectbox("Status", ["all", "ok", "error"], key="w.audit.status")
    classes = [c for c, _ in audit.class_counts(index, model)]
    predicted = middle.multiselect("Predicted class", classes, key="w.audit.pred")
    labels = right.multiselect("Label", [c for c, _ in audit.class_counts(index, model, "label")], key="w.audit.label")
    text = left.text_input("Search (image, label, class)", key="w.audit.text")
    correct = middle.selectbox("Top-1 vs label", ["all", "correct", "wrong"], key="w.audit.correct")
    outside = right.slider("Support outside the box at least", 0.0, 1.0, 0.0, 0.05, key="w.audit.outside")
rows = audit.filter_index(
    index, model=model, status=None if status == "all" else status, predicted=predicted or None,
    label=labels or None, text=text or None, correct={"all": None, "correct": True, "wrong": False}[correct],
    min_outside_share=outside or None,
)  # fmt: skip
shown = {k: v for k, v in ui.INDEX_COLUMNS.items() if k not in ("model", "stage")}
st.dataframe(ui.shown_table(rows, shown), hide_index=True, width="stretch", height=320)

by = st.radio("Group by", ["predicted", "label"], horizontal=True, key="w.audit.by",
              format_func={"predicted": "predicted class", "label": "label"}.get)  # fmt: skip
means = audit.class_means(index, model, by)
st.plotly_chart(audit.class_means_figure(means), key="chart.audit.means")
if means:
    st.caption(ui.colour_key(means[0]))

suspects = audit.shortcut_suspects(index, model)
if len(suspects):
    st.subheader("Shortcut suspects")
    st.caption("Images whose support lies mostly outside their labelled box (green): the network may look at the "
               "context. Each photo with its map; most support outside first.")  # fmt: skip
    ui.suspects_gallery(index, suspects)

pairs = audit.model_pairs(index)
if pairs:
    st.subheader("Two networks compared", anchor="compare")
    model_a, model_b = st.selectbox(
        "Networks", pairs, key="w.audit.pair", format_func=lambda p: f"{index.network(p[0])} vs {index.network(p[1])}"
    )
    pair_rows = audit.pairs_of(audit.pair_table(index), model_a, model_b)
    numbers = audit.pair_numbers(pair_rows)
    columns = st.columns(4)
    columns[0].metric("Images mapped by both", numbers["images"])
    columns[1].metric(
        "Mean Spearman",
        f"{numbers['mean_spearman']:+.2f}" if numbers["images"] else ui.MISSING,
        help="How similarly the two maps rank the areas: 1 = same order, 0 = unrelated, −1 = opposite.",
    )
    columns[2].metric(
        f"Mean top {numbers['q']:.0%} IoU",
        f"{numbers['mean_top_iou']:.2f}" if numbers["images"] else ui.MISSING,
        help="Overlap of the areas each network relies on most: 1 = same, 0 = disjoint.",
    )
    columns[3].metric("Same top-1 class", f"{numbers['same_top1']} of {numbers['images']}")  # fmt: skip
    st.caption(
        ui.plain(
            f"{audit.pair_text(index, model_a, model_b, pair_rows)}. As on the Compare page, B's map is "
            "for A's class when B has it (from its kept outputs), so both maps explain the same class."
        )
    )
    if numbers["images"]:
        metric = st.radio("Agreement", list(audit.AGREEMENT_METRICS), horizontal=True, key="w.audit.metric",
                          format_func=audit.AGREEMENT_METRICS.get)  # fmt: skip
        st.plotly_chart(audit.agreement_figure(pair_rows, by, metric), key="chart.audit.agreement")
        st.markdown("**Where the two networks look most differently** (lowest Spearman first)")
        st.dataframe(ui.shown_table(pair_rows.head(audit.MOST_DIFFERENT), ui.PAIR_COLUMNS), hide_index=True,
                     width="stretch")  # fmt: skip
        agreement = {row.image_id: row for row in pair_rows.itertuples()}
        image_id = st.selectbox(
            "Open an image (most different first)", list(agreement), key="w.audit.pair.image",
            format_func=lambda i: f"{i} — Spearman {agreement[i].spearman:+.2f}, IoU {agreement[i].top_iou:.2f}",
        )  # fmt: skip
        result_a, result_b = audit.pair_results(index, image_id, model_a, model_b)
        photo = ui.audit_photo(index, image_id, model_a)
        if photo is None:
            st.warning(ui.plain(f"The photo of {image_id} is not readable here: the maps are drawn on a blank photo."))
        pixels = photo if photo is not None else ui.stand_in_photo(result_a.photo_size)
        figure = ui.wrap_subplot_titles(render.compare_figure(pixels, result_a, result_b))
        st.plotly_chart(figure, key="chart.audit.compare", height=480)
        st.caption(ui.colour_key(result_a) + " " + ui.DIFFERENCE_KEY)
        means = audit.paired_class_means(index, model_a, model_b, by, top=12)
        if means:
            st.plotly_chart(audit.class_means_figure(means, columns=4), key="chart.audit.pair_means")

st.subheader("One image")
ok = rows[rows["status"] == "ok"]["image_id"].tolist()
if ok:
    image_id = st.selectbox("Image", ok, key="w.audit.image")
    result = audit.load_image_result(index, image_id, model)
    st.markdown(f"**{ui.plain(result.model_name)}**: '{ui.plain(result.target_name)}' "
                f"({ui.percent(result.probability)})")  # fmt: skip
    photo = ui.audit_photo(index, image_id, model)
    if photo is not None:
        st.plotly_chart(render.overlay_figure(photo, result), key="chart.audit.overlay", height=560)
    else:
        st.warning(ui.plain(f"The photo of {image_id} is not readable here; showing the maps on the network grid."))
        st.plotly_chart(render.per_size_figure(result), key="chart.audit.per_size", height=460)
else:
    st.info("No mapped image matches the filters.", icon=":material/info:")

errors = index.frame[index.frame["status"] == "error"]
if len(errors):
    st.subheader(f"Errors ({render.count_text(errors['image_id'].nunique(), 'image')})", anchor="errors")
    st.caption("Images that could not be mapped; run the audit again with --retry-errors once they are fixed.")
    error_columns = {k: ui.INDEX_COLUMNS[k] for k in ("image_id", "model", "label", "stage", "error")}
    st.dataframe(ui.shown_table(errors, error_columns), hide_index=True, width="stretch")
