"""Which predicted component to keep: the served "largest" rule against alternatives, off PH2.

The served models keep the largest 8-connected component of their mask and fill its holes, a rule
chosen on PH2 validation, whose frames hold nothing but skin and one large lesion. On other
clinics' images a model can mark a sticker, cloth or a dark corner larger than the lesion, and
"largest" then keeps that and drops the lesion. This runner compares component rules, each
applied to the same thresholded probabilities of each image:

- `none`: the mask `probabilities >= 0.5` as it is (no component kept or dropped, no hole filled);
- `largest`: the served graph's rule (`ph2_tf.serving.postprocessing.largest_component_filled`),
  the baseline; checked equal to the signature's own `mask` output on the first
  `SERVED_CHECK_IMAGES` images of each set;
- `highest_mean_probability`: the component of highest mean probability
  (`ph2_tf.serving.postprocessing.most_confident_component_filled`);
- `closest_to_centre`: the component whose nearest pixel is closest to the image's centre (of
  equally close ones, the largest);
- `off_border`: the largest component touching no side of the frame; the largest of all when
  every one touches;
- `size_and_confidence_floor`: every component covering at least `MIN_AREA_SHARE` of the frame
  with a mean probability of at least `MIN_MEAN_PROBABILITY` (floors fixed before measuring, not
  tuned); the largest when none qualifies.

Every rule but `none` fills the holes of what it keeps, as `largest` does; an empty mask stays
empty. Each model's probabilities come from its `serving_default` signature at each image's
original size (`ph2_tf.evaluation.scoring.signature_predictor`), one call per image shared by all
rules; each mask is scored by per-image Jaccard (`ph2_tf.evaluation.metrics.per_image_scores`,
the routine `scoring.score_at_original_size` uses). The image sets: PH2 validation, its stress
sets (`ph2_tf.experiments.stress_sets`: artefacts, small lesions, and small lesions with
artefacts), and ISIC-select, the ISIC set for choosing (never ISIC-dev, which is for reporting
once). Against `largest`, each rule's paired gain and its standard error
(`ph2_tf.serving.selection.paired_gain`) per set, and the publishing rule's decision
(`selection.decide`: ISIC-select as the selection signal, PH2 validation as the no-loss check).

Writes `output.txt` (what it prints) and `per_image.json` (every rule's Jaccard per image, with
the provenance) to `--output-dir` (default `results/component-choice/`):

    python -m ph2_tf.experiments.component_choice --data-dir /tmp/tfds \\
        --isic-select ../shared/external/isic2017-select \\
        saved_models/ph2_unet/5 saved_models/ph2_segnet/10
"""

import pathlib
import sys

import numpy as np
from scipy import ndimage
from skimage import measure

from ph2_tf.evaluation import scoring
from ph2_tf.evaluation.metrics import per_image_scores
from ph2_tf.experiments import selection_sets
from ph2_tf.serving import selection
from ph2_tf.serving.postprocessing import (
    largest_component_filled,
    most_confident_component_filled,
)

OUTPUT_DIR = pathlib.Path(__file__).resolve().parents[2] / "results" / "component-choice"
MIN_AREA_SHARE = 0.0025
MIN_MEAN_PROBABILITY = 0.75
SERVED_CHECK_IMAGES = 3
BASELINE = "largest"


def _areas(labels):
    """Pixel count of each component `1..labels.max()`."""
    return np.bincount(labels.ravel())[1:]


def _component_means(labels, probability):
    return np.asarray(ndimage.mean(probability, labels, np.arange(1, labels.max() + 1)))


def _closest_to_centre(labels, probability):
    centre = (np.array(labels.shape) - 1) / 2
    rows, cols = np.indices(labels.shape)
    distance = np.hypot(rows - centre[0], cols - centre[1])
    nearest = np.asarray(ndimage.minimum(distance, labels, np.arange(1, labels.max() + 1)))
    # Sorted by distance, then by size, largest first.
    return np.lexsort((-_areas(labels), nearest))[0] + 1


def _off_border(labels, probability):
    edges = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    candidates = np.setdiff1d(np.arange(1, labels.max() + 1), edges)
    if not candidates.size:
        candidates = np.arange(1, labels.max() + 1)
    return candidates[np.argmax(_areas(labels)[candidates - 1])]


def _size_and_confidence_floor(labels, probability):
    areas = _areas(labels)
    qualifying = (areas >= MIN_AREA_SHARE * labels.size) & (
        _component_means(labels, probability) >= MIN_MEAN_PROBABILITY
    )
    return np.flatnonzero(qualifying) + 1 if qualifying.any() else np.argmax(areas) + 1


