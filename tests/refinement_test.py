"""Locate, crop, refine: the window, the NumPy reference, and the graph against it."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ph2_tf.evaluation import scoring
from ph2_tf.models import build_model
from ph2_tf.serving import export, refinement
from ph2_tf.serving.postprocessing import (
    largest_component_filled,
)


def lesion_mask(shape, rows, columns):
    mask = np.zeros(shape, bool)
    mask[rows[0] : rows[1], columns[0] : columns[1]] = True
    return mask


@pytest.mark.parametrize(
    "rows, columns, context, window",
    [
        # A 10 x 20 box in a 100 x 200 image: twice its size already has the image's aspect.
        ((40, 50), (90, 110), 2.0, (35, 80, 20, 40)),
        # A tall box is widened to the image's aspect: 30 x 3 -> 30 x 60.
        ((40, 70), (99, 102), 1.0, (40, 70, 30, 60)),
        # In a corner: the window is moved inside the image.
        ((0, 10), (0, 20), 3.0, (0, 0, 30, 60)),
        ((95, 100), (190, 200), 2.0, (90, 180, 10, 20)),
        # Larger than the image: clipped to it.
        ((10, 90), (20, 180), 1.5, (0, 0, 100, 200)),
        # Not a multiple of a pixel: rounded up.
        ((40, 43), (90, 96), 1.5, (39, 88, 5, 9)),
    ],
)
def test_crop_window_by_hand(rows, columns, context, window):
    lesion = lesion_mask((100, 200), rows, columns)
    assert refinement.crop_window(lesion, context) == window
    assert tuple(refinement.crop_window_graph(tf.constant(lesion), context).numpy()) == window


def test_the_graph_window_equals_the_numpy_window_on_random_lesions():
    rng = np.random.default_rng(0)
    for _ in range(200):
        height, width = rng.integers(1, 120, size=2)
        mask = rng.random((height, width)) < rng.uniform(0.001, 0.05)
        if not mask.any():
            continue
        context = float(rng.choice([1.0, 1.25, 1.5, 2.0, 3.7]))
        assert tuple(refinement.crop_window_graph(tf.constant(mask), context).numpy()) == (
            refinement.crop_window(mask, context)
        ), (height, width, context)


@pytest.mark.parametrize("context", [0.5, 0.0, -1.0, float("nan")])
def test_a_context_under_1_is_refused(context):
    with pytest.raises(ValueError, match="context must be at least 1"):
        refinement.refine(lambda image: image[..., 0] / 255.0, context)
    with pytest.raises(ValueError, match="context must be at least 1"):
        export.serving_function(build_model("unet", (32, 32, 3), width=0.125), 32, refine=context)


def contrast(image):
    """A stand-in model whose output depends on the window it sees: each pixel's brightness
    against the mean brightness of the image it is given (NumPy)."""
    brightness = image.astype(np.float32).mean(axis=-1) / 255.0
    return np.clip(brightness - brightness.mean() + 0.45, 0.0, 1.0)


def contrast_graph(images):
    """`contrast` in TensorFlow, for `[1, h, w, 3]` uint8 images."""
    brightness = tf.reduce_mean(tf.cast(images, tf.float32), axis=-1, keepdims=True) / 255.0
    mean = tf.reduce_mean(brightness, axis=(1, 2, 3), keepdims=True)
    return tf.clip_by_value(brightness - mean + 0.45, 0.0, 1.0)


def bright_spot_images(count, height, width, seed):
    """Dim noise with one bright square in each but the first (which `contrast` maps below 0.5
    everywhere but on the square)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 20, (count, height, width, 3)).astype(np.uint8)
    for image in images[1:]:
        side = int(rng.integers(3, min(height, width) // 4))
        top, left = rng.integers(0, height - side), rng.integers(0, width - side)
        image[top : top + side, left : left + side] = rng.integers(180, 256, 3)
    return images


def test_the_graph_refines_as_the_numpy_reference():
    images = bright_spot_images(5, 47, 83, seed=1)
    first = contrast_graph(tf.constant(images))
    refined = refinement.refine_graph(tf.constant(images), first, contrast_graph, 1.5).numpy()
    reference = refinement.refine(contrast, 1.5)
    changed = 0
    for image, graph_result, first_pass in zip(images, refined, first.numpy(), strict=True):
        expected = reference(image)
        np.testing.assert_allclose(graph_result[..., 0], expected, atol=1e-6)
        changed += not np.allclose(expected, first_pass[..., 0])
    assert changed == 4  # every spot gave a window smaller than the image


def test_one_pass_where_it_finds_no_lesion_or_the_window_is_the_whole_image():
    calls = []

    def counted(images):
        calls.append(images.shape)
        return contrast_graph(images)

    dark = tf.constant(np.full((1, 20, 30, 3), 10, np.uint8))
    nothing = tf.fill([1, 20, 30, 1], 0.2)  # nothing over the threshold
    np.testing.assert_array_equal(refinement.refine_graph(dark, nothing, counted, 2.0), nothing)
    # A lesion filling the frame gives a window that is the image: the first pass stays, and the
    # NumPy reference agrees.
    everywhere = tf.fill([1, 20, 30, 1], 0.9)
    refined = refinement.refine_graph(dark, everywhere, counted, 1.0)
    np.testing.assert_array_equal(refined, everywhere)
    assert calls == []
    reference = refinement.refine_first_pass(
        lambda image: pytest.fail("no second pass"), dark[0].numpy(), everywhere[0, ..., 0], 1.0
    )
    np.testing.assert_array_equal(reference, everywhere[0, ..., 0])
    # A lesion in a quarter of the frame is refined in its window.
    quarter = np.full((1, 20, 30, 1), 0.1, np.float32)
    quarter[0, :10, :15] = 0.9
    refinement.refine_graph(dark, tf.constant(quarter), counted, 1.0)
    assert calls == [(1, 10, 15, 3)]


def test_serving_with_refinement_equals_refining_the_keras_predictor():
    image_size = 32
    model = build_model("unet", (image_size, image_size, 3), width=0.125)
    images = bright_spot_images(3, 90, 130, seed=2)
    plain = export.serving_function(model, image_size)(tf.constant(images))["probabilities"]
    # A threshold at which the untrained model's map is part lesion, part not.
    threshold = float(np.quantile(plain, 0.97))
    serve = export.serving_function(model, image_size, threshold=threshold, refine=2.0)
    outputs = serve(tf.constant(images))
    reference = refinement.refine(scoring.keras_predictor(model, image_size), 2.0, threshold)
    for image, probability, mask in zip(
        images, outputs["probabilities"].numpy(), outputs["mask"].numpy(), strict=True
    ):
        np.testing.assert_allclose(probability[..., 0], reference(image), atol=1e-5)
        np.testing.assert_array_equal(mask, probability >= threshold)
    assert np.abs(outputs["probabilities"] - plain).max() > 1e-3


@pytest.mark.parametrize("quantile", [0.2, 0.97])  # the window the whole image, or a part
def test_serving_with_refinement_keeps_the_largest_component_of_the_refined_mask(quantile):
    image_size = 32
    model = build_model("unet", (image_size, image_size, 3), width=0.125)
    images = bright_spot_images(3, 90, 130, seed=2)
    plain = export.serving_function(model, image_size)(tf.constant(images))["probabilities"]
    threshold = float(np.quantile(plain, quantile))
    serve = export.serving_function(
        model, image_size, threshold=threshold, largest_component=True, refine=2.0
    )
    reference = refinement.refine(scoring.keras_predictor(model, image_size), 2.0, threshold)
    for batch in (images[:1], images):
        masks = serve(tf.constant(batch))["mask"].numpy()
        for image, mask in zip(batch, masks, strict=True):
            expected = largest_component_filled(reference(image) >= threshold)
            np.testing.assert_array_equal(mask[..., 0], expected)


@pytest.mark.parametrize("refine", [2.0, None])
def test_serving_with_the_most_confident_rule_keeps_it_in_both_places(refine):
    image_size = 32
    keras.utils.set_random_seed(0)  # an untrained map on which the two rules disagree
    model = build_model("unet", (image_size, image_size, 3), width=0.125)
    images = bright_spot_images(3, 90, 130, seed=2)
    plain = export.serving_function(model, image_size)(tf.constant(images))["probabilities"]
    threshold = float(np.quantile(plain, 0.9))  # an untrained map: several components
    serve = export.serving_function(
        model,
        image_size,
        threshold=threshold,
        largest_component=True,
        refine=refine,
        component_rule="most_confident",
    )
    predict = scoring.keras_predictor(model, image_size)
    differs = False
    for image, mask in zip(images, serve(tf.constant(images))["mask"].numpy(), strict=True):
        expected = refinement.served_mask(predict, image, threshold, refine, "most_confident")
        np.testing.assert_array_equal(mask[..., 0], expected)
        differs |= (expected != refinement.served_mask(predict, image, threshold, refine)).any()
    assert differs  # the two rules disagree somewhere here, so the test can tell them apart


def test_an_unknown_component_rule_is_refused():
    model = build_model("unet", (32, 32, 3), width=0.125)
    with pytest.raises(ValueError, match="component_rule must be one of"):
        export.serving_function(model, 32, component_rule="nearest")
