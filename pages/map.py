"""Map: the active photo explained by network A — top-5, target class, settings, run, views."""

from __future__ import annotations

import streamlit as st

from sensmap import render, ui

st.title("Map")
ui.show_stopped_run()
photo, choice = ui.active_photo(), ui.network_choice("A")
if photo is None or choice is None:
    st.info("First add a photo (Photos) and choose network A (Networks).", icon=":material/info:")
    st.page_link("pages/photos.py" if photo is None else "pages/networks.py", label="Go there", icon=":material/east:")
    st.stop()
network = ui.load_network(choice)
if network is None:
    st.stop()

top = ui.top_classes(choice, network, photo)
left, right = st.columns([2, 3], gap="large")
with left:
    st.image(photo.thumbnail, caption=ui.plain(photo.name), width="stretch")
    st.markdown(f"**{ui.plain(choice.label)}** sees:")
    st.dataframe(
        [{"class": name, "probability": p} for _, name, p in top],
        column_config={"probability": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)},
        hide_index=True,
        width="stretch",
    )
with right:
    top_p = {index: p for index, _, p in top}
    target = st.selectbox(
        "Class to explain (type to search)", range(network.num_classes),
        index=ui.target_for(choice, network, photo), key=ui.target_widget_key(choice, photo),
        format_func=lambda i: network.labels[i] + (f" ({ui.percent(top_p[i])})" if i in top_p else ""),
    )  # fmt: skip
    ui.set_target(choice, photo, target)
    now = ui.settings()
    sizes = st.multiselect(
        "Cover sizes (fraction of the image side)", list(ui.SIZE_CHOICES),
        default=[ui.label_for(ui.SIZE_CHOICES, s) for s in now.sizes], key="w.sizes",
    )  # fmt: skip
    stride = st.select_slider(
        "Stride (fraction of the cover side)", list(ui.STRIDE_CHOICES),
        value=ui.label_for(ui.STRIDE_CHOICES, now.stride), key="w.stride",
    )  # fmt: skip
    fill_column, colour_column = st.columns([3, 1])
    fill = fill_column.selectbox(
        "Fill of the covered patch", list(ui.FILL_CHOICES), index=list(ui.FILL_CHOICES).index(now.fill),
        format_func=ui.FILL_CHOICES.get, key="w.fill",
    )  # fmt: skip
    colour = colour_column.color_picker("Custom colour", now.colour, key="w.colour", disabled=fill != "custom")
    score = st.radio(
        "Score", list(ui.SCORE_CHOICES), index=list(ui.SCORE_CHOICES).index(now.score),
        format_func=ui.SCORE_CHOICES.get, horizontal=True, key="w.score",
    )  # fmt: skip
    if not sizes:
        st.warning("Choose at least one cover size.", icon=":material/warning:")
        st.stop()
    settings = ui.MapSettings(tuple(sorted((ui.SIZE_CHOICES[s] for s in sizes), reverse=True)),
                              ui.STRIDE_CHOICES[stride], fill, colour, score)  # fmt: skip
    ui.set_settings(settings)
    passes, seconds = ui.cost_preview(choice, network, settings)
    key = ui.result_key(choice, photo, settings, target)
    ready = key in ui.results()
    st.caption(
        f"Cost: {passes:,} forward passes, about {seconds:.0f} s on this machine"
        + (" · this map is ready" if ready else "")
    )
    if st.button("Run map", type="primary", icon=":material/play_arrow:", disabled=ready):
        stop = ui.stop_button()
        ui.run_map_with_progress(choice, network, photo, settings, target)
        stop.empty()

result, exact = ui.result_to_show(key)
if result is None:
    st.info("Press **Run map** to compute the map.", icon=":material/info:")
    st.stop()
if not exact:
    st.info(
        f"Showing the last finished map ('{ui.plain(result.target_name)}', earlier settings). "
        "Press **Run map** to update it.",
        icon=":material/history:",
    )
st.caption(ui.colour_key(result.score_kind))
tabs = st.tabs(["Overlay", "Brightness", "Per cover size", "Label flip"], key="w.view", on_change="rerun")
with tabs[0]:
    if tabs[0].open:
        opacity = st.slider("Map opacity", 0.0, 1.0, render.DEFAULT_OPACITY, 0.05, key="w.opacity",
                            persist_state="session")  # fmt: skip
        st.plotly_chart(render.overlay_figure(photo.image, result, opacity=opacity), key="chart.overlay", height=640)
with tabs[1]:
    if tabs[1].open:
        st.plotly_chart(render.brightness_figure(photo.image, result), key="chart.brightness", height=640)
with tabs[2]:
    if tabs[2].open:
        st.plotly_chart(render.per_size_figure(result), key="chart.per_size", height=460)
with tabs[3]:
    if tabs[3].open:
        size = st.selectbox("Cover size", range(len(result.sizes)), index=len(result.sizes) - 1,
                            format_func=lambda i: render.cover_title(result, i), key="w.flip_size")  # fmt: skip
        st.plotly_chart(render.label_flip_figure(result, size), key="chart.label_flip", height=560)
