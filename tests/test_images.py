"""Tests of sensmap.images: safe photo loading, fitting to the network grid, PNG output."""

from __future__ import annotations

import io
import math
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from sensmap.errors import ImageError, ParameterError
from sensmap.images import (
    ALLOWED_FORMATS,
    MAX_PIXELS,
    MAX_WORKING_SIDE,
    LoadedImage,
    fit_box,
    fit_image,
    load_image,
    map_to_photo,
    to_png_bytes,
)

RED = (255, 0, 0)
BLUE = (0, 0, 255)


# --------------------------------------------------------------------------- helpers


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def png_chunks(data: bytes) -> list[bytes]:
    """Chunk types of a PNG file, in order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    types, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        types.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return types


def patch_png_size(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width × height`` (CRC fixed), pixel data unchanged."""
    assert data[12:16] == b"IHDR"
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return data[:16] + bytes(ihdr) + crc + data[33:]


def assert_valid(loaded: LoadedImage) -> None:
    pixels = loaded.pixels
    assert isinstance(loaded, LoadedImage)
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    assert pixels.flags.c_contiguous and not pixels.flags.writeable
    assert (loaded.height, loaded.width) == pixels.shape[:2]
    assert 1 <= max(loaded.height, loaded.width) <= MAX_WORKING_SIDE
    assert len(loaded.sha256) == 64
    assert all(isinstance(note, str) for note in loaded.notes)


# --------------------------------------------------------------------------- module constants


def test_constants_and_pillow_limit():
    assert MAX_PIXELS == 64_000_000
    assert MAX_WORKING_SIDE == 2048
    assert ALLOWED_FORMATS == ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO")
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


# --------------------------------------------------------------------------- plain files


@pytest.mark.parametrize("height,width", [(1, 1), (3, 3), (37, 53), (53, 37)])
def test_small_and_odd_png_sizes_exact(tmp_path, height, width):
    pixels = noise(height, width)
    path = write(tmp_path, "photo.png", encode(Image.fromarray(pixels), "PNG"))
    loaded = load_image(path)
    assert_valid(loaded)
    np.testing.assert_array_equal(loaded.pixels, pixels)
    assert loaded.original_size == (height, width)
    assert (loaded.height, loaded.width) == (height, width)
    assert loaded.format == "PNG"
    assert loaded.notes == ()
    assert loaded.source == str(path)


def test_same_pixels_same_sha256_whatever_the_source(tmp_path):
    pixels = noise(5, 7)
    data = encode(Image.fromarray(pixels), "PNG")
    from_path = load_image(write(tmp_path, "a.png", data))
    from_bytes = load_image(data)
    from_array = load_image(pixels)
    assert from_bytes.source == "<bytes>" and from_array.source == "<array>"
    assert from_array.format is None
    assert from_path.sha256 == from_bytes.sha256 == from_array.sha256
    assert load_image(pixels.reshape(7, 5, 3)).sha256 != from_array.sha256  # shape is part of the key
    assert load_image(data, name="upload.png").source == "upload.png"


def test_content_is_sniffed_not_the_extension(tmp_path):
    path = write(tmp_path, "really_a_png.jpg", encode(Image.new("RGB", (4, 4), RED), "PNG"))
    loaded = load_image(path)
    assert loaded.format == "PNG"
    assert tuple(loaded.pixels[0, 0]) == RED


@pytest.mark.parametrize("fmt", ["BMP", "WEBP", "TIFF"])
def test_other_allowed_formats(fmt):
    pixels = noise(6, 9)
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    loaded = load_image(encode(Image.fromarray(pixels), fmt, **kwargs))
    assert loaded.format == fmt
    np.testing.assert_array_equal(loaded.pixels, pixels)


def test_loaded_image_and_pil_image_sources():
    loaded = load_image(noise(4, 4))
    assert load_image(loaded) is loaded
    renamed = load_image(loaded, name="x.png")
    assert renamed.source == "x.png" and renamed.sha256 == loaded.sha256
    pil = Image.new("L", (3, 2), 9)
    from_pil = load_image(pil)
    assert from_pil.source == "<image>"
    assert from_pil.pixels.shape == (2, 3, 3) and (from_pil.pixels == 9).all()
    assert "greyscale converted to RGB" in from_pil.notes
    with pytest.raises(ImageError, match="cannot load a list"):
        load_image([[1, 2], [3, 4]])


