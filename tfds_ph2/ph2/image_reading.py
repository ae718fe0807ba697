"""Reading an image file as uint8 RGB: the one set of rules for the dataset and for `predict`.

The `ph2` builder reads its dermoscopic images with `read_image`, and so does
`ph2-seg predict`, so a model sees at prediction time what it was trained on. The module
lives here, in the dataset package, because the builder must not depend on the model code. It
imports only NumPy and Pillow, not TensorFlow.

Rules:

- the file is decoded completely, so a truncated file fails here and not later;
- the EXIF orientation is applied, so the pixels are in the orientation viewers display;
- greyscale is repeated into the three channels; palette images are looked up;
- 16-bit greyscale is scaled to 8 bits, `round(v * 255 / 65535)`, not clipped (clipping turns
  every value above 255 white). Pillow itself reduces 16-bit colour images to 8-bit RGB(A) when
  it opens them, by keeping the high byte of each value;
- alpha is dropped (not composited);
- anything else (32-bit float images, CIELab, values outside 0-65535) is an `ImageReadError`.
"""

from __future__ import annotations

import io
import pathlib
import struct

import numpy as np
from PIL import Image, ImageOps

# Modes Pillow converts to RGB correctly: 8-bit greyscale, palette, colour, with or without alpha.
_RGB_CONVERTIBLE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")
_16_BIT_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
# What Pillow raises on broken or hostile files, depending on the format and where it breaks.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error)


class ImageReadError(ValueError):
    """A file that cannot be read as an RGB image; the message names the file and the reason.

    Attributes:
        path: the file, as given.
        reason: what is wrong, without the file name.
    """

    def __init__(self, path, reason: str):
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = path
        self.reason = reason


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """uint8 (H, W, 3) pixels of a decoded image; ValueError naming an unsupported format."""
    if image.mode in _RGB_CONVERTIBLE_MODES:
        return np.asarray(image.convert("RGB"))
    if image.mode in _16_BIT_GREY_MODES:
        pixels = np.asarray(image)  # uint16, or int32 for mode "I".
        low, high = int(pixels.min()), int(pixels.max())
        if low < 0 or high > 65535:
            raise ValueError(
                f"greyscale values {low}..{high} are outside the 16-bit range 0..65535"
            )
        # round(v * 255 / 65535) = round(v / 257); v / 257 is never exactly k + 0.5.
        grey = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    raise ValueError(f"unsupported pixel format (Pillow mode {image.mode!r})")


def read_image(path) -> np.ndarray:
    """Reads an image file as uint8 RGB pixels, following the rules of this module.

    Args:
        path: a `str`, a `pathlib.Path` or another path object with `read_bytes()`, such as
            `etils.epath.Path`.

    Returns:
        A uint8 NumPy array of shape (H, W, 3), in the displayed orientation.

    Raises:
        ImageReadError: for a missing path, a folder, an empty, truncated or non-image file, or
            pixels that cannot be turned into 8-bit RGB; the message names the file and the
            reason.
    """
    file = path if hasattr(path, "read_bytes") else pathlib.Path(path)
    try:
        data = file.read_bytes()
    except OSError as e:
        raise ImageReadError(path, e.strerror or str(e)) from e
    if not data:
        raise ImageReadError(path, "the file is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # Decodes everything now, so that a truncated file fails here.
            ImageOps.exif_transpose(image, in_place=True)
            return _to_rgb8(image)
    except Image.UnidentifiedImageError as e:
        # Pillow's own message names the in-memory buffer, not the file.
        raise ImageReadError(path, "not a readable image (unknown format or damaged header)") from e
    except (*_DECODE_ERRORS, Image.DecompressionBombError) as e:
        raise ImageReadError(path, str(e) or type(e).__name__) from e
