"""Map: the active photo explained by network A — top-5, target class, settings, run, views, trust checks."""

from __future__ import annotations

import streamlit as st

from sensmap import render, ui

st.title("Map")
ui.show_stopped_run()
photo, [(choice, network)] = ui.page_inputs("A", "First add a photo (Photos) and choose network A (Networks).")

classes = ui.has_classes(network)  # embeddings and value outputs have no top-5 nor target class
top = ui.top_classes(choice, network, photo) if classes else []
left, right = st.columns([2, 3], gap="large")
with left:
    st.image(photo.thumbnail, caption=ui.plain(photo.name), width="stretch")
    if not classes:
        st.info(ui.plain(ui.no_classes_note(network)), icon=":material/info:")
    else:
        st.markdown(f"**{ui.plain(choice.label)}** sees:")
    st.dataframe(
        [{"class": name, "probability": p} for _, name, p in top],
        column_config={"probability": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)},
        hide_index=True,
        width="stretch",
    ) if classes else None
    story_slot = st.empty()  # the story in words, once a map is shown
with right:
    top_p = {index: p for index, _, p in top}
    target = st.selectbox(
        "Class to explain (type to search)", range(network.num_classes),
        index=ui.target_for(choice, network, photo), key=ui.target_widget_key(choice, photo),
        format_func=lambda i: network.labels[i] + (f" ({ui.percent(top_p[i])})" if i in top_p else ""),
    ) if classes else 0  # fmt: skip
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
    scores = ui.score_choices(network)  # the scores that fit network A's outputs
    score = st.radio(
        "Score", list(scores), index=list(scores).index(ui.score_for(network, now.score)),
        format_func=scores.get, horizontal=True,
        key="w.score" if network.output_kind == "classes" else f"w.score.{network.output_kind}",
    )  # fmt: skip
    if classes and ui.view_note(score, "classes"):
        st.caption(ui.plain(ui.view_note(score, "classes")))
    which, how = st.columns(2)
    mode = which.radio(
        "Windows", list(ui.MODE_CHOICES), index=list(ui.MODE_CHOICES).index(now.mode),
        format_func=ui.MODE_CHOICES.get, horizontal=True, key="w.mode",
        help="Exact measures every window. Fast measures the coarser covers everywhere and the finest only where "
        "they matter, predicts the rest, and marks the map approximate.",
    )  # fmt: skip
    engine = how.radio(
        "Engine", list(ui.ENGINE_CHOICES), index=list(ui.ENGINE_CHOICES).index(now.engine),
        format_func=ui.ENGINE_CHOICES.get, horizontal=True, key="w.engine",
        help="How each window is computed; the numbers are the same. Dense runs every covered image through the "
        "whole network. Incremental recomputes only the part of each layer a cover can change (prepared once per "
        "network in the background). Auto uses incremental where it is prepared and gains, dense elsewhere.",
    )  # fmt: skip
    if not sizes:
        st.warning("Choose at least one cover size.", icon=":material/warning:")
        st.stop()
    settings = ui.MapSettings(tuple(sorted((ui.SIZE_CHOICES[s] for s in sizes), reverse=True)),
                              ui.STRIDE_CHOICES[stride], fill, colour, score, mode, engine)  # fmt: skip
    ui.set_settings(settings)
    cost = ui.cost_preview(choice, network, settings)
    key = ui.result_key(choice, photo, settings, target)
    ready = key in ui.results()
    st.caption(ui.cost_text(cost, settings.mode) + (" · this map is ready" if ready else ""))
    run_clicked = st.button("Run map", type="primary", icon=":material/play_arrow:", disabled=ready)
    ui.show_where_maps_run()
    run_area = st.container()

refining = st.empty()  # the map drawn while it refines; the final map replaces it
if run_clicked:
    with run_area:
        stop = ui.stop_button()
        finished = ui.run_map_with_progress(choice, network, photo, settings, target, preview=refining)
        stop.empty()
    if finished is not None:
        st.rerun()  # draw the finished map; its faithfulness check runs at the end of the page
    refining.empty()

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
story_slot.info(ui.plain(ui.story_text(result)), icon=":material/record_voice_over:")
if result.partial:
    st.warning(ui.plain(ui.partial_note(result, settings.sizes)), icon=":material/hourglass_bottom:")
if result.approximate:
    st.warning(ui.plain(ui.approximate_note(result)), icon=":material/speed:")
shown_key = key if exact else ui.last_key(photo, choice)
check_area = st.container()  # the queued faithfulness check's progress, run once the page is drawn
st.caption(ui.colour_key(result))
views = ["Overlay", "Brightness", "Per cover size", "Label flip", "Faithfulness", "Stability"]
tabs = st.tabs(views, key="w.view", on_change="rerun")
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
    if tabs[3].open and ui.view_note(result.score_kind, "label-flip"):
        st.info(ui.plain(ui.view_note(result.score_kind, "label-flip")), icon=":material/info:")
    elif tabs[3].open:
        size = st.selectbox("Cover size", range(len(result.sizes)), index=len(result.sizes) - 1,
                            format_func=lambda i: render.cover_title(result, i), key="w.flip_size")  # fmt: skip
        st.plotly_chart(render.label_flip_figure(result, size), key="chart.label_flip", height=560)
