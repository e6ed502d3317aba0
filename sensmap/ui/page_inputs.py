"""What a page needs before it can show anything: the active photo and loaded networks; without them the page
says where to get them and stops."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from .networks import load_network, network_choice
from .photo_store import active_photo, show_upload_messages
from .uploads import rerun_when_a_photo_arrives, wait_for_uploads

if TYPE_CHECKING:
    from ..models import Network
    from .networks import NetworkChoice
    from .photo_store import PhotoEntry


def page_inputs(roles: str, needs: str) -> tuple[PhotoEntry, list[tuple[NetworkChoice, Network]]]:
    """The active photo and ``(choice, loaded network)`` of each role in ``roles`` (``"A"`` or ``"AB"``), once the
    session's pending uploads are read (:func:`~sensmap.ui.uploads.wait_for_uploads`).

    Without a photo or a chosen network the page shows ``needs`` with a link to the Photos or Networks page and
    stops; a network that fails to load shows its error (:func:`~sensmap.ui.networks.load_network`) and stops it.
    """
    wait_for_uploads()  # a photo sent just before this page opened is read first, never reported missing
    photo, choices = active_photo(), [network_choice(role) for role in roles]
    if photo is None or any(choice is None for choice in choices):
        if photo is None:
            show_upload_messages(errors_only=True)
            rerun_when_a_photo_arrives()
        st.info(needs, icon=":material/info:")
        where = "pages/photos.py" if photo is None else "pages/networks.py"
        st.page_link(where, label="Go there", icon=":material/east:")
        st.stop()
    networks = [load_network(choice) for choice in choices]
    if any(network is None for network in networks):
        st.stop()
    return photo, list(zip(choices, networks, strict=True))
