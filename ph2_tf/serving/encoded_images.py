"""Image files (JPEG, PNG, BMP) decoded inside a TensorFlow graph with `read_image`'s rules.

The serving signatures that take encoded images (`ph2_tf.serving.export`) must give the mask
`predict` gives for the same file, and `predict` reads files with
`tfds_ph2.ph2.image_reading.read_image`, which is Pillow. A SavedModel holds TensorFlow ops only,
so `decode_image` redoes those rules with them:

- JPEG through libjpeg's accurate integer IDCT, as Pillow decodes it (TensorFlow's default, the
  fast IDCT, is a few grey levels off);
- the orientation Pillow's `ImageOps.exif_transpose` reads is applied. TensorFlow has no EXIF
  reader, so the JPEG segments and PNG chunks are walked here: the tag comes from the TIFF
  directory of the first `Exif` APP1 segment (JPEG) or the last `eXIf` chunk (PNG); when that
  has no orientation tag, from `tiff:Orientation` in the XMP packet, as Pillow does;
- greyscale is repeated into RGB; 16-bit greyscale PNGs are scaled, `round(v * 255 / 65535)`;
  other 16-bit PNGs keep each value's high byte, as Pillow does when it opens them; alpha is
  dropped; 8-bit BMPs are looked up in their palette (TensorFlow's decoder returns the indices).

Anything else is refused with one message naming the image and the reason, never decoded
differently: formats other than JPEG, PNG and BMP; BMPs that TensorFlow's decoder reads wrongly
(1, 4 and 16 bits per pixel, compressed, OS/2 headers); animated PNGs; orientation metadata that
cannot be read here (a damaged EXIF directory, an orientation tag that is not one number,
compressed XMP, EXIF in a `Raw profile type exif` text chunk); images over a pixel limit, from
their header, before any pixel is decoded. A file whose header passes but whose data is damaged
fails in TensorFlow's decoder, with its message ("Invalid JPEG data", "Invalid PNG data").
"""

import numpy as np
import tensorflow as tf

# Format numbers, the branch index of the decoding switches.
JPEG, PNG, BMP = 0, 1, 2
JPEG_DCT_METHOD = "INTEGER_ACCURATE"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The bit depth's place in the IHDR chunk, which follows the signature; 8 more IHDR bytes follow.
_PNG_BIT_DEPTH_AT = 24
_EXIF_ID = b"Exif\x00\x00"
_JPEG_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
_PNG_XMP_KEYWORD = b"XML:com.adobe.xmp\x00"
_PNG_RAW_EXIF_KEYWORD = b"Raw profile type exif\x00"
_ORIENTATION_TAG = 0x0112
_TIFF_SHORT, _TIFF_LONG = 3, 4
# Pillow's pattern for the orientation in XMP, anchored for a full match and an extraction.
_XMP_ORIENTATION = r'tiff:Orientation(?:="|>)([0-9])'
# BMP information headers whose width, height, bit count and compression sit where TensorFlow's
# decoder reads them (BITMAPINFOHEADER and its extensions; not the OS/2 ones).
_BMP_HEADER_SIZES = (40, 52, 56, 108, 124)
# The BI_BITFIELDS masks (red, green, blue) of a 32-bit BMP stored as B, G, R, A bytes: the only
# layout the decoder assumes.
_BMP_BGRA_MASKS = (0x00FF0000, 0x0000FF00, 0x000000FF)
_BMP_RGB, _BMP_BITFIELDS = 0, 3
# Most steps of the walk through a JPEG's header (one per segment, stray byte or fill byte):
# real files have tens of segments; a damaged one could otherwise be walked byte by byte.
_JPEG_MAX_STEPS = 4096


def _chunk_type(name):
    """A PNG chunk type as the number `_number` reads from its bytes, big-endian."""
    return int.from_bytes(name, "big")


_PNG_IEND, _PNG_EXIF, _PNG_ANIMATION = map(_chunk_type, (b"IEND", b"eXIf", b"acTL"))
_PNG_TEXT_CHUNKS = tuple(map(_chunk_type, (b"tEXt", b"zTXt", b"iTXt")))
_PNG_ZTXT, _PNG_ITXT = _PNG_TEXT_CHUNKS[1:]


