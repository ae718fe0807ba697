"""Tests of ph2_tf.postprocessing against masks whose answer is known by construction."""

import numpy as np
import pytest

from ph2_tf.postprocessing import largest_component_filled


def test_keeps_the_largest_lesion_and_fills_its_holes():
    mask = np.zeros((12, 12), bool)
    mask[1:8, 1:8] = True  # the lesion: 49 pixels ...
    mask[3:5, 3:5] = False  # ... with a hole of 4
    mask[10:12, 9:12] = True  # an island of 6
    expected = np.zeros_like(mask)
    expected[1:8, 1:8] = True
    np.testing.assert_array_equal(largest_component_filled(mask), expected)


def test_diagonal_neighbours_are_one_component():
    mask = np.eye(6, dtype=bool)  # 6 pixels touching at corners only
    mask[0, 5] = True
    np.testing.assert_array_equal(largest_component_filled(mask), np.eye(6, dtype=bool))


def test_a_gap_open_to_the_border_is_not_a_hole():
    mask = np.ones((6, 6), bool)
    mask[2:4, 0:3] = False  # a notch from the left edge
    np.testing.assert_array_equal(largest_component_filled(mask), mask)


def test_empty_mask_stays_empty():
    result = largest_component_filled(np.zeros((4, 5), np.uint8))
    assert result.dtype == bool and result.shape == (4, 5) and not result.any()


def test_refuses_a_mask_that_is_not_2d():
    with pytest.raises(ValueError, match=r"mask must be 2-D \(height, width\), received shape"):
        largest_component_filled(np.zeros((4, 5, 1), bool))
