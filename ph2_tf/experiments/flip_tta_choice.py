"""Flip test-time augmentation as the served computation, chosen on other clinics' images.

Every version since the second also exports `serving_flip_tta`: the same graph (threshold,
refining pass, component rule) on the mean probabilities of the image and of its left-right and
up-down flips, in each pass. It was measured on PH2 validation when the models were small and
served beside the default, at about three times the latency, because it helped some models and
hurt others there. It was never chosen on other clinics' images. This runner scores both
signatures of each published version as a TF Serving client would call them:

- `served`: `serving_default`, the baseline;
- `flip_tta`: `serving_flip_tta` of the same SavedModel.

Declared before measuring, as `RULES`: ISIC-select is the signal, since flips stand for the
orientations another clinic's camera and framing give, and every other set is a guard that may
not lose beyond 2 standard errors: PH2 validation, its artefact and small-lesion stress sets.
ISIC-2017 dev is not used; the flip signature's scores there are on record for every version
(`docs/models.md`), so that set cannot confirm this choice independently.

Writes `output.txt` and `per_image.json` to `--output-dir` (default `results/flip-tta-choice/`):

    python -m ph2_tf.experiments.flip_tta_choice --data-dir /tmp/tfds \\
        --isic-select ../shared/external/isic2017-select \\
        saved_models/ph2_unet/9 saved_models/ph2_segnet/13
"""

import pathlib
import sys

from ph2_tf.evaluation import scoring
from ph2_tf.experiments import selection_sets
from ph2_tf.experiments.selection_sets import BASELINE
from ph2_tf.serving import export

OUTPUT_DIR = pathlib.Path(__file__).resolve().parents[2] / "results" / "flip-tta-choice"
# Lever -> the signature that computes it.
SIGNATURES = {BASELINE: export.SIGNATURE, "flip_tta": export.FLIP_TTA_SIGNATURE}
RULES = {
    "ISIC-select the signal, every other set a guard": (
        "isic2017_select",
        ("artefacts", "small_lesions", "small_lesions_artefacts"),
    ),
}


def signature_jaccards(predictors, cases):
    """`{lever: {image_id: Jaccard}}` of each lever's predictor (`scoring.signature_predictor`
    of its signature's `mask`) on `cases`."""
    jaccards = {}
    for lever, predict in predictors.items():
        scores = scoring.score_at_original_size(predict, cases)
        jaccards[lever] = dict(zip(scores.image_ids, scores.per_image["jaccard"], strict=True))
    return jaccards


def score_version(path):
    """Both signatures' scoring of one published version, and its heading's suffix."""
    loaded = export.load_saved_model(path, export.FLIP_TTA_SIGNATURE)
    predictors = {
        lever: scoring.signature_predictor(loaded.signatures[name], "mask")
        for lever, name in SIGNATURES.items()
    }

    def score(cases):
        return signature_jaccards(predictors, cases)

    score.saved_model = loaded  # owns the signatures' variables: kept as long as `score` is
    return score, " (each signature as exported)"


def main(argv=None):
    selection_sets.score_published_versions(
        sys.modules[__name__],
        argv,
        OUTPUT_DIR,
        "levers: " + ", ".join(f"{lever} = {name}" for lever, name in SIGNATURES.items()),
        score_version,
        RULES,
    )


if __name__ == "__main__":
    main()
