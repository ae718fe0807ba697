"""Tests of tfds_ph2.ph2.image_reading: the image rules of the `ph2` builder and of `predict`."""

import io
import struct
import zlib

import numpy as np
import pytest
from etils import epath
from PIL import Image

from tfds_ph2.ph2.image_reading import ImageReadError, read_image

RNG = np.random.default_rng(0)
GREY8 = RNG.integers(0, 256, (24, 40), dtype=np.uint8)
RGB8 = RNG.integers(0, 256, (24, 40, 3), dtype=np.uint8)
ORIENTATION = 0x0112  # EXIF tag.


def _save(pixels, path, **kwargs):
    Image.fromarray(pixels).save(path, **kwargs)
    return path


def _png(width, height, bit_depth, colour_type, rows):
    """PNG bytes written by hand, for pixel formats Pillow cannot save (16-bit colour)."""

    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    scanlines = b"".join(b"\x00" + row.tobytes() for row in rows)  # Filter type 0 per row.
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(scanlines))
        + chunk(b"IEND", b"")
    )


def test_rgb_is_returned_unchanged(tmp_path):
    pixels = read_image(_save(RGB8, tmp_path / "a.png"))
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, RGB8)


def test_str_and_epath_paths(tmp_path):
    path = _save(RGB8, tmp_path / "a.bmp")
    np.testing.assert_array_equal(read_image(str(path)), RGB8)
    np.testing.assert_array_equal(read_image(epath.Path(path)), RGB8)


def test_8_bit_grey_is_repeated(tmp_path):
    pixels = read_image(_save(GREY8, tmp_path / "g.png"))
    np.testing.assert_array_equal(pixels, np.repeat(GREY8[..., None], 3, axis=-1))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grey_is_scaled_not_clipped(tmp_path, suffix):
    path = _save(GREY8.astype(np.uint16) * 257, tmp_path / f"g16{suffix}")
    assert Image.open(path).mode.startswith("I;16")
    np.testing.assert_array_equal(read_image(path), np.repeat(GREY8[..., None], 3, axis=-1))


def test_16_bit_scaling_rounds(tmp_path):
    values = np.array([[0, 128, 129, 385, 386, 65406, 65407, 65535]], np.uint16)
    pixels = read_image(_save(values, tmp_path / "g16.png"))
    assert pixels[0, :, 0].tolist() == [0, 0, 1, 1, 2, 254, 255, 255]  # round(v * 255 / 65535)


def test_32_bit_integer_grey_in_16_bit_range_is_scaled(tmp_path):
    path = _save(GREY8.astype(np.int32) * 257, tmp_path / "i32.tif")
    assert Image.open(path).mode == "I"
    np.testing.assert_array_equal(read_image(path)[..., 0], GREY8)


def test_32_bit_integer_grey_out_of_range_is_an_error(tmp_path):
    path = _save(np.array([[0, 70000]], np.int32), tmp_path / "i32.tif")
    with pytest.raises(ImageReadError, match=r"i32\.tif: .*0\.\.70000 are outside"):
        read_image(path)


def test_16_bit_colour_png_is_8_bit_rgb(tmp_path):
    rgb16 = RGB8.astype(">u2") * 257
    path = tmp_path / "rgb16.png"
    path.write_bytes(_png(40, 24, 16, 2, rgb16))
    np.testing.assert_array_equal(read_image(path), RGB8)


def test_float_image_is_an_error(tmp_path):
    path = _save(np.full((4, 4), 0.5, np.float32), tmp_path / "f.tif")
    with pytest.raises(ImageReadError, match=r"f\.tif: unsupported pixel format .*'F'"):
        read_image(path)


def test_alpha_is_dropped(tmp_path):
    rgba = np.concatenate([RGB8, RNG.integers(0, 256, (24, 40, 1), dtype=np.uint8)], axis=-1)
    np.testing.assert_array_equal(read_image(_save(rgba, tmp_path / "a.png")), RGB8)
    grey_alpha = Image.fromarray(np.stack([GREY8, GREY8[::-1]], axis=-1), mode="LA")
    grey_alpha.save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png")[..., 1], GREY8)


def test_palette_is_looked_up(tmp_path):
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    image = Image.fromarray(GREY8, mode="L").convert("P")
    image.putpalette(palette.tobytes())
    image.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), palette[GREY8])


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(tmp_path, orientation):
    # What a camera stores for a displayed image: orientation 6 means "rotate 90 degrees
    # clockwise to display", so the stored pixels are the displayed ones turned back.
    stored = {3: np.rot90(RGB8, 2), 6: np.rot90(RGB8, 1), 8: np.rot90(RGB8, -1)}[orientation]
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    path = _save(np.ascontiguousarray(stored), tmp_path / "photo.png", exif=exif)
    np.testing.assert_array_equal(read_image(path), RGB8)


def test_jpeg_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    path = _save(np.ascontiguousarray(np.rot90(RGB8, 1)), tmp_path / "photo.jpg", exif=exif)
    assert read_image(path).shape == (24, 40, 3)


def _truncated_jpeg(path):
    buffer = io.BytesIO()
    Image.fromarray(RGB8).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


BAD_FILES = {
    "truncated": (_truncated_jpeg, "truncated"),
    "empty": (lambda path: path.write_bytes(b""), "empty"),
    "text": (lambda path: path.write_text("not an image"), "not a readable image"),
    "missing": (lambda path: None, "No such file"),
    "folder": (lambda path: path.mkdir(), "directory"),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_unreadable_file_is_one_error_naming_file_and_reason(tmp_path, kind):
    make, reason = BAD_FILES[kind]
    path = tmp_path / "bad.jpg"
    make(path)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value) and reason in info.value.reason
    assert info.value.path == path