def _literal(literal):
    """The bytes of `literal` as an int64 array, to compare with `_Bytes.at`."""
    return np.frombuffer(literal, np.uint8).astype(np.int64)


def _number(values, little_endian):
    """The unsigned integer of the bytes along the last axis of `values`, in the byte order
    `little_endian` (a Python bool)."""
    weights = 256 ** np.arange(values.shape[-1], dtype=np.int64)
    return tf.reduce_sum(values * (weights if little_endian else weights[::-1]), axis=-1)


class _Bytes:
    """One file's bytes, read as int64 numbers at any position; 0 past its end."""

    def __init__(self, data):
        self.data = data
        raw = tf.io.decode_raw(data, tf.uint8)
        self.size = tf.size(raw, out_type=tf.int64)
        self._padded = tf.pad(raw, [[0, 8]])  # an empty file too has bytes to read

    def at(self, positions):
        """The byte at each of `positions` (int64, any shape)."""
        positions = tf.clip_by_value(positions, 0, self.size + 7)
        return tf.cast(tf.gather(self._padded, positions), tf.int64)

    def window(self, position, size):
        """The `size` bytes from `position` on."""
        return self.at(tf.cast(position, tf.int64) + np.arange(size, dtype=np.int64))

    def equals(self, position, literal):
        """Whether the file holds the bytes `literal` at `position`."""
        position = tf.cast(position, tf.int64)
        found = self.window(position, len(literal))
        return (
            (position >= 0)
            & (position + len(literal) <= self.size)
            & tf.reduce_all(found == _literal(literal))
        )

    def text(self, start, end):
        """The bytes from `start` to `end` as a string (empty when the range is not in the
        file)."""
        valid = (start >= 0) & (start <= end) & (end <= self.size)
        zero = np.int64(0)
        return tf.strings.substr(
            self.data, tf.where(valid, start, zero), tf.where(valid, end - start, zero)
        )


def _format_of(file):
    """The format number of a file from its first bytes: JPEG, PNG, BMP or -1."""
    return tf.where(
        file.equals(0, b"\xff\xd8\xff"),
        JPEG,
        tf.where(file.equals(0, _PNG_SIGNATURE), PNG, tf.where(file.equals(0, b"BM"), BMP, -1)),
    )


def _problem(condition, message):
    """`message` where `condition` holds, else the empty string (no problem)."""
    return tf.where(condition, message, "")


def _first_problem(*problems):
    """The first non-empty message of `problems`, or the empty string."""
    found = tf.stack(problems)
    return found[tf.argmax(tf.cast(found != "", tf.int32))]


# What each format's header reading returns: the stored size, where the metadata that may hold
# an orientation lies (-1s where there is none) and why the file is refused ("" when it is not).
_NO_METADATA = (*[np.int64(-1)] * 4, False)


