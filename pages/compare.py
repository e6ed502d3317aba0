"""Compare: networks A and B on the same photo, one colour scale, their difference, agreement and faithfulness."""

from __future__ import annotations

import streamlit as st

from sensmap import render, ui

st.title("Compare")
ui.show_stopped_run()
needs = "Compare needs a photo (Photos) and two networks, A and B (Networks)."
photo, [(choice_a, network_a), (choice_b, network_b)] = ui.page_inputs("AB", needs)

settings = ui.settings()
target_a = ui.target_for(choice_a, network_a, photo)
fallback = ui.target_for(choice_b, network_b, photo)
target_b = ui.same_class(network_b, network_a.labels[target_a], fallback)
jobs = [(choice_a, network_a, target_a), (choice_b, network_b, target_b)]
keys = [ui.result_key(choice, photo, settings, target) for choice, _, target in jobs]
st.caption(
    ui.plain(f"{photo.name} · class '{network_a.labels[target_a]}' · settings of the Map page: ")
    + ui.plain(ui.describe_settings(settings))
)
missing = [job for job, key in zip(jobs, keys, strict=True) if key not in ui.results()]
if missing:
    names = " and ".join(ui.plain(choice.label) for choice, _, _ in missing)
    if st.button(f"Run comparison ({names})", type="primary", icon=":material/play_arrow:"):
        stop = ui.stop_button()
        refining = st.empty()  # each map drawn while it refines
        if all(ui.run_map_with_progress(c, n, photo, settings, t, preview=refining) is not None for c, n, t in missing):
            st.rerun()  # draw the comparison; the faithfulness checks run at the end of the page
        stop.empty()
        refining.empty()
results = [ui.results().get(key) for key in keys]
if any(result is None for result in results):
    st.info("Press **Run comparison** to compute the missing map(s).", icon=":material/info:")
    ui.show_partial_maps(photo, [(choice.label, key) for (choice, _, _), key in zip(jobs, keys, strict=True)])
    st.stop()
result_a, result_b = results

check_area = st.container()  # the queued faithfulness checks' progress, run once the page is drawn
columns = st.columns(4)
for column, role, (choice, _, _), result, key in zip(columns, "AB", jobs, results, keys, strict=False):
    hidden = ui.view_note(result.score_kind, "top-k")  # a score without classes (similarity, custom)
    if hidden:
        column.metric(f"{role}: {ui.plain(choice.label)}", result.score_kind, help=hidden)
    else:
        _, name, probability = result.top_k(1)[0]
        column.metric(f"{role}: {ui.plain(choice.label)}, top-1", name, help=f"probability {ui.percent(probability)}")
    faithfulness = render.faithfulness_numbers(result)
    with column:
        if ui.check_pending(key):
            st.caption("faithfulness check: runs now that the maps are drawn…")
        elif faithfulness is None:
            ui.faithfulness_button(key, f"w.faithfulness.{role}")
        else:
            st.caption(
                ui.plain(render.auc_summary(faithfulness)),
                help=f"{render.FAITHFUL_READING}. {render.faithfulness_verdict(faithfulness)}",
            )
numbers = ui.agreement_numbers(photo, result_a, result_b)
columns[2].metric(
    "Spearman rank correlation", f"{numbers['spearman']:+.2f}",
    help="How similarly the two maps rank the areas: 1 = same order, 0 = unrelated, −1 = opposite.",
)  # fmt: skip
columns[3].metric(
    f"Top {numbers['q']:.0%} overlap (IoU)", f"{numbers['top_iou']:.2f}",
    help="Intersection over union of the areas each network relies on most: 1 = same area, 0 = disjoint.",
)  # fmt: skip
if result_a.target_name != result_b.target_name:
    st.info(
        ui.plain(f"{choice_b.label} has no class '{result_a.target_name}': its map is for its own top-1 class."),
        icon=":material/info:",
    )
for role, result in zip("AB", results, strict=True):
    if result.approximate:
        st.warning(ui.plain(f"{role}: {ui.approximate_note(result)}"), icon=":material/speed:")
figure = ui.wrap_subplot_titles(render.compare_figure(photo.image, result_a, result_b))
st.plotly_chart(figure, key="chart.compare", height=480)
st.caption(ui.colour_key(result_a) + " " + ui.DIFFERENCE_KEY)

with check_area:  # after the whole page is drawn: the checks never delay the comparison
    ui.run_pending_checks(photo, [(choice, network, key) for (choice, network, _), key in zip(jobs, keys, strict=True)])
