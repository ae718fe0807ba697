"""The served mask's threshold, chosen on other clinics' images as well as on PH2.

The served versions thresholded their probabilities at 0.5, the value the models were trained
and validated with on PH2. Other clinics draw their ground truth differently (ISIC's masks often
enclose the lesion with a margin), and the models see those images less sharply, so another
threshold may fit them better. In the served graph the threshold does two things: it locates the
lesion for the refining pass, and it makes the mask. This runner scores each threshold of
`THRESHOLDS` doing both, as `export --threshold` would serve it:

- `served`: the version's served computation as its `metrics.json` records it (`source.serving`:
  threshold, refinement, component rule, flip TTA), the baseline;
- `threshold_<t>`: the same with the lesion located and the mask made at `t`, for each `t` of
  `THRESHOLDS` other than the served one.

For a version that averages flips (`export --flip-tta`), every pass is the mean of the image's
and its two flips' probabilities, each flipped back, so that the threshold is chosen for the
probabilities it will cut.

Scoring and sets are `small_lesion_levers'` (original size, paired gains over `served`). The
publishing rule is applied with ISIC-select as the signal, since the threshold is chosen for
other clinics' images, and every other set a guard (`RULES`): a threshold that draws lesions
larger must not swallow the artefacts at the frame's edge, nor lose the small lesions. Of the
thresholds that pass, the one with the largest gain on ISIC-select is the choice. ISIC-dev is
not used.

Run on `ph2_unet/7` and `ph2_segnet/12` (one pass at 0.5, largest component) it chose 0.4 and
0.45 (`results/threshold-choice/`); on `ph2_unet/10` and `ph2_segnet/14`, which serve those
thresholds with flip TTA, it asks whether the flip average wants another
(`results/threshold-choice/flip-tta/`).

Writes `output.txt` and `per_image.json` to `--output-dir` (default `results/threshold-choice/`):

    python -m ph2_tf.experiments.threshold_choice --data-dir /tmp/tfds \\
        --isic-select ../shared/external/isic2017-select \\
        --output-dir results/threshold-choice/flip-tta \\
        saved_models/ph2_unet/10 saved_models/ph2_segnet/14
"""

import pathlib
import sys

from ph2_tf.evaluation import scoring
from ph2_tf.evaluation.metrics import per_image_scores
from ph2_tf.experiments import selection_sets
from ph2_tf.experiments.multi_scale import memoized_mean
from ph2_tf.experiments.postprocessing_choice import flip_averaged
from ph2_tf.experiments.selection_sets import BASELINE
from ph2_tf.experiments.small_lesion_levers import model_at_size
from ph2_tf.serving import publish, refinement

OUTPUT_DIR = pathlib.Path(__file__).resolve().parents[2] / "results" / "threshold-choice"
THRESHOLDS = (0.3, 0.4, 0.45, 0.55, 0.6, 0.7)
RULES = {
    "ISIC-select the signal, every other set a guard": (
        "isic2017_select",
        ("artefacts", "small_lesions", "small_lesions_artefacts"),
    ),
}


def served_mask_jaccards(predict, context, cases, levers):
    """`{lever: {image_id: Jaccard}}` of the served computation (`refinement.served_mask`) with
    each lever's `(threshold, component rule)`; the levers share the model's passes."""
    jaccards = {lever: {} for lever in levers}
    for image_id, image, truth in cases:
        at_training_size = memoized_mean([predict])  # each window's pass once per image
        for lever, (threshold, rule) in levers.items():
            mask = refinement.served_mask(at_training_size, image, threshold, context, rule)
            jaccards[lever][image_id] = float(per_image_scores([truth], [mask])["jaccard"][0])
    return jaccards


def threshold_jaccards(predict, context, cases, served_threshold=scoring.THRESHOLD, rule="largest"):
    """`{lever: {image_id: Jaccard}}`: the served computation at `served_threshold` and at each
    other threshold, keeping `rule`'s component."""
    thresholds = {
        BASELINE: served_threshold,
        **{f"threshold_{t:g}": t for t in THRESHOLDS if t != served_threshold},
    }
    levers = {lever: (threshold, rule) for lever, threshold in thresholds.items()}
    return served_mask_jaccards(predict, context, cases, levers)


def score_version(path):
    """The thresholds' scoring of one published version, and its heading's suffix."""
    serving = publish.serving_options(path)
    model, training_size = model_at_size(path)
    predict = scoring.keras_predictor(model, training_size)
    if serving.get("flip_tta"):
        predict = flip_averaged(predict)
    context = serving.get("refine")
    served_threshold = serving.get("threshold", scoring.THRESHOLD)
    rule = serving.get("component_rule", "largest")

    def score(cases):
        return threshold_jaccards(predict, context, cases, served_threshold, rule)

    return score, f" (served: {serving or 'threshold 0.5, one pass'})"


def main(argv=None):
    selection_sets.score_published_versions(
        sys.modules[__name__],
        argv,
        OUTPUT_DIR,
        "baseline: each version's served computation; thresholds "
        + ", ".join(map(str, THRESHOLDS)),
        score_version,
        RULES,
    )


if __name__ == "__main__":
    main()
