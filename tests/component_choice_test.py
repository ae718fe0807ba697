"""Tests of ph2_tf.experiments.component_choice: each rule on hand-made masks, and its scoring."""

import keras
import numpy as np
import pytest

from ph2_tf.data.external import Case
from ph2_tf.experiments import component_choice
from ph2_tf.models import build_model
from ph2_tf.serving import export, refinement

RULES = component_choice.RULES


def scene():
    """A 40x40 mask: a large "sticker" in a corner, a holed lesion at the centre, a speck.

    Returns:
        `(mask, probability, parts)`: the mask, probabilities (sticker 0.6, lesion 0.9, speck
        0.99) and each part's own bool mask (the lesion's with its hole filled).
    """
    sticker = np.zeros((40, 40), bool)
    sticker[:7, :8] = True  # 56 pixels, touching the top and left sides
    lesion = np.zeros((40, 40), bool)
    lesion[17:23, 17:23] = True  # 36 pixels with its hole, around the centre (19.5, 19.5)
    speck = np.zeros((40, 40), bool)
    speck[36, 2] = True  # 1 pixel, off the border
    mask = sticker | lesion | speck
    mask[18, 18] = False  # a hole in the lesion
    probability = np.where(sticker, 0.6, 0.0) + np.where(lesion, 0.9, 0.0)
    probability = np.where(speck, 0.99, probability) * mask  # >= 0.5 exactly on the mask
    return mask, probability, {"sticker": sticker, "lesion": lesion, "speck": speck}


def test_none_keeps_the_mask_and_largest_keeps_the_biggest_filled():
    mask, probability, parts = scene()
    np.testing.assert_array_equal(RULES["none"](mask, probability), mask)
    np.testing.assert_array_equal(RULES["largest"](mask, probability), parts["sticker"])


def test_highest_mean_probability_keeps_the_most_confident_component():
    mask, probability, parts = scene()
    np.testing.assert_array_equal(
        RULES["highest_mean_probability"](mask, probability), parts["speck"]
    )
    probability = np.where(parts["speck"], 0.7, probability)
    np.testing.assert_array_equal(
        RULES["highest_mean_probability"](mask, probability), parts["lesion"]
    )


def test_closest_to_centre_keeps_the_lesion_and_breaks_ties_by_size():
    mask, probability, parts = scene()
    np.testing.assert_array_equal(RULES["closest_to_centre"](mask, probability), parts["lesion"])
    # Two components as close to the centre (9.5, 9.5) of a 20x20 frame: the larger is kept,
    # though the smaller comes first in raster order.
    tie = np.zeros((20, 20), bool)
    tie[7, 9:11] = True
    tie[12:17, 4:16] = True
    larger = tie.copy()
    larger[7] = False
    np.testing.assert_array_equal(RULES["closest_to_centre"](tie, tie * 0.9), larger)


def test_off_border_keeps_the_largest_inner_component_else_the_largest():
    mask, probability, parts = scene()
    np.testing.assert_array_equal(RULES["off_border"](mask, probability), parts["lesion"])
    edge = np.zeros((40, 40), bool)
    edge[39, 10:20] = True
    all_touch = parts["sticker"] | edge
    np.testing.assert_array_equal(RULES["off_border"](all_touch, probability), parts["sticker"])


def test_size_and_confidence_floor_keeps_every_qualifying_component():
    mask, probability, parts = scene()
    # The sticker is under the confidence floor, the speck under the size floor.
    assert 0.6 < component_choice.MIN_MEAN_PROBABILITY <= 0.9
    assert 1 < component_choice.MIN_AREA_SHARE * mask.size <= 36
    np.testing.assert_array_equal(
        RULES["size_and_confidence_floor"](mask, probability), parts["lesion"]
    )
    confident = np.where(parts["sticker"], 0.95, probability)
    np.testing.assert_array_equal(
        RULES["size_and_confidence_floor"](mask, confident), parts["lesion"] | parts["sticker"]
    )
    unsure = np.where(mask, 0.55, 0.0)  # none qualifies: the largest
    np.testing.assert_array_equal(
        RULES["size_and_confidence_floor"](mask, unsure), parts["sticker"]
    )


