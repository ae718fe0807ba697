"""Folding inference-mode BatchNormalization into the convolution before it, for serving.

In inference BatchNormalization is a fixed per-channel affine map, `y = x * scale + shift` with
`scale = gamma / sqrt(moving_variance + epsilon)` and `shift = beta - moving_mean * scale`. After
a convolution it can be merged into that convolution's kernel and bias. In the serving graph
that removes SegNet's 25 separate multiply-and-add passes over its feature maps and leaves
convolution, bias and ReLU, which TensorFlow's graph optimizer fuses into one kernel on the CPU.
Training checkpoints keep their BatchNormalization layers; only the exported graph is folded.
"""

import keras
import numpy as np


class _FoldedAway(keras.layers.Layer):
    """Passes its input through: stands where a folded BatchNormalization was."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def _producer(layer):
    """The layer whose output is `layer`'s only input, or None."""
    if len(layer._inbound_nodes) != 1:
        return None
    inputs = layer._inbound_nodes[0].input_tensors
    return inputs[0]._keras_history.operation if len(inputs) == 1 else None


def _foldable_pairs(model):
    """`{convolution name: batch normalization}` for each Conv2D read only by a BatchNorm."""
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        conv = _producer(layer)
        if (
            isinstance(conv, keras.layers.Conv2D)
            and conv.activation is keras.activations.linear
            and len(conv._inbound_nodes) == 1
            and len(conv._outbound_nodes) == 1
            and layer.axis in (-1, len(layer.input.shape) - 1)
        ):
            pairs[conv.name] = layer
    return pairs


def folded_kernel_and_bias(conv, batch_norm):
    """The kernel and bias of `conv` followed by `batch_norm` in inference, as one convolution.

    Computed in float64 and returned in the convolution's variable dtype.

    Args:
        conv: a built `keras.layers.Conv2D` (channels last).
        batch_norm: the built `keras.layers.BatchNormalization` that reads its output.

    Returns:
        `(kernel, bias)` numpy arrays of shapes `conv.kernel.shape` and `(filters,)`.
    """

    def value(variable):
        return np.asarray(keras.ops.convert_to_numpy(variable), np.float64)

    channels = conv.filters
    gamma = value(batch_norm.gamma) if batch_norm.scale else np.ones(channels)
    beta = value(batch_norm.beta) if batch_norm.center else np.zeros(channels)
    scale = gamma / np.sqrt(value(batch_norm.moving_variance) + batch_norm.epsilon)
    bias = value(conv.bias) if conv.use_bias else np.zeros(channels)
    dtype = conv.kernel.dtype
    kernel = (value(conv.kernel) * scale).astype(dtype)
    return kernel, ((bias - value(batch_norm.moving_mean)) * scale + beta).astype(dtype)


