"""Our segmentation scores against the ISIC challenge's reference scorer, `isic-challenge-scoring`.

The reference scores an image from its confusion counts
(`isic_challenge_scoring.confusion.create_binary_confusion_matrix`) with the functions of
`isic_challenge_scoring.metrics`; its `segmentation.SegmentationScore` reads mask files,
binarises them at > 128 and averages each score over images, which is how the challenge ranked
submissions (by the mean thresholded Jaccard). `ph2_tf.evaluation.metrics` and
`benchmarks/served_scores.py`, which recomputes the scores without `ph2_tf`, must agree with it
image by image: on the edge cases (empty masks, a Jaccard of exactly 0.65), on random masks,
and on real ISIC masks with a model's kinds of error (too small, too large, misplaced).
"""

import importlib.util

import numpy as np
import pytest
from conftest import REPO_ROOT
from isic_challenge_scoring import metrics as reference
from isic_challenge_scoring.confusion import create_binary_confusion_matrix
from isic_challenge_scoring.segmentation import SegmentationScore as ReferenceScore
from PIL import Image
from scipy import ndimage

from ph2_tf.data import external
from ph2_tf.evaluation.metrics import METRIC_NAMES, per_image_scores

ISIC_SELECT_DIR = external.ISIC2017_DEV_DIR.with_name("isic2017-select")

# Our score name: (the reference's name for it in `SegmentationScore`, its per-image function).
# `binary_threshold_jaccard` is left at its default threshold, the one the challenge uses.
REFERENCE_SCORES = {
    "pixel_accuracy": ("accuracy", reference.binary_accuracy),
    "jaccard": ("jaccard", reference.binary_jaccard),
    "dice": ("dice", reference.binary_dice),
    "thresholded_jaccard": ("threshold_jaccard", reference.binary_threshold_jaccard),
    "sensitivity": ("sensitivity", reference.binary_sensitivity),
    "specificity": ("specificity", reference.binary_specificity),
}


def _reference_per_image(truths, predictions):
    matrices = [
        create_binary_confusion_matrix(truth.astype(bool), predicted.astype(bool))
        for truth, predicted in zip(truths, predictions, strict=True)
    ]
    return {
        name: np.array([float(score(matrix)) for matrix in matrices])
        for name, (_, score) in REFERENCE_SCORES.items()
    }


def _assert_per_image_scores_agree(truths, predictions):
    """Compare every score image by image; return our `per_image_scores`."""
    ours = per_image_scores(truths, predictions)
    theirs = _reference_per_image(truths, predictions)
    for name in METRIC_NAMES:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-12, err_msg=name)
    return ours


def _masks(shape, truth_pixels, predicted_pixels):
    """Masks of `shape` whose lesions are the given `(start, stop)` ranges of flat pixels."""
    truth, predicted = np.zeros(shape, bool), np.zeros(shape, bool)
    truth.flat[slice(*truth_pixels)] = True
    predicted.flat[slice(*predicted_pixels)] = True
    return truth, predicted


# (shape, truth's flat pixels, prediction's flat pixels, thresholded Jaccard)
EDGE_CASES = {
    "both empty": ((4, 5), (0, 0), (0, 0), 1.0),
    "empty truth": ((4, 5), (0, 0), (0, 3), 0.0),
    "empty prediction": ((4, 5), (0, 3), (0, 0), 0.0),
    "all lesion, found": ((4, 5), (0, 20), (0, 20), 1.0),
    "disjoint": ((4, 5), (0, 10), (10, 20), 0.0),
    "exactly 0.65 is kept": ((4, 5), (0, 20), (0, 13), 0.65),
    "just below 0.65": ((100, 100), (0, 10_000), (0, 6_499), 0.0),
    "just above 0.65": ((100, 100), (0, 10_000), (0, 6_501), 0.6501),
}


