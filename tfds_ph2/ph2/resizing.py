"""How the `resized_*` configs resize: the definition the models also use for training and serving.

Written in `keras.ops`, so that the serving graph (TensorFlow) and the other backends compute the
same pixels a prepared config stores. It lives in the dataset package because the builder needs it
and must not depend on the model code, which imports it from here.
"""

from keras import ops


def resize_image(image, size):
    """Resizes uint8 images with anti-aliased bilinear interpolation, rounded back to uint8.

    The `resized_*` configs store exactly this, so that an image read from them and the same
    image resized at serving time are the same pixels. Resizing to the image's own size returns
    it unchanged.

    Args:
        image: uint8 tensor `(H, W, C)` or `(B, H, W, C)`.
        size: `(height, width)`.

    Returns:
        The resized uint8 images.
    """
    resized = ops.image.resize(
        ops.cast(image, "float32"), size, interpolation="bilinear", antialias=True
    )
    return ops.cast(ops.clip(ops.round(resized), 0, 255), "uint8")


def resize_mask(mask, size):
    """Resizes masks to `size` with nearest-neighbour interpolation (values are kept).

    Args:
        mask: tensor `(H, W, 1)` or `(B, H, W, 1)`.
        size: `(height, width)`.

    Returns:
        The resized masks, in the input's dtype.
    """
    return ops.image.resize(mask, size, interpolation="nearest")
