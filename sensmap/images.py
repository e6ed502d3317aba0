"""Reading photos safely and fitting them to the network's input grid — Pillow and numpy only.

Conventions
-----------
* Pixels are ``uint8`` RGB arrays of shape ``(h, w, 3)``, rows first; sizes given as
  pairs are ``(height, width)`` in pixels, boxes are ``(y0, x0, y1, x1)`` in pixels
  (floats allowed: a crop may start between two pixels). Human-readable sizes in
  notes and messages are written ``width×height``, as photos are usually described.
* The *photo* is the loaded image (after EXIF rotation and any downscale to
  :data:`MAX_WORKING_SIDE`); the *network grid* is the ``(H, W)`` input of the model.
* :func:`load_image` never lets a Pillow, OS or numpy error escape: every problem with
  the input is an :class:`~sensmap.errors.ImageError` whose message says what to do.
* The content decides the format, never the file name: a PNG renamed ``.jpg`` loads as
  a PNG, a text file renamed ``.jpg`` is refused.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
from dataclasses import dataclass
from typing import Union

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageError, ParameterError

MAX_PIXELS: int = 64_000_000
"""Most pixels (width × height, as declared by the file header) a photo may have."""

MAX_WORKING_SIDE: int = 2048
"""Photos whose long side is longer than this (pixels) are downscaled to it (LANCZOS)."""

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO")
"""Pillow formats :func:`load_image` will decode; anything else is refused."""

FIT_METHODS = ("squash", "crop")
"""How a photo is fitted to the network grid: whole photo resized, or centre crop then resize."""

# Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; we refuse above it ourselves.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray, "LoadedImage", Image.Image]

_SUPPORTED = "supported: JPEG, PNG, WebP, BMP, TIFF, GIF"
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1", b"avif", b"avis"}
)
_SNIFF_BYTES = 512
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_TO_RGB_MODES = {
    "1": "greyscale converted to RGB",
    "L": "greyscale converted to RGB",
    "CMYK": "CMYK converted to RGB",
    "YCbCr": "YCbCr converted to RGB",
    "LAB": "CIELAB converted to RGB",
    "HSV": "HSV converted to RGB",
}
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True, eq=False, repr=False)
class LoadedImage:
    """A photo ready for the network: RGB ``uint8`` pixels plus what was done to get them.

    Compared by identity (the pixels are an array); use :attr:`sha256` as a cache key.
    """

    pixels: np.ndarray  # (h, w, 3) uint8 RGB, C-contiguous, read-only
    notes: tuple[str, ...]  # what was done to the photo, in order, e.g. "CMYK converted to RGB"
    source: str  # file path as given, "<bytes>", "<array>" or "<image>" (or the caller's name)
    format: str | None  # Pillow format name ("JPEG", "PNG"…), None for arrays
    original_size: tuple[int, int]  # (height, width) in pixels, upright, before any downscale
    sha256: str  # hex digest of the shape and the pixel bytes

    def __post_init__(self) -> None:
        pixels = self.pixels
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
            raise ImageError(
                "LoadedImage.pixels must be an (h, w, 3) uint8 RGB array; use load_image() to build one, "
                f"got {_describe_array(pixels)}"
            )
        if pixels.flags.writeable or not pixels.flags.c_contiguous:
            pixels = np.ascontiguousarray(pixels).copy()
            pixels.flags.writeable = False
            object.__setattr__(self, "pixels", pixels)

    @property
    def height(self) -> int:
        """Photo height in pixels."""
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        """Photo width in pixels."""
        return int(self.pixels.shape[1])

    def __repr__(self) -> str:
        return (
            f"LoadedImage(source={self.source!r}, format={self.format!r}, size={self.width}×{self.height}, "
            f"original_size={self.original_size}, notes={self.notes!r}, sha256={self.sha256[:12]!r}…)"
        )


# --------------------------------------------------------------------------- loading


def load_image(source: ImageSource, *, name: str | None = None) -> LoadedImage:
    """Read a photo into an upright RGB ``uint8`` :class:`LoadedImage`.

    ``source`` is a file path, the file's bytes, a numpy array (``(h, w)``, or ``(h, w, c)``
    with 1, 3 or 4 channels; ``uint8``, ``uint16``, other integers within 0..255, or floats
    within 0..1 or 0..255), a Pillow image (its current frame is used) or a
    :class:`LoadedImage` (returned as is). ``name`` replaces the source label used in notes,
    messages and :attr:`LoadedImage.source`.

    Files are sniffed by content and decoded only if they are one of :data:`ALLOWED_FORMATS`
    and declare at most :data:`MAX_PIXELS` pixels (checked from the header, before decoding).
    The result is rotated upright from its EXIF orientation, reduced to its first frame,
    converted to RGB (transparency composited on white, 16-bit scaled to 8 bits) and
    downscaled so its long side is at most :data:`MAX_WORKING_SIDE` pixels; every such step
    is recorded in :attr:`LoadedImage.notes`.

    Raises :class:`~sensmap.errors.ImageError` for anything that cannot be used.
    """
    if isinstance(source, LoadedImage):
        if name is not None and name != source.source:
            return LoadedImage(source.pixels, source.notes, name, source.format, source.original_size, source.sha256)
        return source
    if isinstance(source, np.ndarray):
        return _load_array(source, name or "<array>")
    if isinstance(source, Image.Image):
        label = name or "<image>"
        notes: list[str] = []
        _check_declared_size(source.size, label)
        _try_load(source, label)
        return _from_pil(source, notes, label, source.format)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "<bytes>"
        _sniff(data[:_SNIFF_BYTES], len(data), label)
        return _decode(io.BytesIO(data), label)
    if isinstance(source, (str, os.PathLike)):
        return _load_path(source, name)
    raise ImageError(
        f"cannot load a {type(source).__name__} as a photo: pass a file path, the file's bytes, "
        "a numpy array or a Pillow image"
    )


def _load_path(path: str | os.PathLike, name: str | None) -> LoadedImage:
    try:
        text = os.fspath(path)
    except TypeError:
        raise ImageError(f"not a file path: {path!r}") from None
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    label = name or text
    if not text:
        raise ImageError("no such file: '' (the path is empty): choose a photo file")
    if os.path.isdir(text):
        raise ImageError(f"{label}: this is a folder, not a photo file: choose a file inside it")
    if not os.path.exists(text):
        raise ImageError(f"no such file: {text}: check the path and the file name")
    try:
        with open(text, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
            _sniff(head, len(head), label)
            handle.seek(0)
            return _decode(handle, label)
    except PermissionError:
        raise ImageError(f"{label}: permission denied: make the file readable or copy it elsewhere") from None
    except IsADirectoryError:
        raise ImageError(f"{label}: this is a folder, not a photo file: choose a file inside it") from None
    except ImageError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ImageError(f"{label}: the file cannot be read ({reason}): copy it locally and try again") from exc
    except ValueError:  # e.g. a NUL character in the path
        raise ImageError(f"no such file: {text!r}: check the path and the file name") from None


def _sniff(head: bytes, size: int, label: str) -> None:
    """Refuse empty data and well-known formats Pillow cannot read, with a specific message."""
    if size == 0 or not head:
        raise ImageError(f"{label}: the file is empty (0 bytes): choose another photo or re-download it")
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith((b"<?xml", b"<svg")) or (text.startswith(b"<!DOCTYPE") and b"svg" in text[:200].lower()):
        raise ImageError(f"{label}: SVG is not supported: export it as PNG or JPEG")
    if len(head) >= 12 and head[4:8] == b"ftyp":
        box_size = int.from_bytes(head[0:4], "big")
        end = min(len(head), box_size if 16 <= box_size else 16)
        brands = {head[8:12]} | {head[i : i + 4] for i in range(16, end - 3, 4)}
        if brands & _HEIF_BRANDS:
            raise ImageError(f"{label}: HEIC/AVIF is not supported: convert to JPEG or PNG")


def _decode(fp: io.BufferedIOBase, label: str) -> LoadedImage:
    """Open (header only), check, then decode an image file; ``fp`` is left to the caller."""
    try:
        img = Image.open(fp, formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(_bomb_message(label, None, str(exc))) from exc
    except Exception as exc:  # UnidentifiedImageError, SyntaxError, struct.error… from a bad header
        raise ImageError(
            f"{label}: not an image Pillow can read ({_SUPPORTED}): re-export the photo in one of these formats"
        ) from exc
    with img:
        notes: list[str] = []
        _check_declared_size(img.size, label)
        try:
            frames = int(getattr(img, "n_frames", 1) or 1)
            if frames > 1:
                img.seek(0)
                notes.append(f"first of {frames} frames used")
        except Exception as exc:
            raise ImageError(f"{label}: the file is truncated or corrupt: re-export or re-download it") from exc
        _check_declared_size(img.size, label)
        original = img.size  # (width, height) as declared
        sixteen_bit = _declares_sixteen_bit_rgb(img)
        if img.format in ("JPEG", "MPO") and max(img.size) > MAX_WORKING_SIDE:
            scale = MAX_WORKING_SIDE / max(img.size)
            target = (max(1, math.floor(img.width * scale)), max(1, math.floor(img.height * scale)))
            try:
                img.draft("RGB", target)  # DCT scaling: decode at 1/2, 1/4 or 1/8 size, never below target
            except Exception:
                pass  # decode at full size instead
        _try_load(img, label)
        if sixteen_bit:
            notes.append("16-bit image scaled to 8 bits")
        return _from_pil(img, notes, label, img.format, original)


def _try_load(img: Image.Image, label: str) -> None:
    try:
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(_bomb_message(label, img.size, str(exc))) from exc
    except Exception as exc:  # OSError "image file is truncated", SyntaxError, ValueError, EOFError…
        raise ImageError(f"{label}: the file is truncated or corrupt: re-export or re-download it") from exc


def _check_declared_size(size: tuple[int, int], label: str) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageError(f"{label}: the image declares {width}×{height} pixels: the file is corrupt")
    if width * height > MAX_PIXELS:
        raise ImageError(_bomb_message(label, size, ""))


def _bomb_message(label: str, size: tuple[int, int] | None, pillow_message: str) -> str:
    limit = f"more than the {MAX_PIXELS // 1_000_000} MP limit"
    advice = f"downscale it to at most {MAX_PIXELS // 1_000_000} megapixels (e.g. 4000×3000) and try again"
    if size is not None:
        return f"{label}: the image declares {size[0]}×{size[1]} pixels, {limit}: {advice}"
    match = re.search(r"\((\d+) pixels\)", pillow_message)
    declared = f"{int(match.group(1)):,} pixels" if match else "too many pixels"
    return f"{label}: the image declares {declared}, {limit}: {advice}"


def _declares_sixteen_bit_rgb(img: Image.Image) -> bool:
    """True for files Pillow reduces to 8-bit RGB(A) while decoding (e.g. 16-bit RGB PNG)."""
    if img.mode not in ("RGB", "RGBA"):
        return False
    try:
        args = [tile[3] for tile in img.tile]  # (codec, extents, offset, args); args is the raw mode or a tuple
        return any(";16" in str(arg[0] if isinstance(arg, tuple) else arg) for arg in args)
    except Exception:
        return False


def _from_pil(
    img: Image.Image,
    notes: list[str],
    label: str,
    fmt: str | None,
    original: tuple[int, int] | None = None,
) -> LoadedImage:
    """Turn a decoded Pillow image into a :class:`LoadedImage` (orientation, mode, downscale)."""
    width, height = original if original is not None else img.size
    upright = _exif_upright(img, notes)
    if upright is not img and upright.size != img.size:
        width, height = height, width
    try:
        rgb = _pil_to_rgb(upright, notes, label)
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(
            f"{label}: colour mode {upright.mode} cannot be converted to RGB: re-export the photo as 8-bit RGB"
        ) from exc
    return _finish(rgb, notes, label, fmt, (height, width))


def _exif_upright(img: Image.Image, notes: list[str]) -> Image.Image:
    try:
        orientation = img.getexif().get(_ORIENTATION_TAG)
    except Exception:
        return img
    try:
        orientation = int(orientation) if orientation is not None else 1
    except (TypeError, ValueError):
        return img
    if orientation not in range(2, 9):
        return img
    try:
        upright = ImageOps.exif_transpose(img)
    except Exception:
        notes.append(f"EXIF orientation {orientation} could not be applied: photo used as stored")
        return img
    if upright is None:  # pragma: no cover - only with in_place=True
        return img
    notes.append(f"rotated upright from EXIF orientation {orientation}")
    return upright


def _pil_to_rgb(img: Image.Image, notes: list[str], label: str) -> np.ndarray:
    """``(h, w, 3)`` uint8 RGB pixels of a decoded Pillow image of any mode."""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F") or mode.startswith("I;"):
        grey = _high_depth_to_uint8(np.asarray(img), mode, notes, label)
        notes.append("greyscale converted to RGB")
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.has_transparency_data:
        rgba = np.asarray(img.convert("RGBA"))
        alpha = rgba[:, :, 3]
        if alpha.min() < 255:
            notes.append("alpha composited on white")
            return _composite_on_white(rgba[:, :, :3].astype(np.float64), alpha.astype(np.float64) / 255.0)
        if mode in ("L", "LA", "La"):
            notes.append("greyscale converted to RGB")
        return np.ascontiguousarray(rgba[:, :, :3])
    if mode == "RGB":
        return np.asarray(img)
    if mode in _TO_RGB_MODES:
        notes.append(_TO_RGB_MODES[mode])
    return np.asarray(img.convert("RGB"))


def _high_depth_to_uint8(values: np.ndarray, mode: str, notes: list[str], label: str) -> np.ndarray:
    """Grey ``uint8`` from a 16-bit, 32-bit integer or float single-channel image."""
    if mode == "F":
        values = values.astype(np.float64)
        if not np.isfinite(values).all():
            raise ImageError(f"{label}: the image contains NaN or infinite values: re-export it as 8-bit")
    else:
        values = values.astype(np.int64)
    low, high = values.min(), values.max()
    if mode != "F" and low >= 0 and high <= 65535:
        notes.append("16-bit image scaled to 8 bits")
        return ((values + 128) // 257).astype(np.uint8)
    notes.append(f"{'float' if mode == 'F' else '32-bit'} image with values {low:g}..{high:g} stretched to 0..255")
    if high == low:
        return np.full(values.shape, np.clip(np.rint(low), 0, 255), dtype=np.uint8)
    scaled = (values.astype(np.float64) - low) * (255.0 / (float(high) - float(low)))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _composite_on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend ``colour`` (float 0..255, ``(h, w, 3)``) over white by ``alpha`` (float 0..1, ``(h, w)``)."""
    alpha = np.clip(alpha, 0.0, 1.0)[:, :, None]
    blended = colour * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def _load_array(array: np.ndarray, label: str) -> LoadedImage:
    """:class:`LoadedImage` from a numpy array (see :func:`load_image` for what is accepted)."""
    notes: list[str] = []
    shape = array.shape
    if array.size == 0:
        raise ImageError(f"{label}: the array is empty (shape {shape}): pass an image of at least 1×1 pixels")
    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(
            f"{label}: an array of shape {shape} is not an image: "
            "pass (h, w) grey, or (h, w, 1), (h, w, 3) RGB or (h, w, 4) RGBA"
        )
    kind = array.dtype.kind
    if kind == "b":
        raise ImageError(f"{label}: a boolean array is not an image: convert it to uint8 (e.g. mask * 255) first")
    if kind not in "uif":
        raise ImageError(f"{label}: arrays of dtype {array.dtype} are not images: pass uint8 (0..255) or float values")
    channels = array[:, :, :3] if array.shape[2] == 4 else array
    alpha = array[:, :, 3] if array.shape[2] == 4 else None
    if array.dtype == np.uint8:
        colour = channels.astype(np.float64) if alpha is not None else channels
        opacity = alpha.astype(np.float64) / 255.0 if alpha is not None else None
    elif array.dtype == np.uint16:
        notes.append("16-bit image scaled to 8 bits")
        colour = ((channels.astype(np.int64) + 128) // 257).astype(np.uint8)
        opacity = alpha.astype(np.float64) / 65535.0 if alpha is not None else None
    elif kind in "ui":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ImageError(
                f"{label}: integer pixel values must lie within 0..255, found {low}..{high}: "
                "scale the array to 0..255 (or pass uint16 for 16-bit data)"
            )
        colour = channels.astype(np.uint8)
        opacity = alpha.astype(np.float64) / 255.0 if alpha is not None else None
    else:
        colour, opacity = _float_array(channels, alpha, notes, label)
    if opacity is not None:
        if opacity.min() < 1.0:
            notes.append("alpha composited on white")
            colour = _composite_on_white(np.asarray(colour, dtype=np.float64), opacity)
        else:
            notes.append("alpha channel dropped (fully opaque)")
    colour = np.asarray(colour)
    if colour.dtype != np.uint8:
        colour = np.clip(np.rint(colour), 0, 255).astype(np.uint8)
    if colour.shape[2] == 1:
        notes.append("greyscale converted to RGB")
        colour = np.repeat(colour, 3, axis=2)
    return _finish(colour, notes, label, None, (int(shape[0]), int(shape[1])))


def _float_array(
    channels: np.ndarray, alpha: np.ndarray | None, notes: list[str], label: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour (float 0..255) and opacity (float 0..1 or None) from float channels."""
    try:
        colour = channels.astype(np.float64)
        opacity = alpha.astype(np.float64) if alpha is not None else None
    except (TypeError, ValueError, OverflowError) as exc:  # pragma: no cover - exotic float types
        raise ImageError(f"{label}: arrays of dtype {channels.dtype} are not images: pass float32 or uint8") from exc
    if not np.isfinite(colour).all() or (opacity is not None and not np.isfinite(opacity).all()):
        raise ImageError(f"{label}: the array contains NaN or infinite values: replace them before loading")
    low, high = float(colour.min()), float(colour.max())
    if low >= 0.0 and high <= 1.0:
        notes.append("float image in 0..1 scaled to 0..255")
        colour = colour * 255.0
    elif low < 0.0 or high > 255.0:
        raise ImageError(
            f"{label}: float pixel values must lie within 0..1 or 0..255, found {low:g}..{high:g}: "
            "rescale the array (e.g. undo the network's preprocessing) first"
        )
    if opacity is not None:
        a_low, a_high = float(opacity.min()), float(opacity.max())
        if a_low < 0.0 or a_high > 255.0:
            raise ImageError(
                f"{label}: alpha values must lie within 0..1 or 0..255, found {a_low:g}..{a_high:g}: rescale the alpha"
            )
        opacity = opacity if a_high <= 1.0 else opacity / 255.0
    return colour, opacity


def _finish(
    rgb: np.ndarray, notes: list[str], label: str, fmt: str | None, original_size: tuple[int, int]
) -> LoadedImage:
    """Downscale to :data:`MAX_WORKING_SIDE`, freeze the pixels and hash them."""
    height, width = rgb.shape[:2]
    if max(height, width) > MAX_WORKING_SIDE:
        scale = MAX_WORKING_SIDE / max(height, width)
        new_width = max(1, min(MAX_WORKING_SIDE, round(width * scale)))
        new_height = max(1, min(MAX_WORKING_SIDE, round(height * scale)))
        try:
            resized = Image.fromarray(np.ascontiguousarray(rgb)).resize(
                (new_width, new_height), Image.Resampling.LANCZOS
            )
        except MemoryError as exc:
            raise ImageError(f"{label}: not enough memory to downscale the photo: use a smaller photo") from exc
        rgb = np.asarray(resized)
    final_h, final_w = rgb.shape[:2]
    if (final_h, final_w) != tuple(original_size):
        notes.append(f"downscaled from {original_size[1]}×{original_size[0]} to {final_w}×{final_h}")
    pixels = np.array(rgb, dtype=np.uint8, order="C", copy=True)
    pixels.flags.writeable = False
    return LoadedImage(
        pixels=pixels,
        notes=tuple(notes),
        source=label,
        format=fmt,
        original_size=(int(original_size[0]), int(original_size[1])),
        sha256=_pixels_sha256(pixels),
    )


def _pixels_sha256(pixels: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update("{}×{}×{};".format(*pixels.shape).encode())
    digest.update(memoryview(np.ascontiguousarray(pixels)).cast("B"))
    return digest.hexdigest()


def _describe_array(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"shape {value.shape}, dtype {value.dtype}"
    return type(value).__name__


# --------------------------------------------------------------------------- fitting to the network grid


def _check_method(method: str) -> str:
    if method not in FIT_METHODS:
        raise ParameterError(
            f"unknown fit method {method!r}: use 'squash' (whole photo resized to the network input) "
            "or 'crop' (centre crop to the network's aspect ratio, then resized)"
        )
    return method


def _check_size(size: tuple[int, int], what: str) -> tuple[int, int]:
    try:
        height, width = size
        if int(height) != height or int(width) != width:
            raise ValueError
        height, width = int(height), int(width)
    except (TypeError, ValueError):
        raise ParameterError(f"{what} must be a (height, width) pair of whole pixels, got {size!r}") from None
    if height < 1 or width < 1:
        raise ParameterError(f"{what} must be at least 1×1 pixels, got (height, width) = ({height}, {width})")
    return height, width


def fit_box(
    image_size: tuple[int, int], size: tuple[int, int], method: str = "squash"
) -> tuple[float, float, float, float]:
    """The region ``(y0, x0, y1, x1)`` of the photo, in photo pixels, that the network grid shows.

    ``image_size`` is the photo's ``(h, w)`` and ``size`` the network grid's ``(H, W)``, both in
    pixels. ``"squash"`` shows the whole photo; ``"crop"`` shows the largest centred region with
    the grid's ``H:W`` aspect (its edges may fall between photo pixels).
    """
    _check_method(method)
    h, w = _check_size(image_size, "the photo size")
    grid_h, grid_w = _check_size(size, "the network input size")
    if method == "squash" or h * grid_w == w * grid_h:
        return (0.0, 0.0, float(h), float(w))
    if w * grid_h > h * grid_w:  # photo wider than the grid: keep full height
        crop_w = h * grid_w / grid_h
        x0 = (w - crop_w) / 2.0
        return (0.0, x0, float(h), x0 + crop_w)
    crop_h = w * grid_h / grid_w
    y0 = (h - crop_h) / 2.0
    return (y0, 0.0, y0 + crop_h, float(w))


def fit_image(image: LoadedImage, size: tuple[int, int], method: str = "squash") -> np.ndarray:
    """The photo on the network grid: ``float32`` ``(H, W, 3)`` raw RGB values in 0..255.

    ``size`` is the grid's ``(H, W)`` in pixels. ``"squash"`` resizes the whole photo to H×W;
    ``"crop"`` takes the centre crop of :func:`fit_box` and resizes it. Resampling is Pillow
    BILINEAR on the ``uint8`` photo. A photo already H×W is used exactly as it is. No
    model-specific preprocessing is applied.
    """
    _check_method(method)
    grid_h, grid_w = _check_size(size, "the network input size")
    if not isinstance(image, LoadedImage):
        image = load_image(image)
    pixels = image.pixels
    if pixels.shape[:2] == (grid_h, grid_w):
        return pixels.astype(np.float32)
    y0, x0, y1, x1 = fit_box(pixels.shape[:2], (grid_h, grid_w), method)
    photo = Image.fromarray(np.ascontiguousarray(pixels))
    resized = photo.resize((grid_w, grid_h), Image.Resampling.BILINEAR, box=(x0, y0, x1, y1))
    return np.asarray(resized, dtype=np.float32).copy()


def box_on_grid(
    box: tuple[float, float, float, float], image_size: tuple[int, int], size: tuple[int, int], method: str = "squash"
) -> tuple[float, float, float, float] | None:
    """A box ``(y0, x0, y1, x1)`` in fractions of the photo as fractions of the network grid.

    ``squash`` keeps the fractions; ``crop`` maps them through :func:`fit_box` and clips them to the crop.
    None when the network sees no part of the box.
    """
    height, width = image_size
    top, left, bottom, right = fit_box(image_size, size, method)
    y0, x0, y1, x1 = (float(v) for v in box)
    rows = [float(np.clip((v * height - top) / (bottom - top), 0.0, 1.0)) for v in (y0, y1)]
    cols = [float(np.clip((v * width - left) / (right - left), 0.0, 1.0)) for v in (x0, x1)]
    if rows[1] - rows[0] <= 1e-9 or cols[1] - cols[0] <= 1e-9:
        return None
    return rows[0], cols[0], rows[1], cols[1]


def map_to_photo(values: np.ndarray, image_size: tuple[int, int], method: str = "squash") -> np.ndarray:
    """Resample a map on the network grid onto the photo: ``float32`` ``(h, w)``, same units as ``values``.

    ``values`` is an ``(H, W)`` map on the network grid and ``image_size`` the photo's ``(h, w)``
    in pixels. Bilinear interpolation between grid-pixel centres (edges held constant, NaN kept
    where it is). With ``"crop"``, photo pixels whose centre lies outside the crop of
    :func:`fit_box` are NaN (the network never saw them).
    """
    _check_method(method)
    h, w = _check_size(image_size, "the photo size")
    grid = np.asarray(values)
    if grid.ndim != 2 or grid.size == 0:
        raise ParameterError(f"the map must be a non-empty (H, W) array on the network grid, got shape {grid.shape}")
    if grid.dtype.kind not in "uif":
        raise ParameterError(f"the map must hold numbers, got dtype {grid.dtype}")
    grid = grid.astype(np.float64)
    grid_h, grid_w = grid.shape
    if (h, w) == (grid_h, grid_w) and method == "squash":
        return grid.astype(np.float32)
    box = fit_box((h, w), (grid_h, grid_w), method)
    out, rows_inside, cols_inside = _bilinear(grid, (h, w), box)
    if method == "crop":
        out[~rows_inside, :] = np.nan
        out[:, ~cols_inside] = np.nan
    return out.astype(np.float32)


def resize_maps(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Maps ``(..., h, w)`` stretched to ``(..., H, W)`` = ``size``: float32, the same bilinear resampling as
    :func:`map_to_photo` with ``"squash"`` (between cell centres, edges held). Units are kept."""
    grid = np.asarray(values, dtype=np.float64)
    if grid.ndim < 2 or grid.size == 0:
        raise ParameterError(f"maps must be non-empty (..., h, w) arrays, got shape {grid.shape}")
    height, width = _check_size(size, "the target size")
    return _bilinear(grid, (height, width), (0.0, 0.0, float(height), float(width)))[0].astype(np.float32)


def _bilinear(
    grid: np.ndarray, size: tuple[int, int], box: tuple[float, float, float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``grid`` ``(..., gh, gw)`` stretched over ``box`` of an ``(h, w)`` target: values, rows and columns inside."""
    grid_h, grid_w = grid.shape[-2:]
    y0, x0, y1, x1 = box
    rows, row_weight, rows_inside = _axis_samples(size[0], y0, y1, grid_h)
    cols, col_weight, cols_inside = _axis_samples(size[1], x0, x1, grid_w)
    row_next = np.minimum(rows + 1, grid_h - 1)
    col_next = np.minimum(cols + 1, grid_w - 1)
    along_rows = _lerp(grid[..., rows, :], grid[..., row_next, :], row_weight[:, None])  # (..., h, gw)
    out = _lerp(along_rows[..., cols], along_rows[..., col_next], col_weight)  # (..., h, w)
    return out, rows_inside, cols_inside


def _axis_samples(side: int, start: float, stop: float, grid_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per photo pixel on one axis: lower grid index, weight of the next one, and centre-inside-crop flag."""
    centres = np.arange(side, dtype=np.float64) + 0.5
    position = (centres - start) * (grid_side / (stop - start)) - 0.5  # in grid pixels, centres at integers
    clamped = np.clip(position, 0.0, grid_side - 1.0)
    lower = np.floor(clamped).astype(np.int64)
    weight = clamped - lower
    inside = (centres >= start) & (centres <= stop)
    return lower, weight, inside


def _lerp(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``a + weight·(b − a)``, exactly ``a`` where the weight is 0 (so NaN in ``b`` does not leak)."""
    with np.errstate(invalid="ignore"):
        return np.where(weight == 0.0, a, a + weight * (b - a))


# --------------------------------------------------------------------------- output


def to_png_bytes(pixels: np.ndarray) -> bytes:
    """Encode ``(h, w, 3)`` uint8 RGB pixels as a PNG with no metadata (no EXIF, GPS or text chunks)."""
    if isinstance(pixels, LoadedImage):
        pixels = pixels.pixels
    array = np.asarray(pixels)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or array.size == 0:
        raise ImageError(f"to_png_bytes needs an (h, w, 3) uint8 RGB array, got {_describe_array(array)}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()