def test_loaded_image_repr_and_frozen():
    loaded = load_image(noise(3, 4))
    assert "4×3" in repr(loaded)
    with pytest.raises(AttributeError):
        loaded.source = "other"  # type: ignore[misc]
    with pytest.raises(ValueError):
        loaded.pixels[0, 0, 0] = 1


# --------------------------------------------------------------------------- orientation, frames, modes


def test_exif_orientation_6_is_rotated_upright(tmp_path):
    stored = Image.new("RGB", (40, 20), BLUE)  # stored landscape 40 wide × 20 high
    stored.paste(RED, (0, 0, 10, 10))  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert (loaded.height, loaded.width) == (40, 20)  # upright portrait
    assert loaded.original_size == (40, 20)
    assert "rotated upright from EXIF orientation 6" in loaded.notes
    # the stored top-left corner is the upright top-right corner after a clockwise turn
    np.testing.assert_allclose(loaded.pixels[4, 15], RED, atol=40)
    np.testing.assert_allclose(loaded.pixels[4, 4], BLUE, atol=40)
    np.testing.assert_allclose(loaded.pixels[35, 15], BLUE, atol=40)


def test_exif_orientation_1_changes_nothing(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 1
    path = tmp_path / "upright.jpg"
    Image.new("RGB", (30, 10), RED).save(path, exif=exif)
    loaded = load_image(path)
    assert (loaded.height, loaded.width) == (10, 30)
    assert not any("orientation" in note for note in loaded.notes)


def test_sixteen_bit_png_is_scaled_not_clipped():
    values = np.array([[0, 257, 32767, 32768, 65535]], dtype=np.uint16)
    loaded = load_image(encode(Image.fromarray(values), "PNG"))
    np.testing.assert_array_equal(loaded.pixels[0, :, 0], [0, 1, 127, 128, 255])
    assert (loaded.pixels == loaded.pixels[:, :, :1]).all()
    assert "16-bit image scaled to 8 bits" in loaded.notes


def test_cmyk_jpeg_converted_to_rgb():
    loaded = load_image(encode(Image.new("CMYK", (8, 6), (0, 255, 255, 0)), "JPEG", quality=95))
    assert loaded.format == "JPEG"
    assert "CMYK converted to RGB" in loaded.notes
    np.testing.assert_allclose(loaded.pixels[3, 4], RED, atol=8)


def test_rgba_transparency_composited_on_white():
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (255, 0, 0, 0)  # fully transparent
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black
    loaded = load_image(encode(Image.fromarray(rgba), "PNG"))
    assert "alpha composited on white" in loaded.notes
    assert tuple(loaded.pixels[0, 0]) == RED
    assert tuple(loaded.pixels[0, 1]) == (255, 255, 255)
    np.testing.assert_allclose(loaded.pixels[0, 2], [127, 127, 127], atol=1)


def test_opaque_rgba_just_drops_alpha():
    loaded = load_image(encode(Image.new("RGBA", (3, 3), (1, 2, 3, 255)), "PNG"))
    assert tuple(loaded.pixels[1, 1]) == (1, 2, 3)
    assert "alpha composited on white" not in loaded.notes


def test_palette_with_transparency_composited_on_white():
    img = Image.new("P", (4, 2), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (2, 0, 4, 2))  # right half red, left half index 0 (transparent black)
    loaded = load_image(encode(img, "PNG", transparency=0))
    assert "alpha composited on white" in loaded.notes
    assert tuple(loaded.pixels[0, 0]) == (255, 255, 255)
    assert tuple(loaded.pixels[0, 3]) == RED


def test_la_composited_on_white():
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (0, 0))
    la.putpixel((1, 0), (0, 255))
    loaded = load_image(encode(la, "PNG"))
    assert "alpha composited on white" in loaded.notes
    assert tuple(loaded.pixels[0, 0]) == (255, 255, 255)
    assert tuple(loaded.pixels[0, 1]) == (0, 0, 0)


