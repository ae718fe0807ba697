"""Tests of ph2_tf.evaluation.scoring (scores at each image's original size) and of the runners
of ph2_tf.experiments that score through it.
"""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO_ROOT, constant_model, subprocess_env

from ph2_tf.data import external
from ph2_tf.evaluation import evaluate, scoring
from ph2_tf.experiments import (
    augmentation_ablation,
    lesion_share,
    postprocessing_choice,
    squash_vs_pad,
)
from ph2_tf.models import build_model
from ph2_tf.serving import export
from ph2_tf.serving.postprocessing import largest_component_filled

IMAGE_SIZE = 32


def numpy_scores(truth, predicted):
    """Jaccard, Dice and pixel accuracy of one image, written out independently of ph2_tf."""
    intersection = np.logical_and(truth, predicted).sum()
    union = np.logical_or(truth, predicted).sum()
    both = truth.sum() + predicted.sum()
    return {
        "jaccard": intersection / union if union else 1.0,
        "dice": 2 * intersection / both if both else 1.0,
        "pixel_accuracy": (truth == predicted).mean(),
    }


def case(image_id, truth, red):
    """A case whose image carries its prediction: red channel / 255 is the lesion probability."""
    image = np.zeros((*truth.shape, 3), np.uint8)
    image[..., 0] = red
    return external.Case(image_id, image, truth)


def red_probability(image):
    return image[..., 0] / 255.0


def hand_made_cases():
    overlap_truth = np.zeros((6, 8), bool)
    overlap_truth[1:4, 1:5] = True
    overlap_red = np.zeros((6, 8), np.uint8)
    overlap_red[2:5, 2:7] = 255
    overlap_red[0, 7] = 160  # probability 0.63: lesion at threshold 0.5, not at 0.7
    full_truth = np.ones((5, 7), bool)
    empty_truth = np.zeros((4, 9), bool)
    lesion_red = np.zeros((4, 9), np.uint8)
    lesion_red[1, 1:3] = 255
    return [
        case("overlap", overlap_truth, overlap_red),
        case("empty prediction", full_truth, np.zeros((5, 7), np.uint8)),
        case("both empty", empty_truth, np.zeros((4, 9), np.uint8)),
        case("empty truth", empty_truth, lesion_red),
    ]


@pytest.mark.parametrize("threshold", [0.5, 0.7])
def test_per_image_scores_match_numpy_with_ids(threshold):
    cases = hand_made_cases()
    scores = scoring.score_at_original_size(red_probability, cases, threshold=threshold)
    assert scores.image_ids == ("overlap", "empty prediction", "both empty", "empty truth")
    expected = [numpy_scores(c.mask, red_probability(c.image) >= threshold) for c in cases]
    for name in ("jaccard", "dice", "pixel_accuracy"):
        assert scores.per_image[name] == pytest.approx([e[name] for e in expected], abs=1e-12)
        assert scores.mean[name] == pytest.approx(np.mean([e[name] for e in expected]))
    # Hand-checked: 6 shared pixels of 12 + 15 - 6 (+1 above 0.5); the empty cases by definition.
    assert scores.per_image["jaccard"][0] == pytest.approx(6 / (22 if threshold == 0.5 else 21))
    assert scores.per_image["jaccard"][1:] == (0.0, 1.0, 0.0)
    assert scores.per_image["dice"][1:] == (0.0, 1.0, 0.0)


def test_postprocess_applies_to_the_thresholded_mask():
    truth = np.zeros((7, 7), bool)
    truth[2:6, 2:6] = True
    red = np.zeros((7, 7), np.uint8)
    red[2:6, 2:6] = 255
    red[3, 3] = 0  # a hole in the lesion
    red[0, 0] = 255  # a stray island
    cases = [case("holed", truth, red)]
    plain = scoring.score_at_original_size(red_probability, cases)
    cleaned = scoring.score_at_original_size(
        red_probability, cases, postprocess=largest_component_filled
    )
    assert plain.per_image["jaccard"] == (15 / 17,)
    assert cleaned.per_image["jaccard"] == (1.0,)


def test_bad_threshold_no_cases_and_a_wrong_size_prediction_are_refused():
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\), received 1.0"):
        scoring.score_at_original_size(red_probability, hand_made_cases(), threshold=1.0)
    with pytest.raises(ValueError, match="no images to score"):
        scoring.score_at_original_size(red_probability, [])
    with pytest.raises(ValueError, match=r"image overlap: the prediction is \(3, 4\)"):
        scoring.score_at_original_size(
            lambda image: red_probability(image)[::2, ::2], hand_made_cases()
        )


def test_keras_model_and_its_serving_signature_score_alike():
    cases = hand_made_cases()
    lesion = constant_model(50.0)
    expected = [numpy_scores(c.mask, np.ones_like(c.mask)) for c in cases]
    for predict in (
        scoring.keras_predictor(lesion, IMAGE_SIZE),
        scoring.signature_predictor(export.serving_function(lesion, IMAGE_SIZE), "mask"),
    ):
        scores = scoring.score_at_original_size(predict, cases)
        assert scores.per_image["jaccard"] == pytest.approx([e["jaccard"] for e in expected])
        assert scores.per_image["dice"] == pytest.approx([e["dice"] for e in expected])

    keras.utils.set_random_seed(0)
    model = build_model("unet", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), width=0.125)
    image = np.random.default_rng(0).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    ours = scoring.keras_predictor(model, IMAGE_SIZE)(image)
    served = scoring.signature_predictor(export.serving_function(model, IMAGE_SIZE))(image)
    assert ours.shape == (45, 61)
    np.testing.assert_allclose(ours, served, rtol=0, atol=1e-6)


