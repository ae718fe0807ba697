"""One preprocessing: resized TFDS configs, training, evaluation and serving see the same pixels."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ph2_tf.data import arrays, preprocessing
from ph2_tf.evaluation import evaluate
from ph2_tf.models import build_model
from ph2_tf.serving import export


def test_resizing_an_image_to_its_own_size_keeps_it():
    image = np.random.default_rng(0).integers(0, 256, (2, 37, 53, 3), dtype=np.uint8)
    same = keras.ops.convert_to_numpy(preprocessing.resize_image(image, (37, 53)))
    np.testing.assert_array_equal(same, image)  # so serving a 256x256 image adds no resampling


def test_model_input_is_the_rounded_resize_scaled_to_unit_range():
    image = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    resized = keras.ops.convert_to_numpy(preprocessing.resize_image(image, (32, 32)))
    assert resized.dtype == np.uint8 and resized.shape == (32, 32, 3)
    exact = tf.image.resize(image.astype(np.float32), (32, 32), antialias=True).numpy()
    np.testing.assert_array_equal(resized, np.clip(np.round(exact), 0, 255).astype(np.uint8))
    model_input = keras.ops.convert_to_numpy(preprocessing.model_input(image, 32))
    np.testing.assert_array_equal(model_input, resized / np.float32(255))


def test_resized_config_holds_the_pixels_preprocessing_computes(ph2_prepared):
    originals = arrays.examples("test", "original", data_dir=ph2_prepared)
    originals = {example["image_id"]: example for example in originals}
    resized = list(arrays.examples("test", "resized_128", data_dir=ph2_prepared))
    assert resized and {e["image_id"] for e in resized} == set(originals)
    for example in resized:
        original = originals[example["image_id"]]
        image = preprocessing.resize_image(original["image"], (128, 128))
        mask = preprocessing.resize_mask(original["segmentation_mask"], (128, 128))
        np.testing.assert_array_equal(example["image"], np.asarray(image))
        np.testing.assert_array_equal(example["segmentation_mask"], np.asarray(mask))


@pytest.mark.slow
def test_serving_signature_gives_evaluates_probabilities_on_ph2_test_images(ph2_real, tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model("unet", input_shape=(96, 96, 3), width=0.125)
    export.write_saved_model(model, tmp_path / "1", image_size=96)
    serve = tf.saved_model.load(str(tmp_path / "1")).signatures[export.SIGNATURE]
    probabilities, _ = evaluate.predict_split(
        model, "test", image_size=96, data_dir=ph2_real.data_dir
    )
    originals = arrays.examples("test[:6]", "original", data_dir=ph2_real.data_dir)
    for example in originals:
        served = serve(images=tf.constant(example["image"][None]))["probabilities"]
        served = served.numpy()[0, ..., 0]
        expected = evaluate.resize_probability(probabilities[example["image_id"]], served.shape)
        assert served.shape == example["image"].shape[:2]
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)
