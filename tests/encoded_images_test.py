"""Tests of ph2_tf.serving.encoded_images: image files decoded in the graph give the pixels
`read_image` gives, or are refused with a message naming the image and the reason.

Each file is written with Pillow (or by hand, for the headers Pillow does not write), read by
`tfds_ph2.ph2.image_reading.read_image` (Pillow) and by the graph, and the two are compared pixel
for pixel.
"""

import io
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps, PngImagePlugin

from ph2_tf.serving import encoded_images
from tfds_ph2.ph2.image_reading import read_image

RNG = np.random.default_rng(0)
HEIGHT, WIDTH = 37, 53
RGB = RNG.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
GREY_16 = RNG.integers(0, 65536, (HEIGHT, WIDTH), dtype=np.uint16)
RGB_16 = RNG.integers(0, 65536, (HEIGHT, WIDTH, 3), dtype=np.uint16)
ORIENTATION = 0x0112
MAX_PIXELS = 10_000


def decode(data):
    return encoded_images.decode_image(data, "`file`", MAX_PIXELS)


def encode(pixels, image_format, **options):
    """The bytes Pillow writes for `pixels` (an array or an Image) in `image_format`."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def exif_block(orientation):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif.tobytes()


def tiff_block(byte_order, entries, directory_at=8):
    """An EXIF block (TIFF header and one directory) of `(tag, type, count, 4 value bytes)`."""
    endian = "<" if byte_order == b"II" else ">"
    block = byte_order + struct.pack(endian + "HIH", 42, directory_at, len(entries))
    for tag, kind, count, value in entries:
        block += struct.pack(endian + "HHI", tag, kind, count) + value
    return block + b"\0\0\0\0"


def with_app1(jpeg, payload):
    """`jpeg` with an APP1 segment holding `payload` right after its start marker."""
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def before_png_end(png, chunk):
    """`png` with `chunk` inserted before its IEND chunk, after the image data."""
    end = png.rindex(b"IEND") - 4
    return png[:end] + chunk + png[end:]


def xmp_packet(orientation, attribute=True):
    """An XMP packet holding `tiff:Orientation` as an attribute or as an element."""
    if attribute:
        description = f'<rdf:Description tiff:Orientation="{orientation}"/>'
    else:
        description = f"<rdf:Description><tiff:Orientation>{orientation}</tiff:Orientation>"
        description += "</rdf:Description>"
    return f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF>{description}</rdf:RDF></x:xmpmeta>'


def png_with_text(keyword, text, compressed=False):
    info = PngImagePlugin.PngInfo()
    info.add_itxt(keyword, text, zip=compressed)
    return encode(RGB, "PNG", pnginfo=info)


def bmp_8_bit(indices, palette):
    """An 8-bit BMP (BITMAPINFOHEADER, bottom-up rows) of `indices` with a short palette."""
    height, width = indices.shape
    row_size = (width + 3) // 4 * 4
    rows = b"".join(
        indices[row].tobytes().ljust(row_size, b"\0") for row in range(height - 1, -1, -1)
    )
    colours = b"".join(bytes([b, g, r, 0]) for r, g, b in palette)
    offset = 14 + 40 + len(colours)
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 0, len(rows), 0, 0, 0, 0)
    header = header[:32] + struct.pack("<I", len(palette)) + header[36:]
    return b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + header + colours + rows


def bmp_header_only(bits, compression, header_size=40):
    """A BMP with the given bit count, compression and information header size, and a few
    bytes of pixels."""
    info = struct.pack("<IiiHHI", header_size, WIDTH, HEIGHT, 1, bits, compression)
    info = info.ljust(header_size, b"\0")
    pixels = b"\0" * 64
    file_header = struct.pack("<IHHI", 14 + header_size + len(pixels), 0, 0, 14 + header_size)
    return b"BM" + file_header + info + pixels


ACCEPTED = {
    "jpeg": lambda: encode(RGB, "JPEG", quality=90),
    "jpeg greyscale": lambda: encode(GREY, "JPEG"),
    "jpeg cmyk": lambda: encode(Image.fromarray(RGB).convert("CMYK"), "JPEG"),
    "png": lambda: encode(RGB, "PNG"),
    "png greyscale": lambda: encode(GREY, "PNG"),
    "png 16-bit greyscale": lambda: encode(GREY_16, "PNG"),
    "png 16-bit greyscale, transparent value": lambda: encode(GREY_16, "PNG", transparency=5),
    "png 16-bit rgb": lambda: tf.io.encode_png(RGB_16).numpy(),
    "png 16-bit grey and alpha": lambda: tf.io.encode_png(
        np.stack([GREY_16, GREY_16[::-1]], axis=-1)
    ).numpy(),
    "png rgba": lambda: encode(np.dstack([RGB, GREY]), "PNG"),
    "png grey and alpha": lambda: encode(Image.fromarray(GREY).convert("LA"), "PNG"),
    "png palette": lambda: encode(Image.fromarray(RGB).convert("P"), "PNG"),
    "png 1-bit": lambda: encode(GREY > 128, "PNG"),
    "png interlaced": lambda: encode(RGB, "PNG", interlace=1),
    "bmp": lambda: encode(RGB, "BMP"),
    "bmp greyscale": lambda: encode(GREY, "BMP"),
    "bmp palette": lambda: encode(Image.fromarray(RGB).convert("P"), "BMP"),
    "bmp rgba": lambda: encode(np.dstack([RGB, GREY]), "BMP"),
    # Indices past the 3 colours given are black for Pillow.
    "bmp short palette": lambda: bmp_8_bit(
        RNG.integers(0, 7, (5, 9), dtype=np.uint8), [(10, 20, 30), (40, 50, 60), (7, 8, 9)]
    ),
    # 6: the viewer turns the stored pixels 90 degrees clockwise; EXIF wins over XMP.
    "jpeg exif and xmp": lambda: encode(
        RGB, "JPEG", exif=exif_block(6), xmp=xmp_packet(8).encode()
    ),
    "jpeg exif 1 and xmp": lambda: encode(
        RGB, "JPEG", exif=exif_block(1), xmp=xmp_packet(8).encode()
    ),
    "jpeg xmp attribute": lambda: encode(RGB, "JPEG", xmp=xmp_packet(5).encode()),
    "jpeg xmp element": lambda: encode(RGB, "JPEG", xmp=xmp_packet(7, attribute=False).encode()),
    "png xmp": lambda: png_with_text("XML:com.adobe.xmp", xmp_packet(8)),
    "png exif after the image data": lambda: before_png_end(
        encode(RGB, "PNG"), png_chunk(b"eXIf", exif_block(6))
    ),
    "png 16-bit greyscale turned": lambda: encode(GREY_16, "PNG", exif=exif_block(8)),
    "jpeg big-endian exif": lambda: with_app1(
        encode(RGB, "JPEG"), b"Exif\0\0" + tiff_block(b"MM", [(ORIENTATION, 3, 1, b"\0\x06\0\0")])
    ),
    "jpeg orientation as a long": lambda: with_app1(
        encode(RGB, "JPEG"), b"Exif\0\0" + tiff_block(b"II", [(ORIENTATION, 4, 1, b"\x03\0\0\0")])
    ),
    "jpeg repeated orientation": lambda: with_app1(  # Pillow keeps the first
        encode(RGB, "JPEG"),
        b"Exif\0\0"
        + tiff_block(
            b"II", [(ORIENTATION, 3, 1, b"\x06\0\0\0"), (ORIENTATION, 3, 1, b"\x03\0\0\0")]
        ),
    ),
    "jpeg orientation 9": lambda: encode(RGB, "JPEG", exif=exif_block(9)),  # no change
    "jpeg fill byte before a marker": lambda: (lambda jpeg: jpeg[:2] + b"\xff" + jpeg[2:])(
        encode(RGB, "JPEG", exif=exif_block(3))
    ),
}
ACCEPTED.update(
    {
        f"{image_format} orientation {orientation}": (
            lambda image_format=image_format, orientation=orientation: encode(
                RGB, image_format, exif=exif_block(orientation)
            )
        )
        for image_format in ("jpeg", "png")
        for orientation in range(1, 9)
    }
)


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_decoded_as_read_image_reads_the_file(name, tmp_path):
    data = ACCEPTED[name]()
    path = tmp_path / "image"
    path.write_bytes(data)
    expected = read_image(path)

    decoded = decode(tf.constant(data)).numpy()

    assert decoded.dtype == np.uint8 and decoded.shape == expected.shape
    np.testing.assert_array_equal(decoded, expected)


def test_each_orientation_turns_the_image_as_exif_transpose_does():
    shapes = set()
    for orientation in range(1, 9):
        data = encode(RGB, "JPEG", exif=exif_block(orientation))
        stored = Image.open(io.BytesIO(data))
        expected = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))

        decoded = decode(tf.constant(data)).numpy()

        np.testing.assert_array_equal(decoded, expected)
        turned = decoded.shape != (HEIGHT, WIDTH, 3) or not np.array_equal(decoded, stored)
        assert turned == (orientation > 1)
        shapes.add(decoded.shape)
    assert shapes == {(HEIGHT, WIDTH, 3), (WIDTH, HEIGHT, 3)}


REFUSED = {
    "empty": (b"", "`file` is empty"),
    "gif": (lambda: encode(RGB, "GIF"), "`file` is not a JPEG, PNG or BMP file"),
    "tiff": (lambda: encode(RGB, "TIFF"), "`file` is not a JPEG, PNG or BMP file"),
    "webp": (lambda: encode(RGB, "WEBP"), "`file` is not a JPEG, PNG or BMP file"),
    "text": (b"not an image at all", "`file` is not a JPEG, PNG or BMP file"),
    "bmp 1-bit": (
        lambda: encode(GREY > 128, "BMP"),
        "`file` is a BMP with 1 bits per pixel, compression 0 and a 40-byte header",
    ),
    "bmp 4-bit": (
        lambda: bmp_header_only(4, 0),
        "`file` is a BMP with 4 bits per pixel, compression 0 and a 40-byte header",
    ),
    "bmp 16-bit": (
        lambda: bmp_header_only(16, 0),
        "`file` is a BMP with 16 bits per pixel, compression 0",
    ),
    "bmp run-length encoded": (
        lambda: bmp_header_only(8, 1),
        "`file` is a BMP with 8 bits per pixel, compression 1",
    ),
    "bmp os/2 header": (
        lambda: bmp_header_only(24, 0, header_size=12),
        "`file` is a BMP with 24 bits per pixel, compression 0 and a 12-byte header",
    ),
    "bmp cut short": (b"BM" + b"\0" * 30, "`file` is a damaged BMP: its header is cut short"),
    "png compressed xmp": (
        lambda: png_with_text("XML:com.adobe.xmp", xmp_packet(6), compressed=True),
        "`file` holds compressed XMP metadata",
    ),
    "png raw profile exif": (
        lambda: png_with_text("Raw profile type exif", "exif 10 00"),
        "`file` holds its EXIF in a `Raw profile type exif` text chunk",
    ),
    "png animated": (
        lambda: encode(RGB, "PNG", save_all=True, append_images=[Image.fromarray(RGB[::-1])]),
        "`file` is an animated PNG",
    ),
    "png without a header": (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IDAT", b""),
        "`file` is a damaged PNG",
    ),
    "jpeg exif directory outside the block": (
        lambda: with_app1(
            encode(RGB, "JPEG"),
            b"Exif\0\0" + tiff_block(b"II", [(ORIENTATION, 3, 1, b"\x06\0\0\0")], 5000),
        ),
        "`file` has a damaged EXIF block: its orientation cannot be read",
    ),
    "jpeg exif not tiff": (
        lambda: with_app1(encode(RGB, "JPEG"), b"Exif\0\0XX*\0\x08\0\0\0"),
        "`file` has a damaged EXIF block",
    ),
    "jpeg two orientations in one tag": (
        lambda: with_app1(
            encode(RGB, "JPEG"),
            b"Exif\0\0" + tiff_block(b"II", [(ORIENTATION, 3, 2, b"\x06\0\x03\0")]),
        ),
        "`file` has an EXIF orientation that is not one number",
    ),
    "jpeg without a frame header": (b"\xff\xd8\xff\xd9", "`file` is a damaged JPEG: no frame"),
    "png over the pixel limit": (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 101, 100, 8, 2, 0, 0, 0))
        + png_chunk(b"IEND", b""),
        f"`file` has 100 x 101 pixels: at most {MAX_PIXELS} pixels (height x width) per image",
    ),
    "jpeg over the pixel limit": (
        lambda: encode(np.zeros((1, MAX_PIXELS + 1, 3), np.uint8), "JPEG"),
        f"`file` has 1 x {MAX_PIXELS + 1} pixels",
    ),
    "bmp over the pixel limit": (
        lambda: encode(np.zeros((2, MAX_PIXELS, 3), np.uint8), "BMP"),
        f"`file` has 2 x {MAX_PIXELS} pixels",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_the_reason(name):
    data, reason = REFUSED[name]
    data = data() if callable(data) else data

    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        decode(tf.constant(data))

    assert f"assertion failed: [{reason}" in info.value.message


@pytest.mark.parametrize(
    "image_format, reason",
    [("JPEG", "Invalid JPEG data"), ("PNG", "Invalid PNG data"), ("BMP", "Input size should")],
)
def test_damaged_image_data_fails_in_the_decoder(image_format, reason):
    data = encode(RGB, image_format)
    with pytest.raises(tf.errors.InvalidArgumentError, match=reason):
        decode(tf.constant(data[: len(data) // 2]))


def test_read_header_gives_format_stored_size_and_orientation():
    header = tf.function(encoded_images.read_header)
    for data, expected in [
        (encode(RGB, "JPEG", exif=exif_block(6)), (encoded_images.JPEG, HEIGHT, WIDTH, 6)),
        (encode(RGB, "PNG"), (encoded_images.PNG, HEIGHT, WIDTH, 1)),
        (encode(RGB[::-1], "BMP"), (encoded_images.BMP, HEIGHT, WIDTH, 1)),
    ]:
        *values, problem = header(tf.constant(data))
        assert tuple(int(v) for v in values) == expected and problem.numpy() == b""
