"""UNet as in the study: 4 poolings, 64..1024 filters, transposed-conv upsampling, skips."""

import keras

from ph2_tf.models.blocks import (
    KERNEL_INITIALIZER,
    check_input_shape,
    conv_block,
    model_inputs,
    scaled,
)

FILTERS = (64, 128, 256, 512, 1024)  # per level, top to bottom; the last is the bottleneck
CONVS_PER_LEVEL = 2
SIZE_MULTIPLE = 2 ** (len(FILTERS) - 1)  # 16


def build_unet(
    input_shape=(None, None, 3), width=1.0, num_classes=1, colour_constancy=False, name="unet"
):
    """Build the study's UNet, returning logits `(B, H, W, num_classes)`.

    Each level has two 3x3 conv + ReLU; the encoder halves the size with 2x2 max pooling four
    times, the decoder doubles it with 2x2 stride-2 transposed convolutions and concatenates the
    encoder's output of the same level; a final 3x3 convolution gives the logits. With
    `width=1.0` it has 31,032,257 parameters.

    Args:
        input_shape: `(height, width, 3)`; height and width None or multiples of 16.
        width: Multiplier of every filter count (0.25 gives 16..256 filters).
        num_classes: 1 for a sigmoid lesion head, 2 for a softmax head (channel 1 = lesion).
        colour_constancy: Start with a `ShadesOfGrey` colour normalisation layer.
        name: Model name.

    Example:

    ```python
    model = build_unet(width=0.25)
    logits = model(np.zeros((1, 64, 64, 3), "float32"))  # (1, 64, 64, 1)
    ```
    """
    check_input_shape(input_shape, SIZE_MULTIPLE, "UNet")
    filters = [scaled(count, width) for count in FILTERS]
    inputs, x = model_inputs(input_shape, colour_constancy)
    skips = []
    for level, count in enumerate(filters[:-1], start=1):
        x = conv_block(x, [count] * CONVS_PER_LEVEL, batch_norm=False, name=f"enc{level}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    x = conv_block(x, [filters[-1]] * CONVS_PER_LEVEL, batch_norm=False, name="bottleneck")
    for level in range(len(skips), 0, -1):
        count = filters[level - 1]
        x = keras.layers.Conv2DTranspose(
            count, 2, strides=2, kernel_initializer=KERNEL_INITIALIZER, name=f"dec{level}_up"
        )(x)
        x = keras.layers.Concatenate(name=f"dec{level}_concat")([skips[level - 1], x])
        x = conv_block(x, [count] * CONVS_PER_LEVEL, batch_norm=False, name=f"dec{level}")
    outputs = keras.layers.Conv2D(
        num_classes, 3, padding="same", kernel_initializer=KERNEL_INITIALIZER, name="logits"
    )(x)
    return keras.Model(inputs, outputs, name=name)
