"""Building blocks shared by the model factories."""

import keras

from ph2_tf.models.colour_constancy import ShadesOfGrey

# He initialisation, as the U-Net paper prescribes for its ReLU layers (Gaussian, std
# sqrt(2 / fan_in)). With Keras' default Glorot the narrow, BatchNorm-free UNet of the small
# profile still predicted all background after 30 epochs at lr 1e-4; with He it learns.
KERNEL_INITIALIZER = "he_normal"
# PyTorch's BatchNorm defaults, which the study used: its momentum 0.1 weighs the new batch, Keras'
# momentum weighs the running average, so 0.9 here. With Keras' 0.99 the running statistics lag
# far behind in a short run: SegNet's validation Jaccard (inference mode, running statistics)
# fell to 0 while it learned in training (docs/findings.md, "BatchNorm momentum").
BATCH_NORM_MOMENTUM = 0.9
BATCH_NORM_EPSILON = 1e-5


def scaled(filters, width):
    """Return `filters * width` rounded, at least 1.

    Args:
        filters: Filter count of the full-size (study) model.
        width: Width multiplier, e.g. 0.125 for the `small` CPU profile.

    Example:

    >>> scaled(64, 0.25)
    16
    """
    return max(1, round(filters * width))


def conv_block(x, filters, batch_norm, name):
    """Apply a stack of 3x3 'same' convolutions, each followed by optional BatchNorm and ReLU.

    Args:
        x: Input tensor `(B, H, W, C)`.
        filters: Filter count of each convolution, in order.
        batch_norm: Whether to put BatchNormalization between each convolution and its ReLU.
        name: Name prefix of the created layers.

    Example:

    ```python
    inputs = keras.Input((None, None, 3))
    x = conv_block(inputs, [64, 64], batch_norm=False, name="enc1")
    ```
    """
    for i, count in enumerate(filters, start=1):
        x = keras.layers.Conv2D(
            count,
            3,
            padding="same",
            kernel_initializer=KERNEL_INITIALIZER,
            name=f"{name}_conv{i}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(
                momentum=BATCH_NORM_MOMENTUM, epsilon=BATCH_NORM_EPSILON, name=f"{name}_bn{i}"
            )(x)
        x = keras.layers.ReLU(name=f"{name}_relu{i}")(x)
    return x


def check_input_shape(input_shape, multiple, model_name):
    """Raise a ValueError unless `input_shape` is `(H, W, 3)` with H, W None or multiples."""
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            f"{model_name} expects input_shape (height, width, 3). Received: {input_shape}"
        )
    for size in input_shape[:2]:
        if size is not None and size % multiple:
            raise ValueError(
                f"{model_name} needs height and width that are multiples of {multiple}. "
                f"Received: input_shape={input_shape}"
            )


def model_inputs(input_shape, colour_constancy):
    """Return the model's `image` input and the tensor its first block reads.

    Args:
        input_shape: `(height, width, 3)`.
        colour_constancy: Whether to normalise colours first (`ShadesOfGrey`), so that the
            model, its checkpoints and its serving graph all carry the normalisation.

    Example:

    ```python
    inputs, x = model_inputs((None, None, 3), colour_constancy=True)
    ```
    """
    inputs = keras.Input(input_shape, name="image")
    if colour_constancy:
        return inputs, ShadesOfGrey(name="colour_constancy")(inputs)
    return inputs, inputs
