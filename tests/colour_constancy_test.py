"""Tests of ph2_tf.models.colour_constancy: values against numpy, cast invariance, saving,
serving.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ph2_tf.data import preprocessing
from ph2_tf.models import build_model
from ph2_tf.models.colour_constancy import ShadesOfGrey
from ph2_tf.models.heads import lesion_probability
from ph2_tf.serving import export


def numpy_shades_of_grey(images, power=6.0):
    """Reference: per image and channel, e = mean(x^p)^(1/p); x * mean(e) / e, clipped."""
    illuminant = np.mean(images.astype(np.float64) ** power, axis=(1, 2), keepdims=True)
    illuminant = illuminant ** (1 / power)
    gains = illuminant.mean(axis=-1, keepdims=True) / illuminant
    return np.clip(images * gains, 0, 1)


@pytest.mark.parametrize("power", [1.0, 6.0])
def test_matches_numpy_reference(power):
    images = np.random.default_rng(0).uniform(size=(2, 20, 24, 3)).astype(np.float32)
    images[1] *= np.array([1.0, 0.6, 0.3], np.float32)  # a warm cast
    output = keras.ops.convert_to_numpy(ShadesOfGrey(power=power)(images))
    np.testing.assert_allclose(output, numpy_shades_of_grey(images, power), atol=1e-5)


def test_undoes_a_colour_cast_up_to_brightness():
    image = np.random.default_rng(1).uniform(0.05, 0.5, (1, 32, 32, 3)).astype(np.float32)
    cast = image * np.array([1.3, 1.0, 0.7], np.float32)
    layer = ShadesOfGrey()
    # Channel gains g change the estimate's mean brightness: one factor for the whole image.
    ratio = keras.ops.convert_to_numpy(layer(cast) / layer(image))
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-5)
    assert np.abs(cast - image).max() > 0.1


def test_black_image_stays_black_and_errors_name_the_argument():
    np.testing.assert_array_equal(ShadesOfGrey()(np.zeros((1, 4, 4, 3), np.float32)), 0.0)
    with pytest.raises(ValueError, match="power must be > 0, received 0"):
        ShadesOfGrey(power=0)
    with pytest.raises(ValueError, match="epsilon must be > 0, received -1"):
        ShadesOfGrey(epsilon=-1)


def test_model_with_colour_constancy_round_trips_through_a_keras_file(tmp_path):
    model = build_model("unet", input_shape=(32, 32, 3), width=0.125, colour_constancy=True)
    assert isinstance(model.get_layer("colour_constancy"), ShadesOfGrey)
    assert build_model("unet", width=0.125).count_params() == model.count_params()
    images = np.random.default_rng(2).uniform(size=(2, 32, 32, 3)).astype(np.float32)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_layer("colour_constancy").get_config() == (
        model.get_layer("colour_constancy").get_config()
    )
    np.testing.assert_allclose(restored(images), model(images), atol=1e-6)


def test_serving_graph_normalises_like_the_model(tmp_path):
    size = 32
    model = build_model("segnet", input_shape=(size, size, 3), width=0.125, colour_constancy=True)
    path = export.export_for_serving(model, base_dir=tmp_path, model_name="segnet")
    serve = tf.saved_model.load(str(path)).signatures[export.SIGNATURE]
    image = np.random.default_rng(3).integers(0, 256, (1, 45, 61, 3), dtype=np.uint8)
    served = serve(**{export.INPUT_NAME: tf.constant(image)})["probabilities"].numpy()
    logits = model(preprocessing.model_input(image, size), training=False)
    expected = tf.image.resize(lesion_probability(logits), image.shape[1:3]).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-5)
