"""Tests of ph2_tf.serving.folding: BatchNormalization merged into convolutions, same inference
output.
"""

import keras
import numpy as np
import pytest

from ph2_tf.models import build_model
from ph2_tf.serving.folding import fold_batch_normalization, unfold_batch_normalization

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
    # Float32 rounding through 25 folded layers, relative to the logits' scale; a wrong fold
    # is off by the order of the logits themselves.
    scale = np.abs(expected).max()
    np.testing.assert_allclose(folded(images), expected, rtol=1e-4, atol=1e-4 * scale)
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


def trained_looking_and_folded(name):
    """A model with BatchNorm far from the identity, its folded twin, and a fresh twin."""

    def build():
        return build_model(name, input_shape=(64, 64, 3), width=0.125, colour_constancy=True)

    keras.utils.set_random_seed(3)
    model = randomise_batch_norm(build(), seed=4)
    return model, fold_batch_normalization(model), build()


def test_unfolded_segnet_computes_the_folded_one_in_inference_and_on_its_own_batch():
    name = "segnet"
    _, folded, fresh = trained_looking_and_folded(name)
    images = RNG.uniform(size=(5, 64, 64, 3)).astype("float32")
    expected = np.asarray(folded(images))

    unfolded = unfold_batch_normalization(folded, fresh, images, batch_size=2)

    assert unfolded is fresh
    assert count(unfolded, keras.layers.BatchNormalization) == count(
        trained_looking_and_folded(name)[0], keras.layers.BatchNormalization
    )
    np.testing.assert_allclose(unfolded(images, training=False), expected, rtol=1e-3, atol=1e-3)
    # Training normalises by the batch's statistics, which are those the unfolding measured.
    np.testing.assert_allclose(unfolded(images, training=True), expected, rtol=1e-3, atol=1e-3)
    # Folding the unfolded model again gives the folded weights back.
    for again, original in zip(
        fold_batch_normalization(unfolded).weights, folded.weights, strict=True
    ):
        np.testing.assert_allclose(again, original, rtol=1e-4, atol=1e-5)


def test_unfolding_keeps_a_convolution_bias_and_batch_norm_that_was_not_folded():
    inputs = keras.Input((9, 11, 2))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # with a bias
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(3, 1, activation="relu")(x)
    outputs = keras.layers.BatchNormalization()(x)  # after an activation: not folded
    model = randomise_batch_norm(keras.Model(inputs, outputs), seed=5)
    fresh = keras.models.clone_model(model)
    images = RNG.normal(size=(6, 9, 11, 2)).astype("float32")
    folded = fold_batch_normalization(model)

    unfold_batch_normalization(folded, fresh, images)

    np.testing.assert_allclose(fresh(images, training=False), folded(images), rtol=1e-4, atol=1e-4)
    kept = fresh.layers[-1]
    np.testing.assert_array_equal(kept.moving_variance, model.layers[-1].moving_variance)


def test_a_model_without_batch_norm_is_unfolded_by_copying_its_weights():
    model = build_model("unet", input_shape=(32, 32, 3), width=0.125)
    fresh = build_model("unet", input_shape=(32, 32, 3), width=0.125)
    images = RNG.uniform(size=(2, 32, 32, 3)).astype("float32")

    unfold_batch_normalization(fold_batch_normalization(model), fresh, images)

    np.testing.assert_array_equal(fresh(images), model(images))


def test_unfolding_refuses_another_architecture_and_no_images():
    _, folded, fresh = trained_looking_and_folded("segnet")
    other = build_model("unet", input_shape=(64, 64, 3), width=0.125, colour_constancy=True)
    images = RNG.uniform(size=(1, 64, 64, 3)).astype("float32")
    with pytest.raises(ValueError, match="folded twin"):
        unfold_batch_normalization(folded, other, images)
    with pytest.raises(ValueError, match="folded twin"):
        unfold_batch_normalization(fresh, fresh, images)  # not folded
    with pytest.raises(ValueError, match="at least one image"):
        unfold_batch_normalization(folded, fresh, images[:0])
