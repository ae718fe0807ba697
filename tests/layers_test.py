"""Tests of MaxPoolingWithArgmax2D / MaxUnpooling2D against tf.nn.max_pool_with_argmax."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ph2_tf.models.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D


def _random_input(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _flat_indices(local, height, width):
    """Window-local indices (B, h, w, C) -> TF's flat indices into (B, H, W, C), batch included."""
    batch, out_h, out_w, channels = local.shape
    b, i, j, c = np.meshgrid(
        np.arange(batch), np.arange(out_h), np.arange(out_w), np.arange(channels), indexing="ij"
    )
    row, col = 2 * i + local // 2, 2 * j + local % 2
    return ((b * height + row) * width + col) * channels + c


def _reference(x):
    """Pool with tf.nn.max_pool_with_argmax and unpool by scattering at its indices."""
    pooled, argmax = tf.nn.max_pool_with_argmax(
        x, ksize=2, strides=2, padding="SAME", include_batch_in_index=True
    )
    unpooled = tf.scatter_nd(
        tf.reshape(argmax, (-1, 1)), tf.reshape(pooled, (-1,)), [tf.size(x, out_type=tf.int64)]
    )
    return pooled, argmax, tf.reshape(unpooled, tf.shape(x))


def _pool_unpool(x):
    pooled, indices = MaxPoolingWithArgmax2D()(x)
    return pooled, indices, MaxUnpooling2D()([pooled, indices, x])


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (3, 5, 7, 2), (1, 1, 3, 1)])
def test_values_match_reference(shape):
    x = tf.constant(_random_input(shape))
    pooled, indices, unpooled = _pool_unpool(x)
    ref_pooled, ref_argmax, ref_unpooled = _reference(x)
    assert pooled.shape == ref_pooled.shape
    assert indices.dtype == "int32"
    np.testing.assert_array_equal(pooled, ref_pooled)
    np.testing.assert_array_equal(_flat_indices(np.asarray(indices), *shape[1:3]), ref_argmax)
    assert unpooled.shape == shape
    np.testing.assert_array_equal(unpooled, ref_unpooled)


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (2, 5, 7, 2)])
def test_gradients_match_reference(shape):
    x = tf.constant(_random_input(shape))
    upstream = _random_input(shape, seed=1)
    pooled_upstream = _random_input(MaxPoolingWithArgmax2D()(x)[0].shape, seed=2)

    def gradients(fn):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            pooled, _, unpooled = fn(x)
            pooled_loss = tf.reduce_sum(pooled * pooled_upstream)
            unpooled_loss = tf.reduce_sum(unpooled * upstream)
        return tape.gradient(pooled_loss, x), tape.gradient(unpooled_loss, x)

    ours, reference = gradients(_pool_unpool), gradients(_reference)
    for got, want in zip(ours, reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    # The gradient reaches exactly one position per window and channel: the argmax.
    _, argmax, _ = _reference(x)
    reached = np.zeros(np.prod(shape), bool)
    reached[np.asarray(argmax).ravel()] = True
    assert np.all((np.asarray(ours[0]).ravel() != 0) == reached)


def test_ties_pick_first_position_and_gradient_goes_there_only():
    x = tf.ones((1, 4, 4, 2))
    with tf.GradientTape() as tape:
        tape.watch(x)
        pooled, indices = MaxPoolingWithArgmax2D()(x)
        loss = tf.reduce_sum(pooled)
    np.testing.assert_array_equal(indices, 0)
    gradient = np.asarray(tape.gradient(loss, x))[0, :, :, 0]
    np.testing.assert_array_equal(gradient, np.tile([[1, 0], [0, 0]], (2, 2)))


def test_partial_ties_pick_the_first_of_the_tied_positions():
    # One window per channel, row-major [[top-left, top-right], [bottom-left, bottom-right]].
    windows = [[[0.0, 2.0], [1.0, 2.0]], [[3.0, 1.0], [3.0, 3.0]], [[0.0, 0.0], [5.0, 5.0]]]
    x = tf.constant(np.transpose(windows, (1, 2, 0))[None], tf.float32)
    pooled, indices = MaxPoolingWithArgmax2D()(x)
    np.testing.assert_array_equal(np.asarray(indices).ravel(), [1, 0, 2])
    np.testing.assert_array_equal(np.asarray(pooled).ravel(), [2.0, 3.0, 5.0])


def test_window_holding_nan_keeps_its_index_in_range():
    x = tf.constant([[[[np.nan], [1.0]], [[2.0], [np.nan]]]], tf.float32)
    _, indices = MaxPoolingWithArgmax2D()(x)
    assert 0 <= int(np.asarray(indices).ravel()[0]) <= 3


def test_compiles_under_xla_with_dynamic_shapes():
    inputs = keras.Input((None, None, 3))
    pooled, indices = MaxPoolingWithArgmax2D()(inputs)
    outputs = MaxUnpooling2D()([pooled, indices, inputs])
    model = keras.Model(inputs, [pooled, outputs])

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            pooled, unpooled = model(x)
            loss = tf.reduce_sum(unpooled**2) + tf.reduce_sum(pooled)
        return pooled, unpooled, tape.gradient(loss, x)

    for shape in [(2, 6, 8, 3), (1, 5, 3, 3)]:  # new batch and spatial sizes retrace
        x = tf.constant(_random_input(shape))
        pooled, unpooled, gradient = step(x)
        ref_pooled, _, ref_unpooled = _reference(x)
        np.testing.assert_array_equal(pooled, ref_pooled)
        np.testing.assert_array_equal(unpooled, ref_unpooled)
        assert gradient.shape == shape


def test_unknown_shapes_in_graph():
    model_fn = tf.function(_pool_unpool, input_signature=[tf.TensorSpec((None, None, None, 2))])
    x = tf.constant(_random_input((3, 7, 4, 2)))
    _, _, unpooled = model_fn(x)
    np.testing.assert_array_equal(unpooled, _reference(x)[2])


def test_symbolic_output_shapes():
    inputs = keras.Input((7, None, 4), batch_size=None)
    pooled, indices = MaxPoolingWithArgmax2D()(inputs)
    assert pooled.shape == (None, 4, None, 4) and indices.dtype == "int32"
    assert MaxUnpooling2D()([pooled, indices]).shape == (None, 8, None, 4)
    assert MaxUnpooling2D()([pooled, indices, inputs]).shape == (None, 7, None, 4)


def test_serialization_round_trip():
    for layer in [MaxPoolingWithArgmax2D(name="pool"), MaxUnpooling2D(name="unpool")]:
        config = keras.layers.serialize(layer)
        assert config["module"] == "ph2_tf" or config["registered_name"].startswith("ph2_tf>")
        clone = keras.layers.deserialize(config)
        assert type(clone) is type(layer) and clone.get_config() == layer.get_config()


def test_bad_inputs_raise_clear_errors():
    pooled, indices = MaxPoolingWithArgmax2D()(np.zeros((1, 4, 4, 1), "float32"))
    with pytest.raises(ValueError, match=r"\[pooled, indices\]"):
        MaxUnpooling2D()(pooled)
    with pytest.raises(ValueError, match="same shape"):
        MaxUnpooling2D()([pooled, indices[:, :1]])
    with pytest.raises(ValueError, match="ndim"):
        MaxPoolingWithArgmax2D()(np.zeros((4, 4, 1), "float32"))