@pytest.mark.parametrize("case", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_edge_cases_score_as_in_the_reference(case):
    shape, truth_pixels, predicted_pixels, thresholded = case
    truth, predicted = _masks(shape, truth_pixels, predicted_pixels)
    ours = _assert_per_image_scores_agree([truth], [predicted])
    assert ours["thresholded_jaccard"][0] == pytest.approx(thresholded, abs=1e-12)


def _random_pairs(count, seed):
    """Truth masks of random size and density, and predictions that flip a random share."""
    rng = np.random.default_rng(seed)
    truths, predictions = [], []
    for _ in range(count):
        shape = tuple(rng.integers(1, 40, size=2))
        truth = rng.random(shape) < rng.random()
        flipped = rng.random(shape) < rng.uniform(0, 0.4)
        truths.append(truth)
        predictions.append(truth ^ flipped)
    return truths, predictions


def test_random_masks_score_as_in_the_reference():
    truths, predictions = _random_pairs(200, seed=0)
    thresholded = _assert_per_image_scores_agree(truths, predictions)["thresholded_jaccard"]
    assert (thresholded == 0).sum() > 20 and (thresholded >= 0.65).sum() > 20


def _model_like_prediction(truth, rng):
    """`truth` eroded, dilated or shifted by a random share of the lesion's radius."""
    step = round(rng.uniform(0.02, 0.5) * np.sqrt(truth.sum() / np.pi))
    mask = truth.astype(np.uint8)
    kind = rng.choice(["erode", "dilate", "shift"])
    if kind == "erode":  # A square structuring element: separable, so fast on large masks.
        return ndimage.minimum_filter(mask, size=2 * step + 1) > 0
    if kind == "dilate":
        return ndimage.maximum_filter(mask, size=2 * step + 1) > 0
    offset = rng.choice([-1, 1], size=2) * rng.integers(0, step + 1, size=2)
    return ndimage.shift(mask, offset, order=0) > 0


def test_isic_masks_with_model_like_errors_score_as_in_the_reference(tmp_path):
    truth_dir = ISIC_SELECT_DIR / "masks"
    if not truth_dir.is_dir():
        pytest.skip(f"{ISIC_SELECT_DIR} is absent")
    rng = np.random.default_rng(0)
    prediction_dir = tmp_path / "predictions"
    prediction_dir.mkdir()
    truths, predictions = [], []
    for truth_path in sorted(truth_dir.glob("ISIC_*_segmentation.png")):
        truth = np.asarray(Image.open(truth_path)) > 0
        predicted = _model_like_prediction(truth, rng)
        image_id = truth_path.stem.removesuffix("_segmentation")
        Image.fromarray(predicted.astype(np.uint8) * 255).save(prediction_dir / f"{image_id}.png")
        truths.append(truth)
        predictions.append(predicted)
    ours = _assert_per_image_scores_agree(truths, predictions)
    thresholded = ours["thresholded_jaccard"]
    assert (thresholded == 0).sum() > 20 and (thresholded >= 0.65).sum() > 20

    # The challenge's own path: mask files binarised at > 128, scores averaged over images
    # (as `compute_metrics` averages `per_image_scores`).
    means = ReferenceScore.from_dir(truth_dir, prediction_dir).macro_average
    for name, (reference_name, _) in REFERENCE_SCORES.items():
        assert np.mean(ours[name]) == pytest.approx(means[reference_name], abs=1e-12), name


def test_served_scores_script_scores_as_the_reference():
    spec = importlib.util.spec_from_file_location(
        "served_scores", REPO_ROOT / "benchmarks" / "served_scores.py"
    )
    served_scores = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(served_scores)
    truths, predictions = _random_pairs(60, seed=1)
    for shape, truth_pixels, predicted_pixels, _ in EDGE_CASES.values():
        truth, predicted = _masks(shape, truth_pixels, predicted_pixels)
        truths.append(truth)
        predictions.append(predicted)

    def serve_prediction(images):
        """A serving signature whose `mask` is the image it is given."""
        return {"mask": images}

    cases = [
        (f"case{i}", predicted.astype(np.uint8)[..., None], truth)
        for i, (truth, predicted) in enumerate(zip(truths, predictions, strict=True))
    ]
    result = served_scores.scores(serve_prediction, cases)
    theirs = _reference_per_image(truths, predictions)
    for name in ("jaccard", "thresholded_jaccard", "dice"):
        assert result[name] == pytest.approx(np.mean(theirs[name]), abs=1e-12), name
