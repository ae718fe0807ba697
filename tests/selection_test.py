"""Tests of ph2_tf.serving.selection: paired gain, its standard error, the publishing decision."""

import math

import pytest

from ph2_tf.serving import selection

# Differences candidate - served: 0.1, 0.3, 0.2, 0.2. By hand: mean 0.2; deviations -0.1, 0.1,
# 0, 0; sample variance 0.02 / 3; standard error sqrt(0.02 / 3) / sqrt(4).
CANDIDATE = {"a": 0.8, "b": 0.9, "c": 0.7, "d": 0.6}
SERVED = {"a": 0.7, "b": 0.6, "c": 0.5, "d": 0.4}
HAND_GAIN = 0.2
HAND_STANDARD_ERROR = math.sqrt(0.02 / 3) / 2


def test_paired_gain_matches_the_hand_computation():
    paired = selection.paired_gain(CANDIDATE, SERVED)
    assert paired.gain == pytest.approx(HAND_GAIN)
    assert paired.standard_error == pytest.approx(HAND_STANDARD_ERROR)
    assert paired.images == 4


def test_paired_gain_pairs_by_image_id_not_by_order():
    reordered = dict(reversed(list(SERVED.items())))
    assert selection.paired_gain(CANDIDATE, reordered) == selection.paired_gain(CANDIDATE, SERVED)


def test_paired_gain_is_antisymmetric_and_zero_for_equal_scores():
    backwards = selection.paired_gain(SERVED, CANDIDATE)
    assert backwards.gain == pytest.approx(-HAND_GAIN)
    assert backwards.standard_error == pytest.approx(HAND_STANDARD_ERROR)
    same = selection.paired_gain(SERVED, SERVED)
    assert (same.gain, same.standard_error) == (0.0, 0.0)


def test_mismatched_image_ids_are_refused_naming_them():
    served = {**SERVED, "e": 0.5}
    del served["a"]
    with pytest.raises(ValueError, match="only the candidate has a; only the served version has e"):
        selection.paired_gain(CANDIDATE, served)
    many = {f"x{i}": 0.5 for i in range(8)}
    with pytest.raises(ValueError, match=r"only the served version has x0, .*, x4 and 3 more"):
        selection.paired_gain({}, many)


def test_too_few_images_and_non_finite_scores_are_refused():
    with pytest.raises(ValueError, match="at least 2 images, received 1"):
        selection.paired_gain({"a": 0.5}, {"a": 0.4})
    with pytest.raises(ValueError, match="the served score of image c is not a finite number: nan"):
        selection.paired_gain(CANDIDATE, {**SERVED, "c": float("nan")})
    with pytest.raises(ValueError, match="the candidate score of image b is not a finite number"):
        selection.paired_gain({**CANDIDATE, "b": None}, SERVED)


def gain(value, standard_error):
    return selection.PairedGain(value, standard_error, 50)


def test_publishes_only_a_selection_gain_above_two_standard_errors():
    no_loss = gain(0.0, 0.01)
    assert selection.decide(gain(0.021, 0.01), no_loss).publish
    for within_noise in (gain(0.02, 0.01), gain(0.019, 0.01), gain(-0.05, 0.01), gain(0.0, 0.0)):
        decision = selection.decide(within_noise, no_loss)
        assert not decision.publish
        assert "not above 2 x SE" in decision.reason


def test_a_loss_beyond_noise_on_ph2_validation_blocks_publishing():
    clear_gain = gain(0.05, 0.01)
    assert selection.decide(clear_gain, gain(-0.02, 0.01)).publish  # exactly 2 SE: noise
    decision = selection.decide(clear_gain, gain(-0.021, 0.01))
    assert not decision.publish
    assert "PH2 validation gain -0.0210 is below -2 x SE" in decision.reason
    # An identical score on PH2 validation (no difference on any image) is no loss.
    assert selection.decide(clear_gain, gain(0.0, 0.0)).publish


def test_decide_from_paired_gains_end_to_end():
    selection_gain = selection.paired_gain(CANDIDATE, SERVED)  # 0.2 > 2 x 0.041
    validation_gain = selection.paired_gain(SERVED, CANDIDATE)  # -0.2 < -2 x 0.041
    decision = selection.decide(selection_gain, selection_gain)
    assert decision.publish and decision.selection == selection_gain
    assert not selection.decide(selection_gain, validation_gain).publish
    # With a larger noise multiple, the same gain no longer clears the bar (0.2 < 5 x 0.041).
    assert not selection.decide(selection_gain, selection_gain, noise_multiple=5).publish
