"""The session-state model: the ``st.session_state`` keys of the dashboard and :func:`state`.

Per browser session; nothing is shared between sessions except the ``st.cache_resource`` values
(the cached, read-only networks of :func:`sensmap.ui.networks.load_network` and the per-pass timing
of :mod:`sensmap.ui.costs`).

* ``sensmap.photos``: ``{sha256: PhotoEntry}`` in the order added; ``sensmap.active_photo``:
  the sha256 of the photo being explained; ``sensmap.uploader_generation`` and
  ``sensmap.upload_messages``: the upload widget's generation and the last uploads' outcome;
  ``sensmap.pending_uploads``: the uploads being read in the background (:mod:`sensmap.ui.uploads`);
  ``sensmap.seen_uploads``: the upload ids already queued for reading (each file is read once).
* ``sensmap.network.A`` / ``sensmap.network.B``: the chosen :class:`NetworkChoice` (or None);
  ``sensmap.loaded_networks``: the keys of the networks this session loaded.
* ``sensmap.settings``: the :class:`MapSettings` of the Map page (shared with Compare and Report);
  ``sensmap.targets``: ``{(sha256, network key): class index}`` chosen on the Map page;
  ``sensmap.top_classes``: ``{(sha256, network key): top-5 classes}``.
* ``sensmap.results``: ``{ResultKey: SensitivityResult}`` (most recent :data:`MAX_RESULTS`; occlusion maps and
  the Methods page's Grad-CAM and RISE maps); ``sensmap.last``: ``{(sha256, network key): ResultKey}`` of the last
  finished occlusion map. A map's randomisation check is kept in its ``metadata["sanity"]``.
* ``sensmap.partial``: ``{ResultKey: SensitivityResult}`` the last partial map of a stopped run (marked partial),
  until the map finishes; ``sensmap.checks``: the ResultKeys of finished maps whose faithfulness check is
  waiting to run (it runs after the map is drawn).
* ``sensmap.rise``: the Methods page's :class:`RiseChoice` (RISE masks, grid and seed).
* ``sensmap.running``: set while a map runs, removed when it ends; still set on the next run
  means the run was interrupted (Stop, or any other click) — see :func:`show_stopped_run`.
* ``sensmap.boxes``: ``{sha256: (y0, x0, y1, x1)}`` the pointing-check box of each photo, in
  fractions of the photo; ``sensmap.box_inputs``: ``{sha256: n}`` the generation of its number inputs.
* ``sensmap.queue_id``: the session's id in the shared job queue (:mod:`sensmap.ui.scheduling`).
* ``sensmap.reports``: the PNG reports of this session (most recent :data:`MAX_REPORTS`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

K_PHOTOS = "sensmap.photos"
K_ACTIVE = "sensmap.active_photo"
K_UPLOADER = "sensmap.uploader_generation"
K_UPLOAD_MESSAGES = "sensmap.upload_messages"
K_PENDING_UPLOADS = "sensmap.pending_uploads"
K_SEEN_UPLOADS = "sensmap.seen_uploads"
K_NETWORK = {"A": "sensmap.network.A", "B": "sensmap.network.B"}
K_LOADED = "sensmap.loaded_networks"
K_SETTINGS = "sensmap.settings"
K_TARGETS = "sensmap.targets"
K_TOP = "sensmap.top_classes"
K_RESULTS = "sensmap.results"
K_LAST = "sensmap.last"
K_PARTIAL = "sensmap.partial"
K_CHECKS = "sensmap.checks"
K_RUNNING = "sensmap.running"
K_REPORTS = "sensmap.reports"
K_BOXES = "sensmap.boxes"
K_BOX_INPUTS = "sensmap.box_inputs"
K_RISE = "sensmap.rise"
K_QUEUE_ID = "sensmap.queue_id"


def state(key: str, default: Callable[[], Any]) -> Any:
    """``st.session_state[key]``, set to ``default()`` first when the session has none."""
    if key not in st.session_state:
        st.session_state[key] = default()
    return st.session_state[key]
