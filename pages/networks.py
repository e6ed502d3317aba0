"""Networks: the catalogue (ready, Keras Applications by family, own models) and the choice of A and B."""

from __future__ import annotations

import streamlit as st

from sensmap import ui

st.title("Networks")
st.write(
    "Network **A** is explained on the Map page; network **B** is compared with it on the Compare page. "
    "*Ready* networks have their weights on this machine; others download ImageNet weights on first use."
)

entries = ui.choice_labels()
labels = list(entries)
NONE = "— none —"


def describe(label: str) -> str:
    entry = entries.get(label)
    return label if entry is None else f"{label} · {entry.status}"


for role, title in (("A", "Network A (explained)"), ("B", "Network B (for comparison)")):
    current = ui.network_choice(role)
    options = labels if role == "A" else [NONE, *labels]
    current_label = current.label if current is not None else NONE
    if current is not None and current_label not in entries:  # e.g. the weights folder changed
        options = [current_label, *options]
    picked = st.selectbox(
        title, options, index=options.index(current_label) if current_label in options else 0,
        format_func=describe, key=f"w.network.{role}",
    )  # fmt: skip
    choice = entries[picked].choice if picked in entries else (None if picked == NONE else current)
    if choice != current:
        ui.set_network_choice(role, choice)
    if choice is None:
        continue
    if ui.load_on_open(choice, changed=choice != current):
        network = ui.load_network(choice)
        if network is not None:
            height, width = network.input_size
            outputs = f"{network.num_classes} " + ("classes" if ui.has_classes(network) else network.output_kind)
            st.caption(
                ui.plain(
                    f"{choice.label}: loaded, input {width}×{height} px, {network.parameter_count:,} parameters, "
                    f"{outputs}, preprocessing {network.preprocess_name}" + "".join(f"; {n}" for n in network.notes)
                )
            )
    elif st.button(
        f"{'Download and load' if choice.weights_state() == 'download' else 'Load'} {ui.plain(choice.label)} now",
        key=f"w.load.{role}", icon=":material/download:",
        help="Optional: the Map and Compare pages load the networks they need.",
    ):  # fmt: skip
        if ui.load_network(choice) is not None:  # loaded: show it as loaded; a failure stays on screen
            st.rerun()

st.subheader("Catalogue")
groups: dict[str, list[ui.CatalogueEntry]] = {}
for entry in entries.values():
    groups.setdefault(entry.group, []).append(entry)
for group, members in groups.items():
    ready = sum(1 for m in members if m.status == "ready")
    with st.expander(f"{group} ({len(members)})", expanded=group == ui.READY_GROUP, icon=":material/hub:"):
        rows = [
            {
                "network": m.choice.label,
                "input": f"{m.input_size[1]}×{m.input_size[0]} px" if m.input_size[0] else "from the file",
                "parameters": m.params,
                "weights": m.status,
            }
            for m in members
        ]
        st.dataframe(rows, hide_index=True, width="stretch")
        if group == ui.OWN_GROUP:
            st.caption("Own models come from the operator's SENSMAP_MODELS_DIR folder (never uploaded here).")
        elif ready:
            st.caption(f"{ready} ready on this machine (weights in SENSMAP_WEIGHTS_DIR).")
if ui.OWN_GROUP not in groups:
    st.caption(
        "Own models: the operator can put Keras 3 .keras and ONNX .onnx files into a folder named by "
        "SENSMAP_MODELS_DIR, with an optional same-name .txt of class names (one per line) or a same-name .json "
        "sidecar (labels, preprocessing, output kind; see the README). Without one they get raw 0..255 RGB pixels."
    )
