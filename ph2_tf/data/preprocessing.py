"""The one definition of the pixels a model sees, written in `keras.ops` for every backend.

The resize itself is defined with the TFDS builder (`tfds_ph2.ph2.resizing`), which stores it in the
`resized_*` configs; the TensorFlow input pipeline (`ph2_tf.data.pipeline`), the
numpy pipeline of the other backends (`ph2_tf.data.arrays`), evaluation and the exported serving
signature all call these functions, so the same image gives the same model input wherever it is
read. Images are resized as uint8 and rounded, which is what lets a prepared config hold exactly
the pixels the serving graph computes. No TensorFlow import here.
"""

from keras import ops

from tfds_ph2.ph2.resizing import resize_image, resize_mask  # noqa: F401  (part of this module's API)

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
