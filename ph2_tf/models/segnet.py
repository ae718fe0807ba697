"""SegNet: VGG16-BN encoder, argmax max pooling, decoder that unpools with the saved indices."""

import keras

from ph2_tf.models.blocks import (
    KERNEL_INITIALIZER,
    check_input_shape,
    conv_block,
    model_inputs,
    scaled,
)
from ph2_tf.models.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D

# Filters of each conv-BN-ReLU, one tuple per block (VGG16 layout).
ENCODER = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
# Mirrored decoder, deepest block first; each block follows an unpooling.
DECODER = ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64,))
SIZE_MULTIPLE = 2 ** len(ENCODER)  # 32; other sizes are padded and cropped by the pool layers


def build_segnet(
    input_shape=(None, None, 3), width=1.0, num_classes=1, colour_constancy=False, name="segnet"
):
    """Build SegNet, returning logits `(B, H, W, num_classes)`.

    The encoder is VGG16 with BatchNorm (2, 2, 3, 3, 3 conv-BN-ReLU with 64..512 filters), each
    block followed by `MaxPoolingWithArgmax2D`. The decoder mirrors it: `MaxUnpooling2D` with the
    saved indices, then conv-BN-ReLU blocks going 512 -> 512 -> 256 -> 128 -> 64, and a final
    3x3 convolution to logits (no softmax: a softmax over one channel is the constant 1). With
    `width=1.0` it has 29,443,585 trainable parameters, the study's count (plus 15,872 BatchNorm
    moving statistics). Any height and width work; multiples of 32 avoid padding.

    Args:
        input_shape: `(height, width, 3)`; height and width may be None.
        width: Multiplier of every filter count (0.25 gives 16..128 filters).
        num_classes: 1 for a sigmoid lesion head, 2 for a softmax head (channel 1 = lesion).
        colour_constancy: Start with a `ShadesOfGrey` colour normalisation layer.
        name: Model name.

    Example:

    ```python
    model = build_segnet(width=0.25)
    logits = model(np.zeros((1, 64, 64, 3), "float32"))  # (1, 64, 64, 1)
    ```
    """
    check_input_shape(input_shape, 1, "SegNet")
    inputs, x = model_inputs(input_shape, colour_constancy)
    pooled_from = []  # (pool input, indices) per encoder block
    for level, block in enumerate(ENCODER, start=1):
        x = conv_block(x, [scaled(f, width) for f in block], batch_norm=True, name=f"enc{level}")
        pool_input = x
        x, indices = MaxPoolingWithArgmax2D(name=f"enc{level}_pool")(x)
        pooled_from.append((pool_input, indices))
    for level, block in zip(range(len(DECODER), 0, -1), DECODER, strict=True):
        pool_input, indices = pooled_from[level - 1]
        x = MaxUnpooling2D(name=f"dec{level}_unpool")([x, indices, pool_input])
        x = conv_block(x, [scaled(f, width) for f in block], batch_norm=True, name=f"dec{level}")
    outputs = keras.layers.Conv2D(
        num_classes, 3, padding="same", kernel_initializer=KERNEL_INITIALIZER, name="logits"
    )(x)
    return keras.Model(inputs, outputs, name=name)
