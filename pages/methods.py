"""Methods: occlusion, Grad-CAM and RISE for network A and the active photo side by side — agreement, faithfulness
against one random baseline, the map the network follows best, and the randomisation sanity check."""

from __future__ import annotations

import streamlit as st

from sensmap import render, ui
from sensmap.sidebyside import VERDICT_RULE

st.title("Methods")
ui.show_stopped_run()
photo, [(choice, network)] = ui.page_inputs("A", "The methods need a photo (Photos) and network A (Networks).")

target = ui.target_for(choice, network, photo)
settings = ui.settings()
st.caption(
    ui.plain(f"{photo.name} · {choice.label} · class '{network.labels[target]}' (the Map page's) · occlusion with the ")
    + ui.plain(f"Map page's settings ({ui.describe_settings(settings)}); Grad-CAM and RISE with its fill and score.")
)
rise = ui.rise_choice()
masks_column, grid_column, seed_column = st.columns(3)
masks = masks_column.select_slider(
    "RISE masks (one forward pass each)", list(ui.MASK_CHOICES), value=rise.masks, key="w.rise.masks",
    help="More masks, less Monte Carlo noise in the RISE map; the cost grows with them.",
)  # fmt: skip
grid = grid_column.select_slider(
    "RISE mask grid (cells per side)", list(ui.GRID_CHOICES), value=rise.grid, key="w.rise.grid",
    help="Each random mask keeps or covers the cells of a grid this fine (then smoothed): finer grids, finer maps.",
)  # fmt: skip
seed = seed_column.number_input(
    "RISE seed", min_value=0, max_value=2**31 - 1, value=rise.seed, step=1, key="w.rise.seed",
    help="The same seed draws the same masks: the same map, at any batch size.",
)  # fmt: skip
rise = ui.RiseChoice(int(masks), int(grid), int(seed))
ui.set_rise_choice(rise)
values = ui.method_settings(settings, rise)
found = ui.method_results(choice, photo, values, target)
cost = ui.methods_cost(choice, network, values, found)
ready = ui.methods_ready(found)
st.caption(
    f"Cost: {cost.passes:,} forward passes ({cost.map_passes:,} for the maps + {cost.check_passes:,} for their "
    f"faithfulness checks), about {cost.seconds:.0f} s on this machine" + (" · these maps are ready" if ready else "")
)
if st.button("Run methods", type="primary", icon=":material/play_arrow:", disabled=ready, key="w.methods.run"):
    stop = ui.stop_button()
    finished = ui.run_methods(choice, network, photo, values, target)
    stop.empty()
    if finished is not None:
        st.rerun()  # the cost line and the button say the maps are ready
if not ui.methods_ready(found):
    st.info("Press **Run methods** to compute the missing maps and checks.", icon=":material/info:")
    st.stop()

comparison = ui.methods_comparison(photo, found)
for result in found:
    if result.approximate:
        st.warning(ui.plain(ui.approximate_note(result)), icon=":material/speed:")
figure = ui.wrap_subplot_titles(render.methods_figure(photo.image, found))
st.plotly_chart(figure, key="chart.methods", height=520)
for result in found:
    st.caption(f"**{ui.plain(result.method_label)}**: " + ui.colour_key(result))

agreement_column, faithfulness_column = st.columns(2)
with agreement_column:
    st.markdown("**Agreement of the maps** (on the photo grid)")
    st.dataframe(
        [{"maps": pair, "Spearman": rho, "top-20 % IoU": iou} for pair, rho, iou in comparison.agreement_rows()],
        hide_index=True, width="stretch",
    )  # fmt: skip
    st.caption("Spearman: 1 = same ranking of the areas, 0 = unrelated. IoU of the top 20 %: 1 = same area.")
with faithfulness_column:
    st.markdown(f"**Faithfulness** against one random baseline ({comparison.block} px patches)")
    st.dataframe(
        [{"method": method, "deletion AUC": deletion, "insertion AUC": insertion, "margin over random": margin}
         for method, deletion, insertion, margin in comparison.faithfulness_rows()],
        hide_index=True, width="stretch",
    )  # fmt: skip
    st.caption(f"Reading: {render.FAITHFUL_READING}.")
verdict = st.success if comparison.best is not None else st.warning
verdict(ui.plain(comparison.verdict), icon=":material/gavel:")
st.caption(VERDICT_RULE)

st.subheader("Sanity check: randomise the network's weights")
st.caption(
    "A map that explains the network must change when its learnt weights are destroyed. On a copy of the network "
    "the weighted layers are re-initialised from the output down, in steps, and each map is made again: the curve "
    "is its Spearman correlation with the original. A map still correlated (|ρ| ≥ 0.5) with every layer random "
    "shows the photo's structure, not what the network learnt: not trustworthy."
)
jobs = ui.sanity_jobs(values, found)
if jobs:
    check = ui.sanity_cost(choice, network, jobs)
    names = ", ".join(result.method_label for _, result in jobs)
    label = f"Run sanity check ({names}: {check.passes:,} forward passes, about {check.seconds:.0f} s)"
    if st.button(label, icon=":material/shuffle:", key="w.sanity.run"):
        stop = ui.stop_button()
        finished = ui.run_sanity(choice, network, photo, jobs)
        stop.empty()
        if finished:
            st.rerun()
if comparison.sanity:
    st.plotly_chart(render.sanity_figure(found), key="chart.sanity", height=440)
    st.dataframe(
        [{"method": method, "Spearman per step (layers random)": steps, "outcome": outcome}
         for method, steps, outcome in comparison.sanity_rows()],
        hide_index=True, width="stretch",
    )  # fmt: skip
    for check in comparison.sanity.values():
        shown = st.success if check["trustworthy"] else st.error
        shown(ui.plain(check["verdict"]), icon=":material/verified:" if check["trustworthy"] else ":material/block:")