def _jpeg_header(file):
    """Size, metadata places and problem of a JPEG, from the segments before its image data.

    Walks the segments as Pillow does (bytes that are not markers and 0xFF fill bytes are
    skipped) up to the start of scan: the first `Exif` APP1 segment and the last XMP one count.
    """
    none = tf.constant(-1, tf.int64)

    def not_at_scan(position, *_):
        first, marker = tf.unstack(file.window(position, 2))
        start_of_scan = (first == 0xFF) & ((marker == 0xDA) | (marker == 0xD9))
        return (position + 4 <= file.size) & ~start_of_scan

    def next_segment(position, exif_start, exif_end, xmp_start, xmp_end, height, width):
        # One read per step: marker, length and as much of the segment as the tests need.
        window = file.window(position, 4 + len(_JPEG_XMP_ID))
        at_marker, marker = window[0] == 0xFF, window[1]
        standalone = (marker == 0x00) | (marker == 0x01) | ((marker >= 0xD0) & (marker <= 0xD8))
        has_length = at_marker & (marker != 0xFF) & ~standalone
        start = position + 4
        end = position + 2 + _number(window[2:4], little_endian=False)

        def holds(literal):
            found = tf.reduce_all(window[4 : 4 + len(literal)] == _literal(literal))
            return found & (start + len(literal) <= file.size)

        application_1 = has_length & (marker == 0xE1)
        exif = application_1 & (exif_start < 0) & holds(_EXIF_ID)
        xmp = application_1 & holds(_JPEG_XMP_ID)
        # Start of frame: every 0xC0-0xCF marker but DHT (C4), JPG (C8) and DAC (CC).
        frame = (
            has_length
            & (height < 0)
            & (marker >= 0xC0)
            & (marker <= 0xCF)
            & (marker != 0xC4)
            & (marker != 0xC8)
            & (marker != 0xCC)
        )
        following = tf.where(
            at_marker & (marker != 0xFF), tf.where(has_length, end, position + 2), position + 1
        )
        return (
            following,
            tf.where(exif, start, exif_start),
            tf.where(exif, end, exif_end),
            tf.where(xmp, start + len(_JPEG_XMP_ID), xmp_start),
            tf.where(xmp, end, xmp_end),
            # The frame header: length, precision, height, width.
            tf.where(frame, _number(window[5:7], little_endian=False), height),
            tf.where(frame, _number(window[7:9], little_endian=False), width),
        )

    position, exif_start, exif_end, xmp_start, xmp_end, height, width = tf.while_loop(
        not_at_scan,
        next_segment,
        (tf.constant(2, tf.int64), *[none] * 6),
        maximum_iterations=_JPEG_MAX_STEPS,
    )
    problem = _first_problem(
        _problem(
            not_at_scan(position),
            f"is a damaged JPEG: no image data after {_JPEG_MAX_STEPS} markers or stray bytes",
        ),
        _problem(height < 0, "is a damaged JPEG: no frame header before the image data"),
    )
    return height, width, exif_start, exif_end, xmp_start, xmp_end, False, problem


def _png_header(file):
    """Size, metadata places and problem of a PNG, from its chunks (all of them: Pillow reads
    the metadata after the image data too); the last `eXIf` chunk and the last XMP text count.
    """

    def before_end(position, _):
        return (position + 8 <= file.size) & (
            _number(file.window(position + 4, 4), little_endian=False) != _PNG_IEND
        )

    def next_chunk(position, positions):
        length = _number(file.window(position, 4), little_endian=False)
        return position + 12 + length, positions.write(positions.size(), position)  # type, CRC

    _, positions = tf.while_loop(
        before_end,
        next_chunk,
        (tf.constant(8, tf.int64), tf.TensorArray(tf.int64, size=0, dynamic_size=True)),
    )
    # Each chunk's length, type and the first bytes of its data, in one read.
    keyword_size = len(_PNG_RAW_EXIF_KEYWORD)
    chunks = file.at(positions.stack()[:, None] + np.arange(8 + keyword_size))
    kinds = _number(chunks[:, 4:8], little_endian=False)
    starts = positions.stack() + 8
    ends = starts + _number(chunks[:, :4], little_endian=False)
    keywords = chunks[:, 8:]
    text = tf.reduce_any(kinds[:, None] == np.array(_PNG_TEXT_CHUNKS), axis=1)
    text &= ends - starts >= keyword_size

    def keyword_is(keyword):
        return text & tf.reduce_all(keywords[:, : len(keyword)] == _literal(keyword), axis=1)

    xmp = keyword_is(_PNG_XMP_KEYWORD)
    # zTXt is compressed; iTXt has a compression flag after its keyword.
    compressed = (kinds == _PNG_ZTXT) | (
        (kinds == _PNG_ITXT) & (keywords[:, len(_PNG_XMP_KEYWORD)] != 0)
    )
    exif = kinds == _PNG_EXIF
    exif_start = _last(starts, exif)
    raw_exif = tf.reduce_any(keyword_is(_PNG_RAW_EXIF_KEYWORD))
    problem = _first_problem(
        _problem(
            ~file.equals(12, b"IHDR") | (file.size < _PNG_BIT_DEPTH_AT + 9),
            "is a damaged PNG: no IHDR chunk first",
        ),
        _problem(
            tf.reduce_any(kinds == _PNG_ANIMATION), "is an animated PNG: send one frame as a PNG"
        ),
        _problem(
            raw_exif & (exif_start < 0),
            "holds its EXIF in a `Raw profile type exif` text chunk, whose orientation is not "
            "read here: save it again without it",
        ),
    )
    ihdr = file.window(16, 8)
    return (
        _number(ihdr[4:], little_endian=False),
        _number(ihdr[:4], little_endian=False),
        exif_start,
        _last(ends, exif),
        _last(starts, xmp),
        _last(ends, xmp),
        _last(tf.cast(compressed, tf.int64), xmp) > 0,
        problem,
    )


