"""The session's photos: uploads, the bundled sample photos and the active photo."""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass, field

import numpy as np
import streamlit as st

from ..images import LoadedImage, load_image
from .session import K_ACTIVE, K_PHOTOS, K_RESULTS, K_UPLOAD_MESSAGES, K_UPLOADER, state
from .text import plain

PHOTO_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"]
THUMBNAIL_SIDE = 320

SAMPLE_PHOTOS: dict[str, tuple[str, str]] = {
    "chelsea.jpg": ("Chelsea the cat", "Chelsea the cat, scikit-image (Stéfan van der Walt), CC0 1.0"),
    "coffee.jpg": ("a cup of espresso", "Coffee, scikit-image (Rachel Michetti), CC0 1.0"),
}


@dataclass(frozen=True, eq=False)
class PhotoEntry:
    """A photo of this session: its name, pixels, credit line and a small thumbnail."""

    name: str
    image: LoadedImage
    credit: str | None = None
    thumbnail: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    @property
    def sha256(self) -> str:
        return self.image.sha256

    @property
    def description(self) -> str:
        h, w = self.image.original_size
        text = f"{w}×{h} px" + (f", {self.image.format}" if self.image.format else "")
        return text + ("; " + "; ".join(self.image.notes) if self.image.notes else "")


def photos() -> dict[str, PhotoEntry]:
    """This session's photos, ``{sha256: PhotoEntry}`` in the order added."""
    return state(K_PHOTOS, dict)


def prepare_photo(name: str, data: bytes, credit: str | None = None) -> PhotoEntry:
    """Read ``data`` with :func:`sensmap.load_image` and make its thumbnail: the photo ready to add (no Streamlit
    call, so uploads are prepared in a background thread, see :mod:`sensmap.ui.uploads`). Raises
    :class:`~sensmap.errors.ImageError` for a file that is not a usable photo."""
    from ..render import display_pixels

    name = os.path.basename(str(name).replace("\\", "/")) or "photo"
    image = load_image(bytes(data), name=name)
    return PhotoEntry(name=name, image=image, credit=credit, thumbnail=display_pixels(image.pixels, THUMBNAIL_SIDE))


def add_photo(entry: PhotoEntry) -> LoadedImage:
    """Add a prepared photo to the session's photos (once per content); the first photo becomes the active one."""
    store = photos()
    store.setdefault(entry.sha256, entry)
    if st.session_state.get(K_ACTIVE) not in store:
        st.session_state[K_ACTIVE] = entry.sha256
    return entry.image


def add_photo_bytes(name: str, data: bytes, credit: str | None = None) -> LoadedImage:
    """Read ``data`` (:func:`prepare_photo`) and add it to the session's photos (:func:`add_photo`).

    The sample buttons (and tests) come through here; uploads are prepared in the background
    (:mod:`sensmap.ui.uploads`). Raises :class:`~sensmap.errors.ImageError` for a file that is not a usable photo;
    the photos already added stay.
    """
    return add_photo(prepare_photo(name, data, credit))


def uploader_key() -> str:
    """Key of the upload widget; it changes after each upload so the widget empties."""
    return f"w.upload.{st.session_state.get(K_UPLOADER, 0)}"


def show_upload_messages(errors_only: bool = False) -> None:
    """The outcome of the last uploads: one error per refused file, one line per added photo (not shown with
    ``errors_only``)."""
    for kind, text in st.session_state.get(K_UPLOAD_MESSAGES, []):
        if kind == "error":
            st.error(plain(text), icon=":material/error:")
        elif not errors_only:
            st.success(plain(text), icon=":material/check:")


def sample_names() -> list[str]:
    return list(SAMPLE_PHOTOS)


def add_sample_photo(file_name: str) -> LoadedImage:
    """Add one of the sample photos shipped with sensmap (CC0, see :func:`sample_licence`)."""
    data = importlib.resources.files("sensmap").joinpath(f"data/samples/{file_name}").read_bytes()
    return add_photo_bytes(file_name, data, credit=SAMPLE_PHOTOS[file_name][1])


def sample_licence() -> str:
    return importlib.resources.files("sensmap").joinpath("data/samples/LICENSE.md").read_text("utf-8")


def active_photo() -> PhotoEntry | None:
    """The photo being explained (None before any is added)."""
    return photos().get(st.session_state.get(K_ACTIVE))


def set_active_photo(sha256: str) -> None:
    if sha256 in photos():
        st.session_state[K_ACTIVE] = sha256


def remove_photo(sha256: str) -> None:
    """Forget a photo and its maps; another photo becomes active if it was."""
    store = photos()
    store.pop(sha256, None)
    results = state(K_RESULTS, dict)
    for key in [k for k in results if k.photo == sha256]:
        del results[key]
    if st.session_state.get(K_ACTIVE) == sha256:
        st.session_state[K_ACTIVE] = next(iter(store), None)
