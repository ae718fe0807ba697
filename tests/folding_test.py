"""Tests of ph2_tf.serving.folding: BatchNormalization merged into convolutions, same inference
output.
"""

import keras
import numpy as np
import pytest

from ph2_tf.models import build_model
from ph2_tf.serving.folding import fold_batch_normalization

RNG = np.random.default_rng(0)


def randomise_batch_norm(model, seed=0):
    """Gives every BatchNorm statistics and parameters far from the identity map."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0.0, 0.5, shape))
            layer.moving_variance.assign(rng.uniform(0.2, 3.0, shape))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 2.0, shape))
            if layer.center:
                layer.beta.assign(rng.normal(0.0, 0.5, shape))
    return model


def count(model, kind):
    return sum(isinstance(layer, kind) for layer in model.layers)


def test_folded_segnet_matches_inference_and_has_no_batch_norm():
    model = randomise_batch_norm(
        build_model("segnet", input_shape=(64, 64, 3), width=0.125, colour_constancy=True)
    )
    images = RNG.uniform(size=(2, 64, 64, 3)).astype("float32")
    expected = np.asarray(model(images, training=False))

    folded = fold_batch_normalization(model)

    assert count(model, keras.layers.BatchNormalization) == 25
    assert count(folded, keras.layers.BatchNormalization) == 0
    assert count(folded, keras.layers.Conv2D) == count(model, keras.layers.Conv2D)
    np.testing.assert_allclose(folded(images), expected, rtol=1e-4, atol=1e-4)
    # The original model is left as it was.
    np.testing.assert_array_equal(model(images, training=False), expected)


def test_model_without_batch_norm_is_returned_as_it_is():
    model = build_model("unet", input_shape=(32, 32, 3), width=0.125)
    assert fold_batch_normalization(model) is model


def test_convolution_without_bias_and_batch_norm_without_scale_or_centre():
    inputs = keras.Input((9, 11, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(scale=False)(x)
    x = keras.layers.Conv2D(3, 1)(x)
    outputs = keras.layers.BatchNormalization(center=False, epsilon=0.1)(x)
    model = randomise_batch_norm(keras.Model(inputs, outputs), seed=1)
    images = RNG.normal(size=(3, 9, 11, 2)).astype("float32")

    folded = fold_batch_normalization(model)

    assert count(folded, keras.layers.BatchNormalization) == 0
    assert all(layer.use_bias for layer in folded.layers if isinstance(layer, keras.layers.Conv2D))
    np.testing.assert_allclose(folded(images), model(images, training=False), rtol=1e-5, atol=1e-5)


def test_batch_norm_is_kept_where_folding_would_change_the_result():
    inputs = keras.Input((8, 8, 3))
    shared = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # also read by the sum below
    normalised = keras.layers.BatchNormalization()(shared)
    activated = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    after_relu = keras.layers.BatchNormalization()(activated)
    outputs = keras.layers.Add()([normalised, shared, after_relu])
    model = randomise_batch_norm(keras.Model(inputs, outputs), seed=2)

    assert fold_batch_normalization(model) is model


def test_rejects_what_is_not_a_model():
    with pytest.raises(ValueError, match="needs a Keras model, received"):
        fold_batch_normalization(keras.layers.Conv2D(4, 3))