@pytest.mark.parametrize("mode,value", [("L", 77), ("1", 255)])
def test_greyscale_converted_to_rgb(mode, value):
    loaded = load_image(encode(Image.new(mode, (5, 3), value), "PNG"))
    assert "greyscale converted to RGB" in loaded.notes
    assert (loaded.pixels == value).all()


def test_animated_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 6), colour) for colour in (RED, (0, 255, 0), BLUE)]
    loaded = load_image(encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50))
    assert loaded.format == "GIF"
    assert "first of 3 frames used" in loaded.notes
    assert tuple(loaded.pixels[2, 2]) == RED


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "MPO"])
def test_animated_png_webp_and_mpo_use_first_frame(fmt):
    frames = [Image.new("RGB", (8, 6), colour) for colour in (RED, BLUE)]
    extra = {"lossless": True} if fmt == "WEBP" else {"quality": 95} if fmt == "MPO" else {}
    loaded = load_image(encode(frames[0], fmt, save_all=True, append_images=frames[1:], **extra))
    assert loaded.format == fmt
    assert "first of 2 frames used" in loaded.notes
    np.testing.assert_allclose(loaded.pixels[3, 4], RED, atol=8)


def test_multipage_tiff_uses_first_page():
    pages = [Image.new("RGB", (5, 4), colour) for colour in (BLUE, RED)]
    loaded = load_image(encode(pages[0], "TIFF", save_all=True, append_images=pages[1:]))
    assert loaded.format == "TIFF"
    assert "first of 2 frames used" in loaded.notes
    assert tuple(loaded.pixels[0, 0]) == BLUE


def test_large_jpeg_is_downscaled(tmp_path):
    gradient = np.linspace(0, 255, 6000, dtype=np.float32).astype(np.uint8)
    pixels = np.broadcast_to(gradient[None, :, None], (4000, 6000, 3))
    path = write(tmp_path, "big.jpg", encode(Image.fromarray(np.ascontiguousarray(pixels)), "JPEG", quality=70))
    loaded = load_image(path)
    assert (loaded.height, loaded.width) == (1365, 2048)
    assert loaded.original_size == (4000, 6000)
    assert "downscaled from 6000×4000 to 2048×1365" in loaded.notes
    assert loaded.pixels[:, 0].mean() < 20 and loaded.pixels[:, -1].mean() > 235


def test_large_array_is_downscaled_keeping_aspect():
    loaded = load_image(np.zeros((100, 3000, 3), dtype=np.uint8))
    assert (loaded.height, loaded.width) == (68, 2048)
    assert loaded.original_size == (100, 3000)
    assert "downscaled from 3000×100 to 2048×68" in loaded.notes


# --------------------------------------------------------------------------- refusals


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(ImageError, match="no such file: .*nothing.jpg"):
        load_image(tmp_path / "nothing.jpg")
    with pytest.raises(ImageError, match="no such file"):
        load_image("")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_zero_bytes(tmp_path):
    with pytest.raises(ImageError, match="the file is empty"):
        load_image(write(tmp_path, "empty.png", b""))
    with pytest.raises(ImageError, match="the file is empty"):
        load_image(b"")


def test_text_renamed_jpg(tmp_path):
    path = write(tmp_path, "notes.jpg", b"this is not a photo, just some text\n" * 10)
    with pytest.raises(
        ImageError, match=r"not an image Pillow can read \(supported: JPEG, PNG, WebP, BMP, TIFF, GIF\)"
    ):
        load_image(path)


def test_format_outside_the_allow_list_is_refused():
    with pytest.raises(ImageError, match="not an image Pillow can read"):
        load_image(encode(Image.new("RGB", (4, 4)), "PPM"))


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        b'\xef\xbb\xbf  \n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
    ],
)
def test_svg_refused(tmp_path, data):
    with pytest.raises(ImageError, match="SVG is not supported: export it as PNG or JPEG"):
        load_image(data)
    with pytest.raises(ImageError, match="SVG is not supported"):
        load_image(write(tmp_path, "drawing.png", data))