def test_every_rule_leaves_an_empty_mask_empty():
    empty = np.zeros((6, 7), bool)
    for name, rule in RULES.items():
        assert not rule(empty, np.zeros((6, 7))).any(), name


def test_rule_jaccards_scores_each_rule_on_one_prediction_per_image():
    mask, probability, parts = scene()
    calls = []

    def predict(image):
        calls.append(image)
        return probability

    cases = [Case("scene", np.zeros((40, 40, 3), np.uint8), parts["lesion"])]
    jaccards = component_choice.rule_jaccards(predict, cases)
    assert len(calls) == 1
    assert list(jaccards) == list(RULES)
    assert jaccards["largest"] == {"scene": 0.0}
    assert jaccards["closest_to_centre"] == {"scene": 1.0}
    assert jaccards["off_border"] == {"scene": 1.0}
    assert jaccards["highest_mean_probability"] == {"scene": 0.0}
    # none: the lesion less its hole, over the lesion, sticker and speck.
    assert jaccards["none"]["scene"] == pytest.approx(35 / (56 + 36 + 1))


def test_largest_matches_the_served_mask_and_the_check_sees_a_difference():
    keras.utils.set_random_seed(0)
    model = build_model("unet", input_shape=(32, 32, 3), width=0.125)
    rng = np.random.default_rng(0)
    cases = [
        Case(f"noise{i}", rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), None) for i in range(2)
    ]
    # The untrained model's mask is in many pieces, so the two exports' masks differ.
    with_rule = export.serving_function(model, 32, largest_component=True)
    without_rule = export.serving_function(model, 32)
    assert component_choice.served_mask_mismatches(with_rule, cases) == {"noise0": 0, "noise1": 0}
    assert sum(component_choice.served_mask_mismatches(without_rule, cases).values()) > 0


def test_bad_arguments_are_refused_naming_them(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        component_choice.main(["--data-dir", str(tmp_path), str(tmp_path / "model")])
    assert exit_info.value.code == 2
    assert f"error: {tmp_path / 'model'} is not a SavedModel directory" in capsys.readouterr().err
    saved_model = tmp_path / "model"
    saved_model.mkdir()
    (saved_model / "saved_model.pb").write_bytes(b"")
    with pytest.raises(SystemExit):
        component_choice.main(["--data-dir", str(tmp_path), str(saved_model)])
    assert f"error: --data-dir {tmp_path} has no prepared ph2/original" in capsys.readouterr().err
    (tmp_path / "ph2" / "original").mkdir(parents=True)
    with pytest.raises(SystemExit):
        component_choice.main(
            ["--data-dir", str(tmp_path), "--isic-select", str(tmp_path), str(saved_model)]
        )
    assert f"error: --isic-select {tmp_path} has no images/*.jpg" in capsys.readouterr().err


def _brightness(image):
    """A pixelwise 'model': the red channel as the probability, at any window's size."""
    return image[..., 0].astype(np.float32) / 255


@pytest.mark.parametrize("refine", [1.5, None])
def test_the_served_computation_keeps_the_chosen_component_in_both_places(refine):
    from ph2_tf.experiments import served_component_choice

    mask, probability, parts = scene()
    probability = np.where(parts["speck"], 0.0, probability)  # the sticker against the lesion
    image = np.repeat(np.round(probability * 255).astype(np.uint8)[..., None], 3, axis=-1)
    windows = []

    def predict(window):
        windows.append(window.shape[:2])
        return _brightness(window)

    jaccards = served_component_choice.component_jaccards(
        predict,
        {"threshold": 0.5, "largest_component": True, "refine": refine},
        [Case("scene", image, parts["lesion"])],
    )
    # The largest component is the sticker: the lesion is lost. The surest is the lesion.
    assert jaccards == {"served": {"scene": 0.0}, "highest_mean_probability": {"scene": 1.0}}
    # The whole image once, then with refinement a window around each rule's component.
    around = [
        refinement.crop_window(parts[part], refine)[2:]
        for part in ("sticker", "lesion")
        if refine is not None
    ]
    assert windows == [(40, 40), *around]
