"""The served mask's threshold, chosen on other clinics' images as well as on PH2.

Every served version thresholds its probabilities at 0.5, the value the models were trained and
validated with on PH2. Other clinics draw their ground truth differently (ISIC's masks often
enclose the lesion with a margin), and the models see those images less sharply, so another
threshold may fit them better. In the served graph the threshold does two things: it locates the
lesion for the refining pass, and it makes the mask. This runner scores each threshold of
`THRESHOLDS` doing both, as `export --threshold` would serve it:

- `threshold_<t>`: the version's served computation (first pass, its own refinement with the
  lesion located at `t`), masked at `t`, largest component kept and filled;
- `served`: the same at 0.5, the baseline.

Scoring and sets are `small_lesion_levers'` (original size, paired gains over `served`). The
publishing rule is applied with ISIC-select as the signal, since the threshold is chosen for
other clinics' images, and every other set a guard (`RULES`): a threshold that draws lesions
larger must not swallow the artefacts at the frame's edge, nor lose the small lesions. Of the
thresholds that pass, the one with the largest gain on ISIC-select is the choice. ISIC-dev is
not used.

Writes `output.txt` and `per_image.json` to `--output-dir` (default `results/threshold-choice/`):

    python -m ph2_tf.experiments.threshold_choice --data-dir /tmp/tfds \\
        --isic-select ../shared/external/isic2017-select \\
        saved_models/ph2_unet/7 saved_models/ph2_segnet/12
"""

import pathlib
import sys

from ph2_tf.evaluation import scoring
from ph2_tf.evaluation.metrics import per_image_scores
from ph2_tf.experiments import selection_sets
from ph2_tf.experiments.multi_scale import memoized_mean, served_context
from ph2_tf.experiments.selection_sets import BASELINE
from ph2_tf.experiments.small_lesion_levers import model_at_size
from ph2_tf.serving import refinement

OUTPUT_DIR = pathlib.Path(__file__).resolve().parents[2] / "results" / "threshold-choice"
THRESHOLDS = (0.3, 0.4, 0.45, 0.55, 0.6, 0.7)
RULES = {
    "ISIC-select the signal, every other set a guard": (
        "isic2017_select",
        ("artefacts", "small_lesions", "small_lesions_artefacts"),
    ),
}


def threshold_jaccards(predict, context, cases):
    """`{lever: {image_id: Jaccard}}`: the served computation at 0.5 and at each threshold."""
    levers = {BASELINE: scoring.THRESHOLD, **{f"threshold_{t:g}": t for t in THRESHOLDS}}
    jaccards = {}
    for image_id, image, truth in cases:
        at_training_size = memoized_mean([predict])  # each window's pass once per image
        for lever, threshold in levers.items():
            mask = refinement.served_mask(at_training_size, image, threshold, context)
            jaccard = per_image_scores([truth], [mask])["jaccard"][0]
            jaccards.setdefault(lever, {})[image_id] = float(jaccard)
    return jaccards


def score_version(path):
    """The thresholds' scoring of one published version, and its heading's suffix."""
    model, training_size = model_at_size(path)
    predict = scoring.keras_predictor(model, training_size)
    context = served_context(path)
    return (lambda cases: threshold_jaccards(predict, context, cases)), (
        f" (served refinement: {context})"
    )


def main(argv=None):
    selection_sets.score_published_versions(
        sys.modules[__name__],
        argv,
        OUTPUT_DIR,
        f"baseline threshold {scoring.THRESHOLD}; thresholds {', '.join(map(str, THRESHOLDS))}",
        score_version,
        RULES,
    )


if __name__ == "__main__":
    main()
