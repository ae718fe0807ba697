"""Tests of ph2_tf.serving.postprocessing: masks whose answer is known by construction, and the
graph version against the scikit-image/SciPy reference on random masks."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from ph2_tf.serving.components import COMPONENT_RULES
from ph2_tf.serving.postprocessing import (
    component_filled,
    component_filled_graph,
    largest_component_filled,
    largest_component_filled_graph,
    most_confident_component_filled,
    most_confident_component_filled_graph,
)


def graph_version(mask):
    """`largest_component_filled_graph` on one 2-D mask, traced with unknown sizes."""
    traced = tf.function(
        largest_component_filled_graph,
        input_signature=[tf.TensorSpec([None, None, None, 1], tf.bool)],
    )
    return traced(np.asarray(mask, bool)[None, ..., None]).numpy()[0, ..., 0]


both_versions = pytest.mark.parametrize(
    "largest_filled", [largest_component_filled, graph_version], ids=["numpy", "graph"]
)


@both_versions
def test_keeps_the_largest_lesion_and_fills_its_holes(largest_filled):
    mask = np.zeros((12, 12), bool)
    mask[1:8, 1:8] = True  # the lesion: 49 pixels ...
    mask[3:5, 3:5] = False  # ... with a hole of 4
    mask[10:12, 9:12] = True  # an island of 6
    expected = np.zeros_like(mask)
    expected[1:8, 1:8] = True
    np.testing.assert_array_equal(largest_filled(mask), expected)


@both_versions
def test_diagonal_neighbours_are_one_component(largest_filled):
    mask = np.eye(6, dtype=bool)  # 6 pixels touching at corners only
    mask[0, 5] = True
    np.testing.assert_array_equal(largest_filled(mask), np.eye(6, dtype=bool))


@both_versions
def test_a_gap_open_to_the_border_is_not_a_hole(largest_filled):
    mask = np.ones((6, 6), bool)
    mask[2:4, 0:3] = False  # a notch from the left edge
    np.testing.assert_array_equal(largest_filled(mask), mask)


@both_versions
def test_background_leaking_out_only_through_a_corner_is_a_hole(largest_filled):
    mask = np.zeros((7, 7), bool)
    mask[1:6, 1:6] = True
    mask[2:4, 2:4] = False  # a hole whose corner (3, 3) touches (4, 4) diagonally ...
    mask[4:6, 4:6] = False  # ... a notch open to the border through (6, 5) and (5, 6)
    expected = mask.copy()
    expected[2:4, 2:4] = True
    np.testing.assert_array_equal(largest_filled(mask), expected)


@both_versions
def test_of_equally_large_lesions_the_first_in_raster_order_is_kept(largest_filled):
    mask = np.zeros((6, 9), bool)
    mask[3:5, 1:3] = True  # starts on row 3
    mask[1:3, 5:7] = True  # starts on row 1: first
    expected = np.zeros_like(mask)
    expected[1:3, 5:7] = True
    np.testing.assert_array_equal(largest_filled(mask), expected)


@both_versions
@pytest.mark.parametrize("shape", [(4, 5), (1, 7), (7, 1)])
def test_empty_mask_stays_empty(largest_filled, shape):
    result = largest_filled(np.zeros(shape, np.uint8))
    assert result.dtype == bool and result.shape == shape and not result.any()


@pytest.mark.parametrize("seed", range(6))
def test_graph_version_equals_the_reference_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 90, size=2))
    noise = rng.random(shape)
    # Smoothed noise gives blobs with holes and islands; raw noise gives many tiny components.
    smooth = ndimage.gaussian_filter(noise, sigma=rng.uniform(1, 4))
    for mask in (
        smooth > np.quantile(smooth, rng.uniform(0.3, 0.9)),
        noise < rng.uniform(0.2, 0.7),
    ):
        np.testing.assert_array_equal(graph_version(mask), largest_component_filled(mask))


def test_graph_version_equals_the_reference_on_winding_shapes():
    # Thresholded at the median, smooth noise makes long winding components and many holes,
    # where labels must travel far through the runs.
    smooth = ndimage.gaussian_filter(np.random.default_rng(8).random((240, 320)), sigma=6)
    for mask in (smooth > np.median(smooth), smooth < np.median(smooth)):
        np.testing.assert_array_equal(graph_version(mask), largest_component_filled(mask))


def test_graph_version_treats_each_image_of_a_batch_on_its_own():
    rng = np.random.default_rng(7)
    smooth = ndimage.gaussian_filter(rng.random((3, 40, 50)), sigma=(0, 2, 2))
    masks = smooth > np.quantile(smooth, 0.6)
    masks[1] = False  # an empty mask between two others
    result = largest_component_filled_graph(masks[..., None]).numpy()
    assert result.shape == (3, 40, 50, 1) and result.dtype == bool
    for mask, filled in zip(masks, result[..., 0], strict=True):
        np.testing.assert_array_equal(filled, largest_component_filled(mask))


def test_refuses_a_mask_that_is_not_2d():
    with pytest.raises(ValueError, match=r"mask must be 2-D \(height, width\), received shape"):
        largest_component_filled(np.zeros((4, 5, 1), bool))


def test_graph_version_refuses_masks_that_are_not_a_batch_of_one_channel():
    with pytest.raises(ValueError, match=r"masks must be \[N, H, W, 1\], received shape"):
        largest_component_filled_graph(np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match=r"masks must be \[N, H, W, 1\], received shape"):
        largest_component_filled_graph(np.zeros((1, 4, 5, 3), bool))


def most_confident_graph_version(mask, probability):
    """`most_confident_component_filled_graph` on one 2-D mask, traced with unknown sizes."""
    traced = tf.function(
        most_confident_component_filled_graph,
        input_signature=[
            tf.TensorSpec([None, None, None, 1], tf.bool),
            tf.TensorSpec([None, None, None, 1], tf.float32),
        ],
    )
    batch = (np.asarray(mask, bool)[None, ..., None], np.float32(probability)[None, ..., None])
    return traced(*batch).numpy()[0, ..., 0]


@pytest.mark.parametrize(
    "most_confident",
    [most_confident_component_filled, most_confident_graph_version],
    ids=["numpy", "graph"],
)
def test_the_most_confident_lesion_is_kept_over_a_larger_one(most_confident):
    probability = np.zeros((12, 16), np.float32)
    probability[:6, :8] = 0.6  # a sticker the model is unsure of: 48 pixels
    probability[7:11, 10:14] = 0.9  # the lesion: 16 pixels ...
    probability[8, 11] = 0.2  # ... with a hole
    mask = probability >= 0.5
    lesion = np.zeros_like(mask)
    lesion[7:11, 10:14] = True
    np.testing.assert_array_equal(most_confident(mask, probability), lesion)
    np.testing.assert_array_equal(largest_component_filled(mask), probability == 0.6)
    empty = np.zeros_like(mask)
    np.testing.assert_array_equal(most_confident(empty, probability), empty)


@pytest.mark.parametrize("seed", range(6))
def test_the_most_confident_graph_version_equals_the_reference_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 90, size=2))
    smooth = ndimage.gaussian_filter(rng.random(shape), sigma=rng.uniform(1, 4))
    # Probabilities that differ between blobs, so that the largest is often not the surest.
    probability = (smooth - smooth.min()) / (np.ptp(smooth) + 1e-9)
    probability = probability * rng.uniform(0.5, 1.0, size=shape)
    for mask in (smooth > np.quantile(smooth, rng.uniform(0.3, 0.9)), rng.random(shape) < 0.4):
        np.testing.assert_array_equal(
            most_confident_graph_version(mask, probability),
            most_confident_component_filled(mask, probability.astype(np.float32)),
        )


def test_the_rules_are_named_and_each_name_gives_its_component():
    mask = np.zeros((6, 9), bool)
    mask[:, :4] = True
    mask[2:4, 6:8] = True
    left = np.arange(9) < 4  # the larger component, the model less sure of it
    probability = np.where(left, 0.6, 0.95) * mask
    assert COMPONENT_RULES == ("largest", "most_confident")
    for rule, expected in (
        ("largest", mask & left),
        ("most_confident", mask & ~left),
    ):
        np.testing.assert_array_equal(component_filled(mask, probability, rule), expected)
        graph = component_filled_graph(mask[None, ..., None], probability[None, ..., None], rule)
        np.testing.assert_array_equal(graph.numpy()[0, ..., 0], expected)


def test_the_most_confident_rule_refuses_probabilities_of_another_shape():
    with pytest.raises(ValueError, match="probability its shape, received shapes"):
        most_confident_component_filled(np.zeros((4, 5), bool), np.zeros((5, 4)))
