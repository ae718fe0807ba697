"""Tests of the named segmentation losses."""

import keras
import numpy as np
import pytest

from ph2_tf.training.losses import LOSS_NAMES, get_loss, num_classes_for


def _data(channels=1, seed=0):
    rng = np.random.default_rng(seed)
    masks = (rng.random((3, 8, 8, 1)) > 0.6).astype("float32")
    logits = rng.standard_normal((3, 8, 8, channels)).astype("float32")
    return masks, logits


def _value(loss, masks, logits):
    return float(keras.ops.convert_to_numpy(loss(masks, logits)))


def test_bce_matches_keras():
    masks, logits = _data()
    expected = keras.losses.BinaryCrossentropy(from_logits=True)(masks, logits)
    np.testing.assert_allclose(_value(get_loss("bce"), masks, logits), expected, rtol=1e-6)


def test_soft_bce_smooths_targets_and_equals_bce_without_smoothing():
    masks, logits = _data()
    bce = _value(get_loss("bce"), masks, logits)
    assert get_loss("soft_bce").label_smoothing == 0.1
    np.testing.assert_allclose(
        _value(get_loss("soft_bce", label_smoothing=0.0), masks, logits), bce, rtol=1e-6
    )
    expected = keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2)(masks, logits)
    np.testing.assert_allclose(
        _value(get_loss("soft_bce", label_smoothing=0.2), masks, logits), expected, rtol=1e-6
    )
    with pytest.raises(ValueError, match="label_smoothing.*1.5"):
        get_loss("soft_bce", label_smoothing=1.5)


def test_dice_by_hand():
    mask = np.zeros((1, 2, 2, 1), "float32")
    mask[0, 0, :, 0] = 1
    logits = np.zeros((1, 2, 2, 1), "float32")  # every probability 0.5
    # 1 - (2 * 0.5 * 2 + smooth) / (4 * 0.5 + 2 + smooth)
    expected = 1 - (2.0 + 1.0) / (4.0 + 1.0)
    np.testing.assert_allclose(_value(get_loss("dice"), mask, logits), expected, rtol=1e-6)
    perfect = np.where(mask > 0, 20.0, -20.0).astype("float32")
    assert _value(get_loss("dice"), mask, perfect) < 1e-6
    assert _value(get_loss("dice", smooth=0.0), mask, -perfect) > 1 - 1e-6


def test_bce_dice_is_the_sum():
    masks, logits = _data()
    expected = _value(get_loss("bce"), masks, logits) + _value(get_loss("dice"), masks, logits)
    np.testing.assert_allclose(_value(get_loss("bce_dice"), masks, logits), expected, rtol=1e-6)


def test_focal_reduces_to_bce_and_down_weights_easy_pixels():
    masks, logits = _data()
    bce = _value(get_loss("bce"), masks, logits)
    unfocused = get_loss("focal", alpha=None, gamma=0.0)
    np.testing.assert_allclose(_value(unfocused, masks, logits), bce, rtol=1e-6)
    assert _value(get_loss("focal", alpha=None), masks, logits) < bce
    alpha_only = _value(get_loss("focal", alpha=0.25, gamma=0.0), masks, logits)
    assert alpha_only < bce
    with pytest.raises(ValueError, match="alpha.*2"):
        get_loss("focal", alpha=2)


def test_cross_entropy_is_two_class_softmax_and_not_zero():
    masks, logits = _data(channels=2)
    value = _value(get_loss("cross_entropy"), masks, logits)
    assert value > 0.1
    # Softmax cross-entropy over (l0, l1) equals sigmoid cross-entropy of l1 - l0.
    lesion_logit = logits[..., 1:] - logits[..., :1]
    np.testing.assert_allclose(value, _value(get_loss("bce"), masks, lesion_logit), rtol=1e-5)
    with pytest.raises(ValueError, match="num_classes=2.*\\(3, 8, 8, 1\\)"):
        get_loss("cross_entropy")(*_data(channels=1))


@pytest.mark.parametrize("name", ["bce", "soft_bce", "dice", "bce_dice", "focal"])
def test_binary_losses_accept_the_softmax_head(name):
    masks, logits = _data()
    two_channel = np.concatenate([np.zeros_like(logits), logits], axis=-1)
    np.testing.assert_allclose(
        _value(get_loss(name), masks, two_channel), _value(get_loss(name), masks, logits), rtol=1e-6
    )


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_serialization_round_trip(name):
    loss = get_loss(name)
    assert loss.name == name
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
    masks, logits = _data(channels=num_classes_for(name))
    assert _value(clone, masks, logits) == _value(loss, masks, logits)


def test_names_and_num_classes():
    assert set(LOSS_NAMES) == {"bce", "soft_bce", "dice", "bce_dice", "focal", "cross_entropy"}
    assert [num_classes_for(n) for n in LOSS_NAMES].count(2) == 1
    assert num_classes_for("cross_entropy") == 2
    for bad in (get_loss, num_classes_for):
        with pytest.raises(ValueError, match="'l2'"):
            bad("l2")