def _last(values, chosen):
    """The last of `values` where `chosen` holds, or -1."""
    selected = tf.boolean_mask(values, chosen)[-1:]
    return tf.where(tf.size(selected) > 0, tf.reduce_sum(selected), np.int64(-1))


def _bmp_header(file):
    """Size and problem of a BMP: whether TensorFlow's decoder reads it as Pillow does. BMPs
    hold no orientation."""
    header = file.window(0, 66)
    header_size = _number(header[14:18], little_endian=True)
    bits = _number(header[28:30], little_endian=True)
    compression = _number(header[30:34], little_endian=True)
    colours = _number(header[46:50], little_endian=True)
    masks = _number(tf.reshape(header[54:66], [3, 4]), little_endian=True)
    width = _number(header[18:22], little_endian=True)
    height = _number(header[22:26], little_endian=True)
    height = tf.abs(tf.where(height >= 2**31, height - 2**32, height))  # < 0: rows top down
    known_header = tf.reduce_any(header_size == np.array(_BMP_HEADER_SIZES))
    plain = (compression == _BMP_RGB) & tf.reduce_any(bits == np.array([8, 24, 32]))
    bgra = (
        (compression == _BMP_BITFIELDS)
        & (bits == 32)
        & tf.reduce_all(masks == np.array(_BMP_BGRA_MASKS))
    )
    unreadable = tf.strings.format(
        "is a BMP with {} bits per pixel, compression {} and a {}-byte header, which is not "
        "decoded here: send 8-, 24- or 32-bit uncompressed BMP, or PNG",
        (bits, compression, header_size),
    )
    problem = _first_problem(
        _problem(file.size < 54, "is a damaged BMP: its header is cut short"),
        _problem(~known_header | ~(plain | bgra), unreadable),
        _problem((bits == 8) & (colours > 256), "is a damaged BMP: over 256 palette colours"),
    )
    return (height, width, *_NO_METADATA, problem)


def _orientation(file, exif_start, exif_end, xmp_start, xmp_end, xmp_compressed):
    """The orientation Pillow's `exif_transpose` applies, from EXIF, else from XMP.

    Returns:
        `(orientation, problem)`: 1-8, or another number, which means no change, as for Pillow.
    """
    exif_orientation, problem = tf.cond(
        exif_start >= 0,
        lambda: _exif_orientation(file, exif_start, exif_end),
        lambda: (tf.constant(-1, tf.int64), tf.constant("")),
    )
    use_xmp = (exif_orientation < 0) & (xmp_start >= 0)
    problem = _first_problem(
        problem,
        _problem(
            use_xmp & xmp_compressed,
            "holds compressed XMP metadata, whose orientation is not read here: save it again "
            "with uncompressed XMP, or without XMP",
        ),
    )
    xmp = file.text(xmp_start, xmp_end)
    xmp_orientation = tf.cond(
        use_xmp & tf.strings.regex_full_match(xmp, f"(?s).*{_XMP_ORIENTATION}.*"),
        lambda: tf.strings.to_number(
            tf.strings.regex_replace(xmp, f"(?s)^.*?{_XMP_ORIENTATION}.*$", r"\1"), tf.int64
        ),
        lambda: tf.constant(1, tf.int64),
    )
    return tf.where(exif_orientation >= 0, exif_orientation, xmp_orientation), problem