def fold_batch_normalization(model):
    """Returns a model computing `model`'s inference output with BatchNorm folded into convs.

    Each `BatchNormalization` whose only input is a `Conv2D` without activation, read by nothing
    else, is merged into that convolution (which gains a bias if it had none). Every other layer
    is shared with `model`, so a model without such pairs is returned as it is. The result
    matches `model(x, training=False)` up to float rounding; it is meant for inference and
    export, not for training.

    Args:
        model: a built functional Keras model.

    Returns:
        The folded functional model (or `model` itself when there is nothing to fold).

    Example:

    ```python
    model = build_model("segnet", input_shape=(64, 64, 3), width=0.125)
    served = fold_batch_normalization(model)  # no BatchNormalization layers left
    ```
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_inbound_nodes"):
        raise ValueError(f"fold_batch_normalization needs a Keras model, received {model!r}")
    pairs = _foldable_pairs(model)
    if not pairs:
        return model
    folded_away = {batch_norm.name for batch_norm in pairs.values()}

    def clone(layer):
        if layer.name in pairs:
            return keras.layers.Conv2D.from_config({**layer.get_config(), "use_bias": True})
        if layer.name in folded_away:
            return _FoldedAway(name=layer.name, dtype=layer.dtype_policy)
        return layer

    folded = keras.models.clone_model(model, clone_function=clone)
    for name, batch_norm in pairs.items():
        folded.get_layer(name).set_weights(
            list(folded_kernel_and_bias(model.get_layer(name), batch_norm))
        )
    return folded


def unfold_batch_normalization(folded, model, images, batch_size=8):
    """Loads a folded model's weights into its unfolded twin, for training on from them.

    `fold_batch_normalization` forgets each BatchNormalization's statistics and scale, keeping
    only their product with the convolution. Any statistics give the same inference output,
    but training normalises by the batch's own statistics, so they must be the activations'
    real ones. Each convolution keeps the folded kernel; its BatchNormalization gets the
    mean and (biased) variance of that convolution's output over `images` as its moving
    statistics, and the scale and shift that undo the normalisation. Inference then equals
    `folded` up to float rounding, and a training-mode call on `images` as one batch does too.

    Args:
        folded: a functional model built by `fold_batch_normalization` from a model of
            `model`'s architecture, holding the weights to keep (e.g. a published version's).
        model: the unfolded model, built but with any weights; its weights are replaced.
        images: float32 `(N, H, W, 3)` inputs whose activations set the statistics, e.g. the
            training images.
        batch_size: images per inference call while measuring.

    Returns:
        `model`, with the unfolded weights.

    Raises:
        ValueError: `folded` is not `model`'s folded twin, a BatchNormalization has no scale
            or shift to undo the normalisation with, or `images` is empty.
    """
    pairs = _foldable_pairs(model)
    expected = {layer.name for layer in model.layers}
    if {layer.name for layer in folded.layers} != expected or not all(
        isinstance(folded.get_layer(batch_norm.name), _FoldedAway) for batch_norm in pairs.values()
    ):
        raise ValueError("unfold_batch_normalization needs the folded twin of the given model")
    if not all(batch_norm.scale and batch_norm.center for batch_norm in pairs.values()):
        raise ValueError("unfolding needs every BatchNormalization to have a scale and a shift")
    if len(images) == 0:
        raise ValueError("unfolding needs at least one image to measure activations on")
    folded_away = {batch_norm.name for batch_norm in pairs.values()}
    for layer in model.layers:
        if layer.name not in pairs and layer.name not in folded_away:
            layer.set_weights(folded.get_layer(layer.name).get_weights())
    if not pairs:  # e.g. the study's UNet, which has no BatchNormalization
        return model

    names = list(pairs)
    probe = keras.Model(folded.inputs, [folded.get_layer(name).output for name in names])
    sums = {name: 0.0 for name in names}
    squares = {name: 0.0 for name in names}
    counts = {name: 0 for name in names}  # pixels: each layer has its own resolution
    for start in range(0, len(images), batch_size):
        outputs = probe(images[start : start + batch_size], training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        for name, output in zip(names, outputs, strict=True):
            values = np.asarray(keras.ops.convert_to_numpy(output), np.float64)
            values = values.reshape(-1, values.shape[-1])
            sums[name] = sums[name] + values.sum(axis=0)
            squares[name] = squares[name] + (values**2).sum(axis=0)
            counts[name] += values.shape[0]

    for name, batch_norm in pairs.items():
        kernel, bias = folded.get_layer(name).get_weights()
        conv = model.get_layer(name)
        # The folded output is kernel * x + bias; the convolution keeps the bias if it has one.
        mean = sums[name] / counts[name]
        variance = np.maximum(squares[name] / counts[name] - mean**2, 0.0)
        conv_mean = mean if conv.use_bias else mean - bias
        conv.set_weights([kernel, bias] if conv.use_bias else [kernel])
        batch_norm_weights = {
            "gamma": np.sqrt(variance + batch_norm.epsilon),
            "beta": conv_mean + (0.0 if conv.use_bias else bias),
            "moving_mean": conv_mean,
            "moving_variance": variance,
        }
        batch_norm.set_weights(
            [batch_norm_weights[weight.name].astype(weight.dtype) for weight in batch_norm.weights]
        )
    return model