def _component_rule(choose):
    """A rule keeping the components that `choose(labels, probability)` names, holes filled."""

    def rule(mask, probability):
        labels = measure.label(mask, connectivity=2)
        if labels.max() == 0:
            return np.zeros(mask.shape, bool)
        return ndimage.binary_fill_holes(np.isin(labels, choose(labels, probability)))

    return rule


def _unchanged(mask, probability):
    return mask


def _largest(mask, probability):
    return largest_component_filled(mask)


# Rule name -> function of (bool mask (H, W), float probabilities (H, W)) -> bool mask (H, W).
RULES = {
    "none": _unchanged,
    BASELINE: _largest,
    "highest_mean_probability": most_confident_component_filled,
    "closest_to_centre": _component_rule(_closest_to_centre),
    "off_border": _component_rule(_off_border),
    "size_and_confidence_floor": _component_rule(_size_and_confidence_floor),
}


def rule_jaccards(predict, cases):
    """Every rule's per-image Jaccard on some cases, one prediction per image.

    Args:
        predict: a function of one uint8 `(H, W, 3)` image returning its `(H, W)` probabilities.
        cases: `ph2_tf.data.external.Case`s.

    Returns:
        `{rule: {image_id: jaccard}}`, rules in `RULES` order.
    """
    jaccards = {rule: {} for rule in RULES}
    for image_id, image, truth in cases:
        probability = predict(image)
        mask = probability >= scoring.THRESHOLD
        for rule, apply in RULES.items():
            jaccard = per_image_scores([truth], [apply(mask, probability)])["jaccard"][0]
            jaccards[rule][image_id] = float(jaccard)
    return jaccards


def served_mask_mismatches(serve, cases):
    """Pixels where `largest` differs from the signature's own `mask`, on the first
    `SERVED_CHECK_IMAGES` cases: `{image_id: count}`."""
    probabilities = scoring.signature_predictor(serve, "probabilities")
    masks = scoring.signature_predictor(serve, "mask")
    mismatches = {}
    for image_id, image, _ in cases[:SERVED_CHECK_IMAGES]:
        ours = _largest(probabilities(image) >= scoring.THRESHOLD, None)
        mismatches[image_id] = int(np.count_nonzero(ours != (masks(image) > 0)))
    return mismatches


def decisions(jaccards):
    """One line per rule: the publishing rule's decision on replacing `largest` by it."""
    lines = []
    for rule in RULES:
        if rule == BASELINE:
            continue
        decision = selection.decide(
            selection.paired_gain(
                jaccards["isic2017_select"][rule], jaccards["isic2017_select"][BASELINE]
            ),
            selection.paired_gain(
                jaccards["ph2_validation"][rule], jaccards["ph2_validation"][BASELINE]
            ),
        )
        verdict = "publish" if decision.publish else "keep largest"
        lines.append(f"- {rule}: {verdict} ({decision.reason})")
    return lines


def main(argv=None):
    args = selection_sets.parse_args(
        sys.modules[__name__],
        argv,
        output_dir=OUTPUT_DIR,
        model_file="saved_model.pb",
        model_kind="a SavedModel directory",
    )
    import tensorflow as tf  # after the checks: the error of a wrong argument comes at once

    from ph2_tf.serving.export import SIGNATURE

    report = selection_sets.Report(
        sys.modules[__name__],
        argv,
        args,
        f"threshold {scoring.THRESHOLD}; size floor {MIN_AREA_SHARE:.2%} of the frame, "
        f"confidence floor {MIN_MEAN_PROBABILITY}",
    )
    per_model = {}
    for path in args.saved_models:
        serve = tf.saved_model.load(path).signatures[SIGNATURE]
        checks = {name: served_mask_mismatches(serve, cases) for name, cases in report.sets.items()}
        predict = scoring.signature_predictor(serve, "probabilities")
        per_model[path] = {
            name: rule_jaccards(predict, cases) for name, cases in report.sets.items()
        }
        mismatched = sum(count for counts in checks.values() for count in counts.values())
        checked = sum(len(counts) for counts in checks.values())
        report.print(
            "",
            f"## {path}",
            "",
            f"`largest` against the signature's `mask` on {checked} images: "
            f"{mismatched} pixels differ",
            "",
            *selection_sets.model_table(per_model[path], BASELINE, "rule", digits=3),
            "",
            "Publishing rule (gain > 2 SE on ISIC-select, no loss beyond 2 SE on PH2 validation):",
            *decisions(per_model[path]),
        )
    report.write(args.output_dir, {"seed": args.seed, "rules": list(RULES), "jaccard": per_model})


if __name__ == "__main__":
    main()
