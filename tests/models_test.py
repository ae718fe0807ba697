"""Tests of the UNet / SegNet factories: sizes, training, saving and exporting."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ph2_tf.evaluation.metrics import segmentation_metrics
from ph2_tf.models import MODEL_NAMES, build_model
from ph2_tf.models.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D
from ph2_tf.training.losses import LOSS_NAMES, get_loss, num_classes_for

TINY_WIDTH = 0.125


def _trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _batch(size=32, batch=2, seed=0):
    """Random images and a mask the network can learn (bright red channel = lesion)."""
    images = np.random.default_rng(seed).random((batch, size, size, 3)).astype("float32")
    masks = (images[..., :1] > 0.5).astype("float32")
    return images, masks


def test_default_parameter_counts():
    unet = build_model("unet")
    assert abs(unet.count_params() - 31.0e6) < 0.1e6
    assert unet.count_params() == 31_032_257
    segnet = build_model("segnet")
    assert abs(segnet.count_params() - 29.4e6) < 0.1e6
    # The study's (PyTorch) count has BatchNorm scale and offset but not its running statistics.
    assert _trainable_count(segnet) == 29_443_585


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_small_profile_filters(name):
    model = build_model(name, width=0.25)
    conv_filters = [layer.filters for layer in model.layers if hasattr(layer, "filters")]
    assert min(conv_filters[:-1]) == 16 and conv_filters[-1] == 1
    assert max(conv_filters) == (256 if name == "unet" else 128)


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("size", [(256, 256), (192, 256)])
@pytest.mark.parametrize("num_classes", [1, 2])
def test_output_matches_input_size(name, size, num_classes):
    model = build_model(name, width=TINY_WIDTH, num_classes=num_classes)
    logits = model(np.zeros((1, *size, 3), "float32"))
    assert logits.shape == (1, *size, num_classes)


def test_segnet_pads_and_crops_other_sizes():
    model = build_model("segnet", input_shape=(50, 37, 3), width=TINY_WIDTH)
    assert model.output.shape == (None, 50, 37, 1)
    assert model(np.zeros((2, 50, 37, 3), "float32")).shape == (2, 50, 37, 1)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="'vgg'"):
        build_model("vgg")
    with pytest.raises(ValueError, match="multiples of 16.*100"):
        build_model("unet", input_shape=(100, 128, 3))
    with pytest.raises(ValueError, match=r"\(height, width, 3\)"):
        build_model("segnet", input_shape=(64, 64))


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_few_steps_lower_the_loss(name, loss):
    # Eager: tracing a train step takes longer than these few steps on a small CPU.
    keras.utils.set_random_seed(0)
    model = build_model(name, width=TINY_WIDTH, num_classes=num_classes_for(loss))
    model.compile(keras.optimizers.Adam(3e-3), loss=get_loss(loss), run_eagerly=True)
    images, masks = _batch()
    losses = [model.train_on_batch(images, masks) for _ in range(3)]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses


def _compiled_segnet(num_classes=1):
    keras.utils.set_random_seed(0)
    model = build_model("segnet", width=TINY_WIDTH, num_classes=num_classes)
    loss = "cross_entropy" if num_classes == 2 else "bce_dice"
    model.compile("adam", loss=get_loss(loss), metrics=segmentation_metrics(), run_eagerly=True)
    images, masks = _batch()
    model.train_on_batch(images, masks)  # non-trivial weights and BatchNorm statistics
    return model, images


@pytest.mark.parametrize("num_classes", [1, 2])
def test_keras_file_round_trip(tmp_path, num_classes):
    model, images = _compiled_segnet(num_classes)
    path = tmp_path / "segnet.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.get_layer("enc1_pool"), MaxPoolingWithArgmax2D)
    assert isinstance(restored.get_layer("dec1_unpool"), MaxUnpooling2D)
    np.testing.assert_array_equal(restored(images), model(images))
    assert restored.loss.get_config() == model.loss.get_config()
    assert restored.get_compile_config() == model.get_compile_config()


@pytest.mark.slow
def test_export_and_serve(tmp_path):
    model, images = _compiled_segnet()
    model.export(str(tmp_path / "export"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "export"))
    for x in [images, np.zeros((1, 64, 96, 3), "float32")]:
        np.testing.assert_allclose(served.serve(x), model(x, training=False), atol=1e-5)