def _exif_orientation(file, start, end):
    """The orientation tag of the EXIF block `file[start:end]`, Pillow's way.

    Returns:
        `(orientation, problem)`: the tag's value, or -1 when the first directory has none.
    """
    for _ in range(2):  # Pillow strips up to two "Exif\0\0" before the TIFF header
        start = tf.where(file.equals(start, _EXIF_ID), start + len(_EXIF_ID), start)
    header = file.window(start, 8)
    little = tf.reduce_all(header[:4] == _literal(b"II*\x00"))
    big = tf.reduce_all(header[:4] == _literal(b"MM\x00*"))

    def number(values):
        return tf.where(little, _number(values, True), _number(values, False))

    directory = start + number(header[4:])
    count = number(file.window(directory, 2))
    readable = (little | big) & (directory + 2 + 12 * count <= tf.minimum(end, file.size))
    entries = directory + 2 + 12 * tf.range(tf.where(readable, count, np.int64(0)))
    # Each entry: tag, type, number of values, value (or where the values are).
    fields = file.at(entries[:, None] + np.arange(12))
    # Pillow keeps the first of repeated tags.
    entry = tf.boolean_mask(fields, number(fields[:, :2]) == _ORIENTATION_TAG)[:1]
    kind, values = number(entry[:, 2:4]), number(entry[:, 4:8])
    value = tf.where(kind == _TIFF_SHORT, number(entry[:, 8:10]), number(entry[:, 8:12]))
    one_number = (values == 1) & ((kind == _TIFF_SHORT) | (kind == _TIFF_LONG))
    found = tf.size(kind) > 0
    orientation = tf.where(found, tf.reduce_sum(value), np.int64(-1))
    problem = _first_problem(
        _problem(
            ~readable,
            "has a damaged EXIF block: its orientation cannot be read; save it again",
        ),
        _problem(
            found & ~tf.reduce_all(one_number),
            "has an EXIF orientation that is not one number: save it again",
        ),
    )
    return orientation, problem


def _to_rgb(image):
    """uint8 `[H, W, 3]` from 1 (grey), 2 (grey, alpha), 3 or 4 (with alpha) channels."""
    channels = tf.shape(image)[-1]
    return tf.cond(
        channels < 3, lambda: tf.repeat(image[..., :1], 3, axis=-1), lambda: image[..., :3]
    )


def _decode_png(data):
    """uint8 RGB pixels of a PNG, Pillow's way with 16-bit samples."""

    def sixteen_bit():
        pixels = tf.cast(tf.io.decode_png(data, channels=0, dtype=tf.uint16), tf.int32)
        return tf.cast(
            tf.cond(
                tf.shape(pixels)[-1] == 1,
                lambda: (pixels + 128) // 257,  # round(v * 255 / 65535), as read_image scales I;16
                lambda: tf.bitwise.right_shift(pixels, 8),  # Pillow keeps the high byte of colour
            ),
            tf.uint8,
        )

    bit_depth = tf.strings.substr(data, _PNG_BIT_DEPTH_AT, 1)
    return _to_rgb(
        tf.cond(bit_depth == b"\x10", sixteen_bit, lambda: tf.io.decode_png(data, channels=0))
    )


def _decode_bmp(data):
    """uint8 RGB pixels of a BMP `_bmp_header` accepted; 8-bit ones through their palette."""
    pixels = tf.io.decode_bmp(data, channels=0)

    def through_palette():
        file = _Bytes(data)
        header = file.window(0, 50)
        colours = _number(header[46:50], little_endian=True)
        colours = tf.where(colours == 0, np.int64(256), colours)
        # Palette entries are B, G, R, 0 after the header; Pillow shows indices beyond the
        # colours the file gives as black.
        entries = 14 + _number(header[14:18], little_endian=True) + 4 * np.arange(256)
        given = file.at(entries[:, None] + np.array([2, 1, 0]))
        palette = tf.where(np.arange(256)[:, None] < colours, given, np.int64(0))
        return tf.gather(tf.cast(palette, tf.uint8), tf.cast(pixels[..., 0], tf.int32))

    return tf.cond(tf.shape(pixels)[-1] == 1, through_palette, lambda: _to_rgb(pixels))


