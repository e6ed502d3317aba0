"""sensmap dashboard: ``streamlit run app.py`` (or ``bash run.sh``)."""

from __future__ import annotations

import streamlit as st

from sensmap import ui

st.set_page_config(page_title="sensmap", page_icon=":material/target:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/photos.py", title="Photos", icon=":material/photo_library:"),
    st.Page("pages/networks.py", title="Networks", icon=":material/hub:"),
    st.Page("pages/map.py", title="Map", icon=":material/layers:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("pages/methods.py", title="Methods", icon=":material/difference:"),
    st.Page("pages/report.py", title="Report", icon=":material/download:"),
    st.Page("pages/audit.py", title="Audit", icon=":material/dataset:"),
]
ui.collect_uploads()  # photos read since the last run join the session on every page
st.navigation(pages).run()
