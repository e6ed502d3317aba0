"""Report: download the PNG report, the interactive HTML report and the raw maps (.npz)."""

from __future__ import annotations

import streamlit as st

from sensmap import SensmapError, ui
from sensmap.report import report_filename, report_html

st.title("Report")
ui.wait_for_uploads()  # a photo sent just before this page opened is read first
photo, choice_a, choice_b = ui.active_photo(), ui.network_choice("A"), ui.network_choice("B")
keys = ui.report_keys(photo, choice_a, choice_b) if photo is not None and choice_a is not None else []
if not keys:
    st.info("No map yet for the active photo and network A: run one on the Map page.", icon=":material/info:")
    st.page_link("pages/map.py", label="Go to Map", icon=":material/east:")
    st.stop()
if len(keys) == 2:
    both = st.radio("Report on", ["A and B (comparison)", "A only"], horizontal=True, key="w.report_scope")
    keys = keys if both.startswith("A and B") else keys[:1]
results = [ui.results()[key] for key in keys]
names = [result.model_name for result in results]
st.caption(ui.plain(f"{photo.name} · " + " vs ".join(f"{r.model_name} ('{r.target_name}')" for r in results)))
method_keys = ui.report_method_keys(photo, choice_a, results[0].target)
if method_keys and not st.checkbox(
    "Include the methods side by side and their sanity checks (Methods page)", value=True, key="w.report_methods"
):  # fmt: skip
    method_keys = []
methods = [ui.results()[key] for key in method_keys]

try:
    with st.spinner("Drawing the PNG report…"):
        png = ui.report_png_cached(photo, keys, method_keys)
except SensmapError as exc:
    ui.show_error(exc)
    st.stop()

with st.container(horizontal=True, gap="small"):
    st.download_button(
        "PNG report", png, file_name=report_filename("report", names, "png"), mime="image/png",
        type="primary", icon=":material/image:", on_click="ignore", key="w.download.png",
    )  # fmt: skip
    st.download_button(
        "Interactive HTML report",
        lambda: report_html(photo.image, results, photo_credit=photo.credit, methods=methods or None),
        file_name=report_filename("report", names, "html"), mime="text/html", icon=":material/html:",
        on_click="ignore", key="w.download.html",
    )  # fmt: skip
    for result in results + [m for m in methods if not m.windowed]:  # the occlusion map is already A's
        method = "" if result.windowed else f" {result.method_label}"
        st.download_button(
            f"Raw map .npz ({ui.plain(result.model_name)}{method})", lambda result=result: result.to_npz_bytes(),
            file_name=report_filename(f"{result.method}-map" if method else "map", [result.model_name], "npz"),
            mime="application/octet-stream", icon=":material/data_object:", on_click="ignore",
            key=f"w.download.npz.{result.model_name}.{result.method}",
        )  # fmt: skip
st.caption(
    "The HTML report is self-contained (plotly.js and the photo inline) and works offline. The .npz holds "
    "the maps, every occluded input's class probabilities and the settings (numpy.load, no pickles)."
)
st.image(png, caption="Preview of the PNG report", width="stretch")
