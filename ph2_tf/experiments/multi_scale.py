"""Multi-scale inference with the served refinement: the model's probabilities averaged over input
sizes, in the first pass, in the refining second pass, or in both.

The served versions run the model once on the image squashed to its training size `S` (256 px),
then again on a window around the lesion found (`ph2_tf.serving.refinement`). The networks are
fully convolutional, so the same weights also run at larger inputs, where a lesion's border spans
more pixels and the receptive field covers less of the frame. `small_lesion_levers` measured the
mean of the 256 and 384 px probabilities without refinement: for SegNet it gained on ISIC-select
and on small lesions, for UNet it did not. This runner measures it with refinement, as served:

- `served`: the served computation, a first pass at `S` and the version's own refinement (its
  `metrics.json` `source.serving.refine`; none when it has none);
- `first_<sizes>`: the first pass is the mean of the probabilities at `S` and at each of `sizes`;
  it locates the lesion, and the second pass runs at `S` alone;
- `both_<sizes>`: the second pass is that mean too.

`<sizes>` are those of `EXTRA_SIZES`, multiples of `S`. Scoring, sets and the two publishing rules
are `small_lesion_levers`' (served post-processing, original size, paired gains over `served`).
ISIC-dev is not used.

Writes `output.txt` and `per_image.json` to `--output-dir` (default `results/multi-scale/`):

    python -m ph2_tf.experiments.multi_scale --data-dir /tmp/tfds \\
        --isic-select ../shared/external/isic2017-select \\
        saved_models/ph2_unet/7 saved_models/ph2_segnet/12
"""

import json
import pathlib
import sys

import numpy as np

from ph2_tf.evaluation import scoring
from ph2_tf.evaluation.metrics import per_image_scores
from ph2_tf.experiments import selection_sets
from ph2_tf.experiments.selection_sets import BASELINE
from ph2_tf.experiments.small_lesion_levers import RULES, model_at_size
from ph2_tf.serving import refinement
from ph2_tf.serving.postprocessing import largest_component_filled

OUTPUT_DIR = pathlib.Path(__file__).resolve().parents[2] / "results" / "multi-scale"
# The input sizes averaged with the training size S, as multiples of S.
EXTRA_SIZES = ((1.5,), (1.25,), (1.25, 1.5))


def served_context(version_dir):
    """The refining pass's context a published version serves with, or None."""
    metrics = json.loads((pathlib.Path(version_dir) / "metrics.json").read_text())
    return metrics["source"].get("serving", {}).get("refine")


def memoized_mean(predictors):
    """One prediction function: the mean of `predictors`' probabilities, each computed once per
    distinct image (the levers share their passes: the same window is often cropped twice)."""
    cache = {}

    def predict(image):
        key = (image.shape, hash(image.tobytes()))
        if key not in cache:
            cache[key] = np.mean([predictor(image) for predictor in predictors], axis=0)
        return cache[key]

    return predict


def lever_predictors(predictors, training_size, context):
    """`{lever: prediction function of one image}` (see the module docstring).

    Args:
        predictors: `{input size: prediction function}`, the training size and every extra one.
        training_size: `S`.
        context: the served refinement's context, or None.
    """
    at_training_size = memoized_mean([predictors[training_size]])

    def lever(first_pass, second_pass):
        if context is None:
            return first_pass
        return lambda image: refinement.refine_first_pass(
            second_pass, image, first_pass(image), context, scoring.THRESHOLD
        )

    levers = {BASELINE: lever(at_training_size, at_training_size)}
    for multiples in EXTRA_SIZES:
        sizes = [training_size, *(round(training_size * m) for m in multiples)]
        mean = memoized_mean([predictors[size] for size in sizes])
        name = "_".join(str(size) for size in sizes)
        levers[f"first_{name}"] = lever(mean, at_training_size)
        levers[f"both_{name}"] = lever(mean, mean)
    return levers


def lever_jaccards(predictors, training_size, context, cases):
    """`{lever: {image_id: Jaccard}}` on some cases, every mask kept to its largest component."""
    jaccards = {}
    for image_id, image, truth in cases:
        # New caches per image: a window is cached only while its image is scored.
        levers = lever_predictors(predictors, training_size, context)
        for lever, predict in levers.items():
            mask = largest_component_filled(predict(image) >= scoring.THRESHOLD)
            jaccard = per_image_scores([truth], [mask])["jaccard"][0]
            jaccards.setdefault(lever, {})[image_id] = float(jaccard)
    return jaccards


def score_version(path):
    """The levers' scoring of one published version, and its heading's suffix."""
    model, training_size = model_at_size(path)
    predictors = {training_size: scoring.keras_predictor(model, training_size)}
    sizes = {round(training_size * m) for multiples in EXTRA_SIZES for m in multiples}
    for size in sorted(sizes):
        predictors[size] = scoring.keras_predictor(model_at_size(path, size)[0], size)
    context = served_context(path)

    def score(cases):
        return lever_jaccards(predictors, training_size, context, cases)

    return score, f" (served refinement: {context})"


def main(argv=None):
    selection_sets.score_published_versions(
        sys.modules[__name__],
        argv,
        OUTPUT_DIR,
        f"threshold {scoring.THRESHOLD}; extra sizes (multiples of the training size) "
        f"{', '.join('+'.join(f'{m:g}' for m in multiples) for multiples in EXTRA_SIZES)}",
        score_version,
        RULES,
    )


if __name__ == "__main__":
    main()
