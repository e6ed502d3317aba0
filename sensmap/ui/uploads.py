"""Uploads that are never lost: each sent photo is read in the background and every page sees it.

The upload widget's ``on_change`` callback (:func:`queue_uploads`) runs at the start of the next script run,
whichever page that run shows: a user who opens the Map page right after sending a photo still gets it read.
A sent file whose widget value never reaches a run (the browser's page switch can replace the upload's rerun
request before the server starts it, and Streamlit then drops the value) is still in Streamlit's upload store:
:func:`claim_sent_files` takes it from there. Either way the bytes go to a background thread
(:func:`prepare_photo`: decode, fit and thumbnail), so no click can interrupt the reading halfway, and each file
(by its upload id) is read once. The session keeps the pending uploads; :func:`collect_uploads` adds the photos
that are ready (every page calls it first), and a page that needs a photo waits for the pending ones with a
spinner (:func:`wait_for_uploads`) instead of saying "add a photo"; one that has none to show reruns when an upload
arrives late (:func:`rerun_when_a_photo_arrives`).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from ..errors import SensmapError
from .photo_store import add_photo, prepare_photo, uploader_key
from .session import K_PENDING_UPLOADS, K_SEEN_UPLOADS, K_UPLOAD_MESSAGES, K_UPLOADER, state
from .text import plain

UPLOAD_THREADS = 2  # photos read at once, for all sessions together
WATCH_EVERY_S = 1.5  # how often a page without a photo looks for one that arrived late


@dataclass(frozen=True)
class PendingUpload:
    """An upload being read: the file name, the future :class:`~sensmap.ui.photo_store.PhotoEntry` and the upload's
    id in Streamlit's upload store (its bytes are dropped from there once read)."""

    name: str
    future: concurrent.futures.Future
    file_id: str = ""


@st.cache_resource(show_spinner=False)
def upload_readers() -> concurrent.futures.ThreadPoolExecutor:
    """The threads that read uploaded photos (shared by all sessions; each upload is one task)."""
    return concurrent.futures.ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="sensmap-upload")


def start_uploads(files: Sequence[tuple[str, str, bytes]]) -> list[PendingUpload]:
    """Start reading uploaded files, ``(upload id, name, bytes)`` each, in the background."""
    readers = upload_readers()
    return [PendingUpload(name, readers.submit(prepare_photo, name, data), file_id) for file_id, name, data in files]


def _queue(files: Sequence[tuple[str, str, bytes]]) -> None:
    """Queue ``(upload id, name, bytes)`` files for reading, each id once per session, and empty the widget."""
    seen = state(K_SEEN_UPLOADS, set)
    fresh = [file for file in files if file[0] not in seen]
    seen.update(file_id for file_id, _, _ in files)
    if fresh:
        if not pending_uploads():
            st.session_state[K_UPLOAD_MESSAGES] = []
        state(K_PENDING_UPLOADS, list).extend(start_uploads(fresh))
    st.session_state[K_UPLOADER] = st.session_state.get(K_UPLOADER, 0) + 1


def queue_uploads() -> None:
    """The upload widget's ``on_change``: queue the sent files for reading and empty the widget."""
    files = st.session_state.get(uploader_key()) or []
    if not isinstance(files, list):
        files = [files]
    if files:
        _queue([(f.file_id, f.name, f.getvalue()) for f in files])


def claim_sent_files() -> None:
    """Queue the files this session sent that no widget value brought to a run (see the module notes), from
    Streamlit's in-memory upload store (its default; with another store only the widget's callback reads)."""
    ctx = get_script_run_ctx()
    manager = getattr(ctx, "uploaded_file_mgr", None)
    storage, lock = getattr(manager, "file_storage", None), getattr(manager, "_lock", None)
    if ctx is None or not isinstance(storage, dict) or lock is None:
        return
    with lock:
        records = list(storage.get(ctx.session_id, {}).values())
    seen = st.session_state.get(K_SEEN_UPLOADS, set())
    unclaimed = [(r.file_id, r.name, r.data) for r in records if r.file_id not in seen]
    if unclaimed:
        _queue(unclaimed)


def pending_uploads() -> list[str]:
    """The names of this session's uploads still being read."""
    return [p.name for p in st.session_state.get(K_PENDING_UPLOADS, []) if not p.future.done()]


def collect_uploads() -> None:
    """Claim the files sent without a widget value (:func:`claim_sent_files`), then add this session's uploads that
    are read (:func:`_add_read_uploads`)."""
    claim_sent_files()
    _add_read_uploads()


def _add_read_uploads() -> None:
    """Add this session's uploads that are read; a refused file gets an error line."""
    pending = st.session_state.get(K_PENDING_UPLOADS)
    if not pending:
        return
    messages = state(K_UPLOAD_MESSAGES, list)
    ctx = get_script_run_ctx()
    for upload in [p for p in pending if p.future.done()]:
        pending.remove(upload)
        if ctx is not None and upload.file_id:  # read: Streamlit need not keep its bytes for this session
            ctx.uploaded_file_mgr.remove_file(ctx.session_id, upload.file_id)
        try:
            image = add_photo(upload.future.result())
        except SensmapError as exc:
            messages.append(("error", str(exc)))
            continue
        notes = f" ({'; '.join(image.notes)})" if image.notes else ""
        messages.append(("success", f"added {image.source}{notes}"))


def wait_for_uploads() -> None:
    """Claim the files sent without a widget value, wait with a spinner until this session's uploads are read, then
    add them."""
    claim_sent_files()
    names = pending_uploads()
    if names:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        futures = [p.future for p in st.session_state.get(K_PENDING_UPLOADS, [])]
        with st.spinner(plain(f"Reading your upload: {shown}…")):
            mark = st.empty()
            while concurrent.futures.wait(futures, timeout=0.25).not_done:
                mark.empty()  # a Streamlit call: a click elsewhere ends this wait at once (the reading goes on)
    _add_read_uploads()


@st.fragment(run_every=WATCH_EVERY_S)
def rerun_when_a_photo_arrives() -> None:
    """For a page that has no photo to show: every :data:`WATCH_EVERY_S` seconds, look for an upload that arrived
    since (a transfer that ended after the user left the Photos page sends no rerun of its own) and rerun the page
    once it has one to read."""
    claim_sent_files()
    if st.session_state.get(K_PENDING_UPLOADS):  # being read, or read and not added yet
        st.rerun()
