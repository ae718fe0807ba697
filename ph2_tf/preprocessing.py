"""The one definition of the pixels a model sees, written in `keras.ops` for every backend.

The TensorFlow input pipeline (`ph2_tf.data`), the numpy pipeline of the other backends
(`ph2_tf.arrays`), evaluation and the exported serving signature all call these functions, so
the same image gives the same model input wherever it is read. No TensorFlow import here.
"""

from keras import ops

# TFDS `ph2` configs holding images already resized to a given side.
RESIZED_CONFIGS = {128: "resized_128", 256: "resized_256"}


def tfds_config_for(image_size):
    """Returns the TFDS `ph2` config to read for a training size.

    Args:
        image_size: side of the square training images, in pixels.

    Returns:
        `'resized_128'` or `'resized_256'` when such a config exists for `image_size`,
        else `'original'`.
    """
    return RESIZED_CONFIGS.get(image_size, "original")


def resize_image(image, size):
    """Resizes float images to `size` with anti-aliased bilinear interpolation.

    Args:
        image: float tensor `(H, W, C)` or `(B, H, W, C)`.
        size: `(height, width)`.

    Returns:
        The resized float32 images.
    """
    return ops.image.resize(image, size, interpolation="bilinear", antialias=True)


def resize_mask(mask, size):
    """Resizes masks to `size` with nearest-neighbour interpolation (values are kept).

    Args:
        mask: tensor `(H, W, 1)` or `(B, H, W, 1)`.
        size: `(height, width)`.

    Returns:
        The resized masks, in the input's dtype.
    """
    return ops.image.resize(mask, size, interpolation="nearest")


def preprocess(image, mask, image_size):
    """Turns one uint8 image and its lesion mask into model inputs and targets.

    Args:
        image: uint8 `(H, W, 3)`.
        mask: integer or bool `(H, W, 1)`, lesion where non-zero.
        image_size: side of the square output, in pixels.

    Returns:
        `(image, mask)`: float32 `(image_size, image_size, 3)` in [0, 1] and float32
        `(image_size, image_size, 1)` in {0, 1}, as tensors of the current Keras backend.

    Example:

    ```python
    image, mask = preprocess(np.zeros((576, 767, 3), "uint8"), np.ones((576, 767, 1)), 96)
    ```
    """
    size = (image_size, image_size)
    scaled = resize_image(ops.cast(image, "float32") / 255.0, size)
    return scaled, ops.cast(resize_mask(ops.cast(mask, "uint8"), size) > 0, "float32")
