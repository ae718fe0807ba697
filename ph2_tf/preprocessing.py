"""The one definition of the pixels a model sees, written in `keras.ops` for every backend.

The TFDS `resized_*` configs (`tfds_ph2`), the TensorFlow input pipeline (`ph2_tf.data`), the
numpy pipeline of the other backends (`ph2_tf.arrays`), evaluation and the exported serving
signature all call these functions, so the same image gives the same model input wherever it is
read. Images are resized as uint8 and rounded, which is what lets a prepared config hold exactly
the pixels the serving graph computes. No TensorFlow import here.
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
    """Resizes uint8 images with anti-aliased bilinear interpolation, rounded back to uint8.

    The TFDS `resized_*` configs store exactly this, so that an image read from them and the
    same image resized here (by the serving signature, or for a size with no such config) are
    the same pixels. Resizing to the image's own size returns it unchanged.

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


def model_input(image, image_size):
    """The float32 model input for uint8 images of any size: resized, then scaled to [0, 1].

    Args:
        image: uint8 `(H, W, 3)` or `(B, H, W, 3)`.
        image_size: side of the square model input, in pixels.

    Returns:
        float32 `(..., image_size, image_size, 3)` in [0, 1].

    Example:

    ```python
    x = model_input(np.zeros((1, 576, 767, 3), "uint8"), 96)  # (1, 96, 96, 3)
    ```
    """
    size = (image_size, image_size)
    if tuple(image.shape[-3:-1]) != size:  # images from a `resized_*` config already are
        image = resize_image(image, size)
    return ops.cast(image, "float32") / 255.0


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
    mask = ops.cast(mask, "uint8")
    if tuple(mask.shape[-3:-1]) != size:
        mask = resize_mask(mask, size)
    return model_input(image, image_size), ops.cast(mask > 0, "float32")
