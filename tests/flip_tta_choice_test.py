"""Tests of ph2_tf.experiments.flip_tta_choice: each lever scores its own exported signature,
checked against the flip average computed from the Keras model, and the runner's arguments."""

import numpy as np
import pytest

from ph2_tf.data import external
from ph2_tf.evaluation import scoring
from ph2_tf.evaluation.metrics import per_image_scores
from ph2_tf.experiments import flip_tta_choice, selection_sets


def flip_averaged_mask(predict, image, threshold=0.5):
    """The mask of the mean probability of `image` and of its two flips, each flipped back."""
    probability = (
        predict(image) + predict(image[:, ::-1])[:, ::-1] + predict(image[::-1])[::-1]
    ) / 3
    return probability >= threshold


def test_each_lever_is_its_signature_scored_against_the_keras_models_flips(
    ph2_dummy, tmp_path, capsys
):
    from small_lesion_levers_test import run_on_a_published_tiny_unet

    version, model, record, written = run_on_a_published_tiny_unet(
        flip_tta_choice, ph2_dummy, tmp_path
    )
    printed = capsys.readouterr().out
    assert printed.startswith(f"python -m ph2_tf.experiments.flip_tta_choice {version} ")
    assert record["levers"] == ["served", "flip_tta"]
    by_set = record["jaccard"][str(version)]
    assert set(by_set) == set(selection_sets.SET_LABELS)
    assert len(by_set["isic2017_select"]["flip_tta"]) == 3
    assert len([line for line in printed.splitlines() if line.startswith("- flip_tta: ")]) == 1
    assert written.startswith(printed.splitlines()[0])

    predict = scoring.keras_predictor(model, 32)
    validation = by_set["ph2_validation"]
    cases = external.ph2_cases("validation", data_dir=ph2_dummy.data_dir)
    for image_id, image, truth in cases:
        single = per_image_scores([truth], [predict(image) >= 0.5])["jaccard"][0]
        flipped = per_image_scores([truth], [flip_averaged_mask(predict, image)])["jaccard"][0]
        assert validation["served"][image_id] == pytest.approx(single, abs=1e-6)
        assert validation["flip_tta"][image_id] == pytest.approx(flipped, abs=1e-6)
    served, flip_tta = (np.array(list(validation[lever].values())) for lever in record["levers"])
    assert np.abs(served - flip_tta).max() > 1e-3  # the levers differ: the test can tell them


def test_a_folder_that_is_not_a_published_version_is_refused_naming_it(tmp_path, capsys):
    with pytest.raises(SystemExit):
        flip_tta_choice.main([str(tmp_path), "--data-dir", str(tmp_path)])
    assert f"{tmp_path} is not a published version (no metrics.json)" in capsys.readouterr().err


def test_flip_tta_that_loses_on_a_stress_set_is_refused_though_isic_select_gains():
    def scores(base, gain, n=20):
        served = {f"i{k}": base + 0.01 * (k % 3) for k in range(n)}
        return {"served": served, "flip_tta": {i: v + gain for i, v in served.items()}}

    jaccards = {
        "ph2_validation": scores(0.88, 0.0),
        "artefacts": scores(0.84, 0.0),
        "small_lesions": scores(0.80, -0.02),  # every image loses: a loss beyond noise
        "small_lesions_artefacts": scores(0.75, 0.0),
        "isic2017_select": scores(0.80, 0.01),
    }
    refused = selection_sets.decisions(jaccards, flip_tta_choice.RULES)[1]
    assert refused.startswith("- flip_tta: keep served") and "small lesions" in refused
    jaccards["small_lesions"] = scores(0.80, 0.0)
    assert selection_sets.decisions(jaccards, flip_tta_choice.RULES)[1].startswith(
        "- flip_tta: publish"
    )
