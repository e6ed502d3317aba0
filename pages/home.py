"""Home: what sensmap is, how to use it, which networks are ready."""

from __future__ import annotations

import streamlit as st

from sensmap import ui

st.title("sensmap: where does the classifier look?")
st.markdown(
    "A famous classifier told wolves from huskies by looking at the **snow** behind them, not at the animal. "
    "sensmap shows where a network looks: it covers parts of your photo, one patch at a time, and measures how "
    "much the class probability drops."
)

st.subheader("How to use it")
st.markdown(
    "1. **Photos**: upload one or more photos (or add the samples) and choose the active one.\n"
    "2. **Networks**: pick network A (and B to compare); networks marked *ready* need no download.\n"
    "3. **Map**: check the top-5 classes, pick the class to explain, press **Run map**.\n"
    "4. **Compare** two networks on one colour scale, then download a **Report** (PNG, HTML or raw .npz)."
)
st.caption(ui.COLOUR_KEY)

st.subheader("Networks ready on this machine")
ready = [entry for entry in ui.catalogue() if entry.group == ui.READY_GROUP]
if ready:
    st.markdown(
        "\n".join(f"- **{ui.plain(e.choice.label)}**: input {e.input_size[1]}×{e.input_size[0]} px" for e in ready)
    )
else:
    st.info(
        "No local weights folder is set (SENSMAP_WEIGHTS_DIR). Keras Applications networks download their "
        "ImageNet weights on first use.",
        icon=":material/info:",
    )

photo, network = ui.active_photo(), ui.network_choice("A")
st.caption(
    f"This session: {len(ui.photos())} photo(s)"
    + (f", active: {ui.plain(photo.name)}" if photo else "")
    + (f"; network A: {ui.plain(network.label)}" if network else "")
)