def test_evaluate_serving_scores_the_signature_mask(ph2_dummy):
    common = dict(data_dir=ph2_dummy.data_dir, manual_dir=ph2_dummy.manual_dir)
    serve = export.serving_function(constant_model(50.0), IMAGE_SIZE)
    result = evaluate.evaluate_serving(serve, "test", **common)
    cases = external.ph2_cases("test", **common)
    assert result["num_images"] == len(cases) > 0
    assert result["metrics"]["jaccard"] == pytest.approx(np.mean([c.mask.mean() for c in cases]))


def test_flip_averaging_undoes_each_flip():
    image = np.random.default_rng(1).integers(0, 256, (5, 8, 3), dtype=np.uint8)
    averaged = postprocessing_choice.flip_averaged(red_probability)(image)
    np.testing.assert_allclose(averaged, red_probability(image))


def test_padded_prediction_is_cropped_back_to_the_image():
    image = np.random.default_rng(2).integers(0, 256, (3, 7, 3), dtype=np.uint8)
    square, (top, left) = squash_vs_pad.pad_to_square(image)
    assert square.shape == (7, 7, 3) and (top, left) == (2, 0)
    np.testing.assert_array_equal(square[top : top + 3], image)
    cropped = squash_vs_pad.padded_predictor(red_probability)(image)
    np.testing.assert_array_equal(cropped, red_probability(image))


def test_over_seeds_cells():
    assert scoring.over_seeds([0.8, 0.82, None]) == "0.810 ± 0.014"
    assert scoring.over_seeds([0.8]) == "0.800"
    assert scoring.over_seeds([None]) == "not measured"


def test_ablation_names_its_argument_errors(tmp_path, capsys):
    records = tmp_path / "records.jsonl"
    with pytest.raises(SystemExit) as raised:
        augmentation_ablation.main(["--records", str(records)])
    assert raised.value.code == 2
    assert "error: --runs-dir is required unless --report" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        augmentation_ablation.main(["--records", str(records), "--report"])
    assert f"error: --records {records} does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        augmentation_ablation.main(["--records", str(records), "--arms", "hair"])
    assert "argument --arms: invalid choice: 'hair'" in capsys.readouterr().err


def served_scores_file(path, per_image):
    result = {"images": 3, "jaccard": 0.5, "dice": 0.6}
    if per_image:
        shares = {"a": 0.01, "b": 0.05, "c": 0.5}
        jaccards = {"a": 0.2, "b": 0.4, "c": 0.9}
        result["per_image"] = {
            name: {"jaccard": jaccards[name], "lesion_share": share}
            for name, share in shares.items()
        }
    models = {"m/1": {"serving_default": {"isic2017_dev": result}}}
    path.write_text(json.dumps({"models": models}))
    return path


def test_lesion_share_tabulates_bands_and_names_a_bad_file(tmp_path, capsys):
    good = served_scores_file(tmp_path / "good.json", per_image=True)
    lesion_share.main([str(good)])
    rows = capsys.readouterr().out.splitlines()
    assert rows[-1] == "| `m/1` | isic2017_dev | 0.500 (3) | 0.200 (1) | 0.400 (1) | 0.900 (1) |"

    means_only = served_scores_file(tmp_path / "means.json", per_image=False)
    with pytest.raises(SystemExit) as raised:
        lesion_share.main([str(good), str(means_only)])
    assert raised.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.endswith(
        f"error: {means_only}: no per-image scores for m/1 on isic2017_dev "
        "(made without --per-image)"
    )
    (tmp_path / "other.json").write_text("[]")
    with pytest.raises(SystemExit):
        lesion_share.main([str(tmp_path / "other.json")])
    assert "other.json: not a served_scores.py output" in capsys.readouterr().err


@pytest.mark.slow
def test_served_scores_script_agrees_with_scoring_without_importing_ph2_tf(ph2_dummy, tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model("unet", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), width=0.125)
    export.write_saved_model(model, tmp_path / "1", IMAGE_SIZE)
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "served_scores.py"), "--per-image"]
        + ["--data-dir", ph2_dummy.data_dir, "--isic-dir", str(tmp_path / "absent")]
        + [str(tmp_path / "1")],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    output = json.loads(completed.stdout)
    assert output["ph2_tf_imported"] is False
    theirs = output["models"][str(tmp_path / "1")]["serving_default"]["ph2_test"]

    serve = tf.saved_model.load(str(tmp_path / "1")).signatures[export.SIGNATURE]
    cases = external.ph2_cases("test", data_dir=ph2_dummy.data_dir)
    ours = scoring.score_at_original_size(scoring.signature_predictor(serve, "mask"), cases)
    their_jaccards = {image_id: v["jaccard"] for image_id, v in theirs["per_image"].items()}
    assert their_jaccards == pytest.approx(
        dict(zip(ours.image_ids, ours.per_image["jaccard"], strict=True)), abs=1e-12
    )
    assert theirs["dice"] == pytest.approx(ours.mean["dice"], abs=1e-12)