@pytest.mark.parametrize("brand", [b"heic", b"heix", b"mif1", b"avif"])
def test_heic_and_avif_refused(tmp_path, brand):
    data = b"\x00\x00\x00\x18ftyp" + brand + b"\x00\x00\x00\x00mif1" + brand + b"\x00" * 200
    with pytest.raises(ImageError, match="HEIC/AVIF is not supported: convert to JPEG or PNG"):
        load_image(write(tmp_path, "IMG_0001.jpg", data))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files(tmp_path, fmt):
    data = encode(Image.fromarray(noise(64, 64)), fmt)
    path = write(tmp_path, f"cut.{fmt.lower()}", data[: len(data) // 2])
    with pytest.raises(ImageError, match="the file is truncated or corrupt"):
        load_image(path)
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_decompression_bomb_refused_before_decoding(tmp_path):
    small = encode(Image.fromarray(noise(180, 180)), "PNG", compress_level=0)
    assert 90_000 < len(small) < 110_000
    bomb = patch_png_size(small, 30000, 30000)
    with Image.open(io.BytesIO(patch_png_size(small, 300, 300))) as probe:  # the patch itself is valid
        assert probe.size == (300, 300)
    path = write(tmp_path, "bomb.png", bomb)
    start = time.perf_counter()
    with pytest.raises(ImageError, match="declares 900,000,000 pixels, more than the 64 MP limit"):
        load_image(path)
    assert time.perf_counter() - start < 1.0


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_image_just_above_the_limit_refused_with_its_size():
    bomb = patch_png_size(encode(Image.new("RGB", (8, 8)), "PNG"), 9000, 8000)  # 72 MP: Pillow only warns
    start = time.perf_counter()
    with pytest.raises(ImageError, match="declares 9000×8000 pixels, more than the 64 MP limit"):
        load_image(bomb)
    assert time.perf_counter() - start < 1.0


# --------------------------------------------------------------------------- arrays


def test_uint8_array_used_as_is_and_not_aliased():
    pixels = noise(4, 6)
    expected = pixels.copy()
    loaded = load_image(pixels)
    assert loaded.notes == ()
    assert pixels.flags.writeable  # the caller's array is left alone
    pixels[:] = 0
    np.testing.assert_array_equal(loaded.pixels, expected)


def test_loaded_image_validates_its_pixels():
    with pytest.raises(ImageError, match="uint8 RGB"):
        LoadedImage(np.zeros((2, 2), np.uint8), (), "<array>", None, (2, 2), "0" * 64)
    writable = np.zeros((2, 2, 3), np.uint8)
    frozen = LoadedImage(writable, (), "<array>", None, (2, 2), "0" * 64)
    assert not frozen.pixels.flags.writeable and writable.flags.writeable


def test_rank_two_and_single_channel_arrays_are_grey():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for array in (grey, grey[:, :, None]):
        loaded = load_image(array)
        assert loaded.pixels.shape == (3, 4, 3)
        assert "greyscale converted to RGB" in loaded.notes
        np.testing.assert_array_equal(loaded.pixels[:, :, 2], grey)


def test_float_arrays():
    unit = load_image(np.full((2, 2, 3), 0.5, dtype=np.float32))
    assert (unit.pixels == 128).all()
    assert "float image in 0..1 scaled to 0..255" in unit.notes
    wide = load_image(np.array([[[0.4, 100.5, 254.6]]], dtype=np.float64))
    np.testing.assert_array_equal(wide.pixels[0, 0], [0, 100, 255])  # rounded (half to even)
    with pytest.raises(ImageError, match=r"0\.\.1 or 0\.\.255"):
        load_image(np.full((2, 2, 3), 256.0))
    with pytest.raises(ImageError, match=r"0\.\.1 or 0\.\.255"):
        load_image(np.full((2, 2, 3), -0.5))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_arrays(bad):
    array = np.zeros((3, 3, 3), dtype=np.float32)
    array[1, 1, 1] = bad
    with pytest.raises(ImageError, match="contains NaN or infinite values"):
        load_image(array)


def test_integer_arrays():
    np.testing.assert_array_equal(load_image(np.full((2, 2), 200, dtype=np.int64)).pixels, 200)
    sixteen = load_image(np.array([[0, 32768, 65535]], dtype=np.uint16))
    np.testing.assert_array_equal(sixteen.pixels[0, :, 0], [0, 128, 255])
    assert "16-bit image scaled to 8 bits" in sixteen.notes
    with pytest.raises(ImageError, match=r"within 0\.\.255, found -1\.\.3"):
        load_image(np.array([[-1, 3]], dtype=np.int16))
    with pytest.raises(ImageError, match=r"within 0\.\.255, found 0\.\.300"):
        load_image(np.array([[0, 300]], dtype=np.int32))


@pytest.mark.parametrize(
    "array,message",
    [
        (np.ones((2, 2), dtype=bool), "boolean"),
        (np.ones((2, 2, 3), dtype=np.complex64), "complex64"),
        (np.array([[object(), object()]], dtype=object), "object"),
        (np.zeros((0, 5, 3), dtype=np.uint8), r"empty \(shape \(0, 5, 3\)\)"),
        (np.zeros((4, 0), dtype=np.uint8), "empty"),
        (np.zeros(5, dtype=np.uint8), r"shape \(5,\)"),
        (np.zeros((2, 2, 2, 3), dtype=np.uint8), r"shape \(2, 2, 2, 3\)"),
        (np.zeros((2, 2, 2), dtype=np.uint8), r"shape \(2, 2, 2\)"),
        (np.zeros((2, 2, 5), dtype=np.float32), r"shape \(2, 2, 5\)"),
    ],
)
def test_bad_arrays(array, message):
    with pytest.raises(ImageError, match=message):
        load_image(array)


def test_rgba_arrays_composited_on_white():
    rgba = np.array([[[255, 0, 0, 255], [0, 0, 0, 0]]], dtype=np.uint8)
    loaded = load_image(rgba)
    np.testing.assert_array_equal(loaded.pixels[0], [RED, (255, 255, 255)])
    assert "alpha composited on white" in loaded.notes
    floats = np.array([[[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.5]]], dtype=np.float32)
    np.testing.assert_array_equal(load_image(floats).pixels[0], [RED, (128, 128, 128)])
    mixed = np.array([[[255.0, 0.0, 0.0, 0.0]]])  # colour 0..255, alpha 0..1
    np.testing.assert_array_equal(load_image(mixed).pixels[0, 0], (255, 255, 255))


# --------------------------------------------------------------------------- fitting and mapping back


def test_fit_image_squash_and_crop_shapes():
    loaded = load_image(noise(37, 53))
    for method in ("squash", "crop"):
        fitted = fit_image(loaded, (16, 24), method)
        assert fitted.shape == (16, 24, 3) and fitted.dtype == np.float32
        assert fitted.min() >= 0 and fitted.max() <= 255
    constant = load_image(np.full((37, 53, 3), 90, dtype=np.uint8))
    assert (fit_image(constant, (10, 10), "squash") == 90).all()
    assert (fit_image(constant, (10, 10), "crop") == 90).all()


def test_fit_image_crop_keeps_the_centre():
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[:, 5:15] = 255  # white centre square, black side bands
    loaded = load_image(pixels)
    cropped = fit_image(loaded, (10, 10), "crop")
    assert (cropped == 255).all()
    squashed = fit_image(loaded, (10, 10), "squash")
    assert squashed[:, 0].max() < 128 and squashed[:, 5].min() > 128


@pytest.mark.parametrize("method", ["squash", "crop"])
def test_fit_image_at_size_is_exact(method):
    loaded = load_image(noise(7, 5))
    fitted = fit_image(loaded, (7, 5), method)
    np.testing.assert_array_equal(fitted, loaded.pixels.astype(np.float32))
    assert fitted.flags.writeable


def test_fit_image_bad_parameters():
    loaded = load_image(noise(4, 4))
    with pytest.raises(ParameterError, match="unknown fit method 'stretch'"):
        fit_image(loaded, (2, 2), "stretch")
    for size in [(0, 3), (2.5, 2), (3,), "big"]:
        with pytest.raises(ParameterError):
            fit_image(loaded, size)  # type: ignore[arg-type]


def test_fit_box():
    assert fit_box((100, 200), (10, 10), "squash") == (0.0, 0.0, 100.0, 200.0)
    assert fit_box((100, 200), (10, 10), "crop") == (0.0, 50.0, 100.0, 150.0)
    assert fit_box((200, 100), (10, 10), "crop") == (50.0, 0.0, 150.0, 100.0)
    assert fit_box((100, 200), (5, 10), "crop") == (0.0, 0.0, 100.0, 200.0)
    y0, x0, y1, x1 = fit_box((37, 53), (224, 224), "crop")
    assert (y0, y1) == (0.0, 37.0) and math.isclose(x1 - x0, 37.0) and math.isclose(x0, 8.0)
    with pytest.raises(ParameterError):
        fit_box((10, 10), (5, 5), "zoom")


def test_map_to_photo_squash():
    grid = np.full((7, 7), 0.25, dtype=np.float32)
    photo = map_to_photo(grid, (37, 53), "squash")
    assert photo.shape == (37, 53) and photo.dtype == np.float32
    assert (photo == 0.25).all()
    ramp = np.tile(np.arange(8, dtype=np.float64), (4, 1))
    across = map_to_photo(ramp, (4, 32))
    assert (np.diff(across[0]) >= 0).all() and across[0, 0] == 0 and across[0, -1] == 7
    identity = np.random.default_rng(1).random((5, 6))
    np.testing.assert_array_equal(map_to_photo(identity, (5, 6)), identity.astype(np.float32))


def test_map_to_photo_crop_has_nan_outside():
    grid = np.ones((10, 10))
    photo = map_to_photo(grid, (10, 20), "crop")
    assert photo.shape == (10, 20)
    assert np.isnan(photo[:, :5]).all() and np.isnan(photo[:, 15:]).all()
    assert (photo[:, 5:15] == 1).all()
    tall = map_to_photo(grid, (40, 10), "crop")
    assert np.isnan(tall[:15]).all() and np.isnan(tall[25:]).all() and np.isfinite(tall[15:25]).all()


def test_map_to_photo_bad_parameters():
    with pytest.raises(ParameterError):
        map_to_photo(np.ones((3, 3, 1)), (5, 5))
    with pytest.raises(ParameterError):
        map_to_photo(np.ones((3, 3)), (5, 5), "zoom")
    with pytest.raises(ParameterError):
        map_to_photo(np.ones((3, 3)), (0, 5))


# --------------------------------------------------------------------------- output


def test_to_png_bytes_round_trip_without_metadata(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 1
    exif[0x010F] = "CameraMaker"
    path = tmp_path / "with_exif.jpg"
    Image.fromarray(noise(9, 11)).save(path, exif=exif, quality=95)
    loaded = load_image(path)
    data = to_png_bytes(loaded.pixels)
    assert set(png_chunks(data)) <= {b"IHDR", b"IDAT", b"IEND"}
    assert b"Exif" not in data and b"eXIf" not in data and b"CameraMaker" not in data
    with Image.open(io.BytesIO(data)) as again:
        assert again.mode == "RGB" and not again.getexif()
        np.testing.assert_array_equal(np.asarray(again), loaded.pixels)
    with pytest.raises(ImageError):
        to_png_bytes(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ImageError):
        to_png_bytes(np.zeros((4, 4, 3), dtype=np.float32))


# --------------------------------------------------------------------------- fuzzing


def _seed_files() -> list[bytes]:
    small = Image.fromarray(noise(6, 5, seed=3))
    frames = [Image.new("RGB", (4, 3), colour) for colour in (RED, BLUE)]
    return [
        encode(small, "PNG"),
        encode(small.convert("RGBA"), "PNG"),
        encode(small, "JPEG", quality=80),
        encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
    ]


SEEDS = _seed_files()

_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=16)),
)


def _mutate(data: bytes, mutations: list[tuple]) -> bytes:
    buffer = bytearray(data)
    for kind, position, payload in mutations:
        if not buffer:
            break
        position %= len(buffer) + (kind == "insert")
        if kind == "flip" and position < len(buffer):
            buffer[position] ^= payload
        elif kind == "truncate":
            del buffer[position:]
        elif kind == "insert":
            buffer[position:position] = payload
    return bytes(buffer)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(range(len(SEEDS))), mutations=st.lists(_mutation, min_size=1, max_size=4))
def test_fuzzed_files_load_or_raise_image_error(seed, mutations):
    data = _mutate(SEEDS[seed], mutations)
    try:
        loaded = load_image(data)
    except ImageError as error:
        assert str(error)
    else:
        assert_valid(loaded)
