"""Which component the served computation keeps: the largest, or the one the model is surest of.

`results/component-choice/` compared component rules on `ph2_unet/5` and `ph2_segnet/10`, masked
at 0.5 with one pass. Keeping the component of highest mean probability instead of the largest
recovered UNet's lesions where a sticker, cloth or dark corner outgrew them (small lesions with
artefacts: +0.068 ± 0.033), and was never worse elsewhere; ISIC-select, whose lesions are
large, could not see it. The served versions have changed since: they mask at 0.4 (UNet) and
0.45 (SegNet), and a component is chosen twice, to locate the lesion for the refining second
pass and in the final mask. So the comparison is made again with each version's served
computation (`source.serving` of its `metrics.json`):

- `served`: the largest component, filled, at both places: what the graph computes;
- `highest_mean_probability`: at both places the component of highest mean probability, filled
  (`ph2_tf.serving.postprocessing.most_confident_component_filled`), the window of the second
  pass then cut around it.

Declared before measuring, as `RULES`: the signal is the set made for this failure, PH2
validation's small lesions with artefacts at the frame's edge (`stress_sets`), and every other
set a guard that may not lose beyond 2 standard errors: PH2 validation, ISIC-select, the
artefacts on PH2's own lesions, the small lesions without artefacts. (The refining pass was
published the same way, on the small-lesion set.) ISIC-select as the signal is reported
beside it. ISIC-2017 dev is not used.

Scoring is `threshold_choice`'s (original size, paired gains over `served`). Writes
`output.txt` and `per_image.json` to `--output-dir` (default
`results/component-choice/served/`):

    python -m ph2_tf.experiments.served_component_choice --data-dir /tmp/tfds \\
        --isic-select ../shared/external/isic2017-select \\
        saved_models/ph2_unet/8 saved_models/ph2_segnet/13
"""

import json
import pathlib
import sys

from ph2_tf.evaluation import scoring
from ph2_tf.experiments import component_choice, selection_sets, threshold_choice
from ph2_tf.experiments.selection_sets import BASELINE
from ph2_tf.experiments.small_lesion_levers import model_at_size

OUTPUT_DIR = component_choice.OUTPUT_DIR / "served"
CANDIDATE = "highest_mean_probability"
RULES = {
    "the set made for the failure the signal (small lesions with artefacts), every other set "
    "a guard": ("small_lesions_artefacts", ("isic2017_select", "artefacts", "small_lesions")),
    "ISIC-select the signal, every other set a guard": (
        "isic2017_select",
        ("artefacts", "small_lesions", "small_lesions_artefacts"),
    ),
}


# Lever -> the component rule it serves with (`ph2_tf.serving.components.COMPONENT_RULES`).
KEEP = {BASELINE: "largest", CANDIDATE: "most_confident"}


def component_jaccards(predict, serving, cases):
    """`{lever: {image_id: Jaccard}}` of `KEEP`'s rules, each at both places of the served
    computation `serving` (`threshold`, `refine`: the context, or None)."""
    levers = {lever: (serving["threshold"], rule) for lever, rule in KEEP.items()}
    return threshold_choice.served_mask_jaccards(predict, serving.get("refine"), cases, levers)


def score_version(path):
    """The rules' scoring of one published version, and its heading's suffix."""
    serving = json.loads((pathlib.Path(path) / "metrics.json").read_text())["source"]["serving"]
    if not serving.get("largest_component"):
        raise SystemExit(f"{path} keeps no component: there is no rule to compare")
    model, training_size = model_at_size(path)
    predict = scoring.keras_predictor(model, training_size)
    return (lambda cases: component_jaccards(predict, serving, cases)), f" (served: {serving})"


def main(argv=None):
    selection_sets.score_published_versions(
        sys.modules[__name__],
        argv,
        OUTPUT_DIR,
        f"rules: {', '.join(KEEP)}; each version's served threshold and refinement",
        score_version,
        RULES,
    )


if __name__ == "__main__":
    main()
