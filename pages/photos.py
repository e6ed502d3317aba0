"""Photos: upload, add samples, choose the active photo, remove."""

from __future__ import annotations

import streamlit as st

from sensmap import SensmapError, ui

st.title("Photos")
st.write("Add the photos to explain. They stay in this browser session only.")

st.file_uploader(
    "Drag and drop photos here (JPEG, PNG, WebP, BMP, TIFF or GIF)",
    type=ui.PHOTO_TYPES,
    accept_multiple_files=True,
    key=ui.uploader_key(),
    on_change=ui.queue_uploads,  # runs on the next run, whichever page it shows: a sent upload is never lost
)
ui.wait_for_uploads()
ui.show_upload_messages()

with st.expander("Sample photos (CC0)", icon=":material/image:"):
    columns = st.columns(len(ui.sample_names()))
    for column, name in zip(columns, ui.sample_names(), strict=True):
        if column.button(f"Add {name}", key=f"w.sample.{name}", icon=":material/add_photo_alternate:"):
            try:
                ui.add_sample_photo(name)
            except SensmapError as exc:
                ui.show_error(exc)
    st.markdown(ui.sample_licence())

store = ui.photos()
active = ui.active_photo()
if not store:
    st.info("No photos yet: upload one above or add a sample photo.", icon=":material/info:")
    st.stop()

st.subheader(f"{len(store)} photo(s)")
PER_ROW = 3
entries = list(store.values())
for start in range(0, len(entries), PER_ROW):
    columns = st.columns(PER_ROW)
    for column, entry in zip(columns, entries[start : start + PER_ROW], strict=False):
        with column.container(border=True):
            is_active = active is not None and entry.sha256 == active.sha256
            st.image(entry.thumbnail, width="stretch")
            st.markdown(f"**{ui.plain(entry.name)}**" + (" · :orange-badge[active]" if is_active else ""))
            st.caption(ui.plain(entry.description))
            if entry.credit:
                st.caption(ui.plain(f"Credit: {entry.credit}"))
            with st.container(horizontal=True, gap="small"):
                if st.button("Use", key=f"w.use.{entry.sha256[:16]}", disabled=is_active, icon=":material/check:"):
                    ui.set_active_photo(entry.sha256)
                    st.rerun()
                if st.button("Remove", key=f"w.remove.{entry.sha256[:16]}", icon=":material/delete:"):
                    ui.remove_photo(entry.sha256)
                    st.rerun()