def _decode_jpeg(data):
    return _to_rgb(tf.io.decode_jpeg(data, channels=0, dct_method=JPEG_DCT_METHOD))


def orient(image, orientation):
    """The image turned as Pillow's `exif_transpose` turns it for an EXIF orientation.

    Args:
        image: `[H, W, C]`.
        orientation: int scalar; 2-8 turn or flip the image, anything else leaves it.
    """

    def transposed():
        return tf.transpose(image, [1, 0, 2])

    branches = [
        lambda: image,
        lambda: image[:, ::-1],  # 2: mirrored left-right
        lambda: image[::-1, ::-1],  # 3: turned 180 degrees
        lambda: image[::-1],  # 4: mirrored top-bottom
        transposed,  # 5: transposed
        lambda: transposed()[:, ::-1],  # 6: turned 90 degrees clockwise
        lambda: transposed()[::-1, ::-1],  # 7: transversed
        lambda: transposed()[::-1],  # 8: turned 90 degrees anticlockwise
    ]
    orientation = tf.cast(orientation, tf.int32)
    index = tf.where((orientation >= 2) & (orientation <= 8), orientation - 1, 0)
    return tf.switch_case(index, branches)


def read_header(data):
    """Format, size, orientation and what keeps an encoded image from being decoded here.

    Args:
        data: a scalar string tensor, the file's bytes.

    Returns:
        `(format, height, width, orientation, problem)`: the format number (-1 unknown), the
        stored size in pixels (before the orientation), the orientation (2-8 turn the image),
        and an empty string or the reason the image is refused, a phrase such as "is not a
        JPEG, PNG or BMP file".
    """
    file = _Bytes(data)
    image_format = _format_of(file)

    def unknown():
        return (np.int64(0), np.int64(0), *_NO_METADATA, "")

    height, width, *metadata, problem = tf.switch_case(
        tf.where(image_format < 0, 3, image_format),
        [lambda: _jpeg_header(file), lambda: _png_header(file), lambda: _bmp_header(file), unknown],
    )
    orientation, orientation_problem = _orientation(file, *metadata)
    problem = _first_problem(
        _problem(file.size == 0, "is empty"),
        _problem(
            image_format < 0,
            "is not a JPEG, PNG or BMP file: convert other formats (TIFF, GIF, WebP, ...) to PNG",
        ),
        problem,
        orientation_problem,
    )
    return image_format, height, width, orientation, problem


# A function of its own, traced once per process: each serving signature that decodes images
# calls it instead of holding its thousand-odd ops again, which kept exports slow.
@tf.function(
    input_signature=[
        tf.TensorSpec([], tf.string),
        tf.TensorSpec([], tf.string),
        tf.TensorSpec([], tf.int64),
    ],
    autograph=False,
)
def decode_image(data, name, max_pixels):
    """Decodes one encoded image as `read_image` reads the same file, or refuses it.

    Args:
        data: a scalar string tensor, a JPEG, PNG or BMP file.
        name: how messages name the image, e.g. "`images_bytes`[2]" (a string or string tensor).
        max_pixels: the most pixels (height x width) accepted, checked on the header before
            decoding.

    Returns:
        uint8 `[H, W, 3]`, in the orientation viewers display.

    Raises:
        tf.errors.InvalidArgumentError: when run, naming the image and the reason it is
            refused, or TensorFlow's decoder's message on damaged image data.
    """
    image_format, height, width, orientation, problem = read_header(data)
    too_large = tf.strings.format(
        "has {} x {} pixels: at most {} pixels (height x width) per image are served: resize it "
        "first",
        (height, width, max_pixels),
    )
    problem = _first_problem(problem, _problem(height * width > max_pixels, too_large))
    check = tf.debugging.Assert(problem == "", [tf.strings.join([name, " ", problem])], summarize=1)
    with tf.control_dependencies([check]):
        image = tf.switch_case(
            image_format,
            [lambda: _decode_jpeg(data), lambda: _decode_png(data), lambda: _decode_bmp(data)],
        )
    return orient(image, orientation)
