"""Max pooling that keeps its argmax indices, and the max unpooling that uses them (SegNet).

Both layers are written with `keras.ops` only, so they compile under XLA (`jit_compile=True`)
and run on every Keras backend; `tf.nn.max_pool_with_argmax` does neither. The window axis sits
before the channels, `(B, H/2, W/2, 4, C)`, so that every reduction and selection runs over
contiguous channel vectors: on the CPU without XLA a pooling-unpooling pair, forward and
backward, runs faster than with the window axis last (`benchmarks/pooling_vs_previous.py`,
`results/cpu-vs-torch/pooling_vs_previous.txt`). Each window's first maximum is found with a max,
an equality and a min rather than `argmax`, whose TensorFlow kernel over a middle axis was the
slowest op of SegNet's serving graph after the convolutions.

The window is fixed at 2x2 with stride 2. Each window's 4 elements are numbered row-major:
0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right. Indices are these window-local
numbers (int32), which keeps them independent of batch size, image size and padding.
"""

import keras
from keras import ops

POOL_SIZE = 2
WINDOW_SIZE = POOL_SIZE * POOL_SIZE


def _pooled_size(size):
    return None if size is None else (size + 1) // POOL_SIZE


def _window_positions():
    """The window-local positions 0..3 as an int32 `(WINDOW_SIZE, 1)` column."""
    return ops.reshape(ops.arange(WINDOW_SIZE, dtype="int32"), (WINDOW_SIZE, 1))


def _window_mask(indices):
    """Boolean `(B, h, w, WINDOW_SIZE, C)` mask, True at each window's selected element."""
    return ops.equal(ops.expand_dims(indices, 3), _window_positions())


def _swap_window_axes(windows):
    """`(B, h, a, w, b, C)` <-> `(B, h, w, a, b, C)`: moves the window rows next to the columns."""
    return ops.transpose(windows, (0, 1, 3, 2, 4, 5))


@keras.saving.register_keras_serializable(package="ph2_tf")
class MaxPoolingWithArgmax2D(keras.layers.Layer):
    """2x2, stride-2 max pooling that also returns where each maximum was.

    Takes channels-last inputs `(B, H, W, C)` and returns `(pooled, indices)`, both of shape
    `(B, ceil(H / 2), ceil(W / 2), C)`. `indices` (int32, 0..3) is the position of the maximum
    inside its window, row-major (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right); ties
    pick the lowest position. Odd `H` or `W` are padded at the bottom/right with `-inf`, which is
    never selected; give the layer's input to `MaxUnpooling2D` as its third input to crop back.
    The gradient of `pooled` reaches only the selected positions.

    Args:
        **kwargs: Standard layer arguments such as `name` and `dtype`.

    Example:

    ```python
    x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    pooled, indices = MaxPoolingWithArgmax2D()(x)
    # pooled[0, ..., 0] == [[5, 7], [13, 15]]; every index is 3 (bottom-right).
    restored = MaxUnpooling2D()([pooled, indices, x])
    ```
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs):
        batch, height, width, channels = ops.shape(inputs)
        pad_height, pad_width = height % POOL_SIZE, width % POOL_SIZE
        static_sizes = isinstance(pad_height, int) and isinstance(pad_width, int)
        if not (static_sizes and pad_height == pad_width == 0):
            inputs = ops.pad(
                inputs,
                [[0, 0], [0, pad_height], [0, pad_width], [0, 0]],
                constant_values=float("-inf"),
            )
        out_height = (height + pad_height) // POOL_SIZE
        out_width = (width + pad_width) // POOL_SIZE
        # (B, H, W, C) -> (B, H/2, 2, W/2, 2, C) -> (B, H/2, W/2, 2, 2, C) -> (..., 4, C).
        windows = ops.reshape(
            inputs, (batch, out_height, POOL_SIZE, out_width, POOL_SIZE, channels)
        )
        windows = ops.reshape(
            _swap_window_axes(windows), (batch, out_height, out_width, WINDOW_SIZE, channels)
        )
        # The first maximum's position, as the smallest position holding the window's maximum:
        # TensorFlow's ArgMax over a middle axis was the slowest kernel of SegNet's serving
        # graph on the CPU. The fill value keeps a window holding NaN (no maximum) inside 0..3.
        is_max = ops.equal(windows, ops.max(windows, axis=3, keepdims=True))
        indices = ops.min(ops.where(is_max, _window_positions(), WINDOW_SIZE - 1), axis=3)
        # Selecting (rather than reducing with max) sends the gradient to the argmax only,
        # also when several elements tie.
        pooled = ops.sum(ops.where(_window_mask(indices), windows, 0.0), axis=3)
        return pooled, indices

    def compute_output_spec(self, inputs):
        batch, height, width, channels = inputs.shape
        shape = (batch, _pooled_size(height), _pooled_size(width), channels)
        return (
            keras.KerasTensor(shape, dtype=self.compute_dtype),
            keras.KerasTensor(shape, dtype="int32"),
        )


@keras.saving.register_keras_serializable(package="ph2_tf")
class MaxUnpooling2D(keras.layers.Layer):
    """Places pooled values back at their argmax positions, zeros elsewhere.

    The inverse of `MaxPoolingWithArgmax2D`. Call it on `[pooled, indices]` to get an output of
    twice the spatial size, or on `[pooled, indices, reference]` to crop the output to the
    spatial size of `reference` (normally the tensor that was pooled, which undoes the padding
    of odd sizes). Only the shape of `reference` is used.

    Args:
        **kwargs: Standard layer arguments such as `name` and `dtype`.

    Example:

    ```python
    x = np.random.rand(2, 5, 7, 3).astype("float32")
    pooled, indices = MaxPoolingWithArgmax2D()(x)
    restored = MaxUnpooling2D()([pooled, indices, x])  # (2, 5, 7, 3)
    ```
    """

    def call(self, inputs):
        pooled, indices, reference = self._unpack(inputs)
        batch, height, width, channels = ops.shape(pooled)
        windows = ops.where(_window_mask(indices), ops.expand_dims(pooled, 3), 0.0)
        # (B, h, w, 4, C) -> (B, h, w, 2, 2, C) -> (B, h, 2, w, 2, C) -> (B, 2h, 2w, C).
        windows = ops.reshape(windows, (batch, height, width, POOL_SIZE, POOL_SIZE, channels))
        outputs = ops.reshape(
            _swap_window_axes(windows), (batch, height * POOL_SIZE, width * POOL_SIZE, channels)
        )
        if reference is not None:
            reference_shape = ops.shape(reference)
            outputs = outputs[:, : reference_shape[1], : reference_shape[2], :]
        return outputs

    def compute_output_spec(self, inputs):
        pooled, indices, reference = self._unpack(inputs)
        batch, height, width, channels = pooled.shape
        if reference is None:
            height = None if height is None else height * POOL_SIZE
            width = None if width is None else width * POOL_SIZE
        else:
            height, width = reference.shape[1:3]
        return keras.KerasTensor((batch, height, width, channels), dtype=self.compute_dtype)

    @staticmethod
    def _unpack(inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) not in (2, 3):
            raise ValueError(
                "MaxUnpooling2D expects a list [pooled, indices] or [pooled, indices, reference]. "
                f"Received: {inputs!r}"
            )
        pooled, indices, reference = (*inputs, None) if len(inputs) == 2 else inputs
        if tuple(pooled.shape) != tuple(indices.shape):
            raise ValueError(
                "`pooled` and `indices` must have the same shape. "
                f"Received: pooled.shape={pooled.shape}, indices.shape={indices.shape}"
            )
        return pooled, indices, reference
