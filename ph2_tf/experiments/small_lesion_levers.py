"""Small lesions: levers tried at inference, against the served computation, off PH2 and on it.

The served models see every image squashed to 256 px. A lesion covering 2 % of the frame then
spans a few dozen pixels, and the models, trained on PH2's large lesions, lose it or its border.
This runner measures levers that need no training, on the same images and with the served
post-processing (largest component, holes filled) for all:

- `served`: the model at its training size, as the served signature computes it;
- `refine_<context>`: locate, crop, refine (`ph2_tf.serving.refinement`), a second pass on a
  window `context` times the located lesion's bounding box, for each of `CONTEXTS`;
- `refine_<context>_small`: the same, only where the located lesion (the first pass's largest
  component, filled) covers less of the frame than `SMALL_SHARE`, the smallest lesion share in
  PH2 train: smaller than any lesion the model was trained on. Elsewhere `served`;
- `input_<size>`: the model run on the image squashed to `LARGER_INPUT` px instead (the networks
  are fully convolutional; the weights are the same);
- `multi_scale`: the mean of `served`'s and `input_<size>`'s probabilities.

Each prediction is the Keras model's, computed as the signature computes it
(`ph2_tf.evaluation.scoring.keras_predictor`: the same resize, the model, the probabilities
resized back), since only the signature's own input size can be served; the first pass is shared
by every `refine_*`. The sets are those of `ph2_tf.experiments.selection_sets`: PH2 validation,
its stress sets (artefacts, small lesions, both), and ISIC-select. Each lever's paired gain over
`served` and its standard error (`ph2_tf.serving.selection.paired_gain`) per set, and the
publishing rule's decisions (`selection.decide`), twice: with ISIC-select as the signal and PH2
validation as the guard, as for any candidate; and with the small-lesion set as the signal and
every other set as a guard (`RULES`). ISIC-dev is not used.

Writes `output.txt` (what it prints) and `per_image.json` (every lever's Jaccard per image, with
the provenance) to `--output-dir` (default `results/small-lesions/`):

    python -m ph2_tf.experiments.small_lesion_levers --data-dir /tmp/tfds \\
        --isic-select ../shared/external/isic2017-select \\
        saved_models/ph2_unet/6 saved_models/ph2_segnet/11
"""

import pathlib
import sys
from types import SimpleNamespace

from ph2_tf.evaluation import scoring
from ph2_tf.evaluation.metrics import per_image_scores
from ph2_tf.experiments import selection_sets
from ph2_tf.experiments.selection_sets import BASELINE
from ph2_tf.serving.postprocessing import largest_component_filled

OUTPUT_DIR = pathlib.Path(__file__).resolve().parents[2] / "results" / "small-lesions"
CONTEXTS = (1.25, 1.5, 2.0, 3.0)
LARGER_INPUT = 384
# The smallest lesion's share of its frame in PH2 train (4.3 %; `python -m
# ph2_tf.experiments.lesion_share --ph2-data-dir ...`, results/v2-models/README.md): a value from
# PH2, not tuned.
SMALL_SHARE = 0.043


def model_at_size(version_dir, size=None):
    """A published version's model rebuilt for `size`-px inputs (None: its training size), with
    the published weights.

    Returns:
        `(model, training_size)`.
    """
    from ph2_tf.serving import folding, publish
    from ph2_tf.training import train

    model, source = publish.load_published_model(version_dir)
    training_size = source["config"]["image_size"]
    if size in (None, training_size):
        return model, training_size
    config = SimpleNamespace(**{**source["config"], "image_size": size})
    resized = train.build_configured_model(config)
    if len(resized.weights) != len(model.weights):  # the published version was folded
        resized = folding.fold_batch_normalization(resized)
    weights = {weight.path: weight for weight in model.weights}
    for weight in resized.weights:
        weight.assign(weights[weight.path])
    return resized, training_size


def lever_probabilities(served, larger, image):
    """`{lever: (H, W) probabilities}` of one image (see the module docstring)."""
    from ph2_tf.serving import refinement

    first_pass = served(image)
    at_larger_input = larger(image)
    located = largest_component_filled(first_pass >= scoring.THRESHOLD)
    levers = {BASELINE: first_pass}
    for context in CONTEXTS:
        refined = refinement.refine_first_pass(
            served, image, first_pass, context, scoring.THRESHOLD
        )
        levers[f"refine_{context:g}"] = refined
        small = located.mean() < SMALL_SHARE
        levers[f"refine_{context:g}_small"] = refined if small else first_pass
    levers[f"input_{LARGER_INPUT}"] = at_larger_input
    levers["multi_scale"] = (first_pass + at_larger_input) / 2
    return levers


def lever_jaccards(served, larger, cases):
    """`{lever: {image_id: Jaccard}}` on some cases, every mask kept to its largest component."""
    jaccards = {}
    for image_id, image, truth in cases:
        for lever, probability in lever_probabilities(served, larger, image).items():
            mask = largest_component_filled(probability >= scoring.THRESHOLD)
            jaccard = per_image_scores([truth], [mask])["jaccard"][0]
            jaccards.setdefault(lever, {})[image_id] = float(jaccard)
    return jaccards


# The publishing rule twice: with ISIC-select as the signal, as for any candidate, and with the
# small-lesion set as the signal, since ISIC-select holds one lesion under 3 % of its frame and so
# cannot see what a small-lesion lever is for; every other set must then lose no more than noise.
RULES = {
    "ISIC-select the signal, PH2 validation the guard": ("isic2017_select", ()),
    "small lesions the signal, every other set a guard": (
        "small_lesions",
        ("isic2017_select", "artefacts", "small_lesions_artefacts"),
    ),
}


def score_version(path):
    """The levers' scoring of one published version, and its heading's suffix (none)."""
    model, training_size = model_at_size(path)
    served = scoring.keras_predictor(model, training_size)
    larger = scoring.keras_predictor(model_at_size(path, LARGER_INPUT)[0], LARGER_INPUT)
    return (lambda cases: lever_jaccards(served, larger, cases)), ""


def main(argv=None):
    selection_sets.score_published_versions(
        sys.modules[__name__],
        argv,
        OUTPUT_DIR,
        f"threshold {scoring.THRESHOLD}; contexts {', '.join(f'{c:g}' for c in CONTEXTS)}; "
        f"larger input {LARGER_INPUT} px",
        score_version,
        RULES,
    )


if __name__ == "__main__":
    main()