with tabs[4]:
    if tabs[4].open:
        numbers = render.faithfulness_numbers(result)
        if result.partial:
            st.info("A partial map gets no faithfulness check: run the map to the end first.", icon=":material/info:")
        elif ui.check_pending(shown_key):
            st.info("The faithfulness check runs now that the map is drawn: its numbers appear here when it is done.",
                    icon=":material/pending:")  # fmt: skip
        elif numbers is None:
            st.info("The faithfulness check of this map was stopped before it finished.", icon=":material/info:")
            ui.faithfulness_button(shown_key, "w.faithfulness")
        else:
            columns = st.columns(4)
            columns[0].metric(
                "Deletion AUC", f"{numbers['deletion_auc']:.3f}", delta_color="inverse",
                delta=f"{numbers['deletion_auc'] - numbers['random_deletion_auc']:+.3f} vs random",
                help="Area under the class probability as the map's strongest pixels are removed first: "
                "lower = faithful.",
            )  # fmt: skip
            columns[1].metric("Deletion AUC, random order", f"{numbers['random_deletion_auc']:.3f}")
            columns[2].metric(
                "Insertion AUC", f"{numbers['insertion_auc']:.3f}",
                delta=f"{numbers['insertion_auc'] - numbers['random_insertion_auc']:+.3f} vs random",
                help="Area under the class probability as the map's strongest pixels come back first into the "
                "blurred photo: higher = faithful.",
            )  # fmt: skip
            columns[3].metric("Insertion AUC, random order", f"{numbers['random_insertion_auc']:.3f}")
            st.caption(
                f"Reading: {render.FAITHFUL_READING}. {render.faithfulness_verdict(numbers)} "
                f"({numbers['passes']} forward passes, {numbers['random_orders']} random orders of patches as large "
                "as the finest cover.)"
            )
            st.plotly_chart(render.faithfulness_figure(result), key="chart.faithfulness", height=480)
with tabs[5]:
    if tabs[5].open:
        spread, score, across = ui.stability_numbers(shown_key, result)
        factor, unit = render.support_unit(result)
        st.metric(
            "Mean spread of the map", render.format_value(score * factor, unit, sign=False),
            help="Per pixel, the standard deviation of the support across the maps (cover sizes, and fills when "
            "maps with other fills were run); averaged over the image. 0 = every map agrees.",
        )  # fmt: skip
        hint = "" if " fills " in across else " Run the same map with another fill to include fills."
        st.caption(
            ui.plain(f"Across {across}.")
            + " Dark areas change from map to map: the explanation is unreliable there."
            + hint
        )
        figure = render.stability_figure(photo.image, result, spread=spread, score=score, across=across)
        st.plotly_chart(figure, key="chart.stability", height=640)

st.subheader("Pointing check")
st.caption(
    "Does the map point at the object? Drag a box around it on the photo (or type its edges): the share of the "
    "map's positive support inside the box, and whether its strongest point falls inside."
)
chart_column, side = st.columns([3, 2], gap="large")
box = ui.pointing_box(photo)
with side:
    typed = ui.box_inputs(photo, box)
if typed is not None and not ui.same_box(typed, box):
    ui.set_pointing_box(photo, typed)
    box = typed
with chart_column:
    event = st.plotly_chart(
        render.pointing_figure(photo.image, box, result), key="chart.pointing", height=520,
        on_select="rerun", selection_mode="box",
    )  # fmt: skip
picked = ui.box_from_selection(event.selection, photo.image.pixels.shape[:2])
if picked is not None and not ui.same_box(picked, box):
    ui.set_pointing_box(photo, picked, refresh_inputs=True)
    st.rerun()
with side:
    numbers = ui.apply_pointing(result, box)
    if box is None:
        st.caption("No box yet.")
    elif numbers is None:
        st.warning("The network does not see this box (it lies outside its crop).", icon=":material/warning:")
    else:
        first, second, third = st.columns(3)
        first.metric("Support inside", f"{numbers['share_inside']:.0%}", help="Share of the positive support.")
        second.metric("Peak inside", "yes" if numbers["peak_inside"] else "no", help="The strongest point (✕).")
        third.metric("Box area", f"{numbers['box_area']:.0%}", help="A map spread evenly would put this share inside.")
        verdict = "points at the box" if numbers["share_inside"] > numbers["box_area"] else "does not point at the box"
        st.caption(
            f"{numbers['share_inside']:.0%} of the positive support lies in a box covering {numbers['box_area']:.0%} "
            f"of the image: the map {verdict}."
        )
    if box is not None:
        st.button(
            "Clear box", icon=":material/close:", key="w.box.clear",
            on_click=ui.set_pointing_box, args=(photo, None), kwargs={"refresh_inputs": True},
        )  # fmt: skip

with check_area:  # after the whole page is drawn: the check never delays the map
    ui.run_pending_checks(photo, [(choice, network, shown_key)])
