"""Uploads that are never lost: each sent photo is read in the background and every page sees it.

The upload widget's ``on_change`` callback (:func:`queue_uploads`) runs at the start of the next script run,
whichever page that run shows: a user who opens the Map page right after sending a photo still gets it read.
It only hands the bytes to a background thread (:func:`prepare_photo`: decode, fit and thumbnail), so no click
can interrupt the reading halfway. The session keeps the pending uploads; :func:`collect_uploads` adds the photos
that are ready (every page calls it first), and a page that needs a photo waits for the pending ones with a
spinner (:func:`wait_for_uploads`) instead of saying "add a photo".
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from ..errors import SensmapError
from .photo_store import add_photo, prepare_photo, uploader_key
from .session import K_PENDING_UPLOADS, K_UPLOAD_MESSAGES, K_UPLOADER, state
from .text import plain

UPLOAD_THREADS = 2  # photos read at once, for all sessions together


@dataclass(frozen=True)
class PendingUpload:
    """An upload being read: the file name and the future :class:`~sensmap.ui.photo_store.PhotoEntry`."""

    name: str
    future: concurrent.futures.Future


@st.cache_resource(show_spinner=False)
def upload_readers() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that read uploaded photos (shared by all sessions; each upload is one task)."""
    return concurrent.futures.ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="sensmap-upload")


def start_uploads(files: Sequence[Any]) -> list[PendingUpload]:
    """Start reading uploaded files (objects with ``name`` and ``getvalue()``) in the background."""
    readers = upload_readers()
    return [PendingUpload(f.name, readers.submit(prepare_photo, f.name, f.getvalue())) for f in files]


def queue_uploads() -> None:
    """The upload widget's ``on_change``: queue the sent files for reading and empty the widget."""
    files = st.session_state.get(uploader_key()) or []
    if not isinstance(files, list):
        files = [files]
    if files:
        state(K_PENDING_UPLOADS, list).extend(start_uploads(files))
        st.session_state[K_UPLOAD_MESSAGES] = []
        st.session_state[K_UPLOADER] = st.session_state.get(K_UPLOADER, 0) + 1


def pending_uploads() -> list[str]:
    """The names of this session's uploads still being read."""
    return [p.name for p in st.session_state.get(K_PENDING_UPLOADS, []) if not p.future.done()]


def collect_uploads() -> int:
    """Add this session's uploads that are read (a refused file gets an error line); the number still pending."""
    pending = st.session_state.get(K_PENDING_UPLOADS)
    if not pending:
        return 0
    messages = state(K_UPLOAD_MESSAGES, list)
    for upload in [p for p in pending if p.future.done()]:
        pending.remove(upload)
        try:
            image = add_photo(upload.future.result())
        except SensmapError as exc:
            messages.append(("error", str(exc)))
            continue
        notes = f" ({'; '.join(image.notes)})" if image.notes else ""
        messages.append(("success", f"added {image.source}{notes}"))
    return len(pending)


def wait_for_uploads() -> None:
    """Wait, with a spinner, until this session's uploads are read, then add them (:func:`collect_uploads`)."""
    names = pending_uploads()
    if names:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        with st.spinner(plain(f"Reading your upload: {shown}…")):
            concurrent.futures.wait([p.future for p in st.session_state.get(K_PENDING_UPLOADS, [])])
    collect_uploads()
