"""Post-processing and flip test-time augmentation on exported models: Jaccard gain and latency.

For each SavedModel given, through its `serving_default` signature (uint8 image at original size
in, probabilities out), four variants of the final mask:

- `plain`: probabilities >= 0.5, what the signature's `mask` output is;
- `lcc+fill`: of that mask, the largest 8-connected component with its enclosed holes filled
  (`ph2_tf.serving.postprocessing.largest_component_filled`), an empty mask left empty;
- `flip TTA`: the mean of the probabilities for the image and its left-right and up-down flips
  (each flipped back), >= 0.5: three signature calls;
- `flip TTA + lcc+fill`.

Scores are mean per-image Jaccard at original size (`ph2_tf.evaluation.scoring`) on PH2
validation (the split to decide on), PH2 test and, when `--isic-dir` exists, its 38 ISIC-2017
images (evaluation only). Latency is the wall time of one variant on the first validation image,
signature calls and post-processing included, p50 and p95 over `--runs` calls after 3 warm-up
calls, in this process (give it a quiet machine). The recorded latencies are of TensorFlow's
own Eigen kernels, as TF Serving runs them: set `TF_ENABLE_ONEDNN_OPTS=0`, since TensorFlow
turns oneDNN on by itself on CPUs with AVX-512.

    PH2_MANUAL_DIR=../shared/ph2 TF_ENABLE_ONEDNN_OPTS=0 \\
        python -m ph2_tf.experiments.postprocessing_choice --data-dir /tmp/tfds \\
        saved_models/ph2_unet/1 saved_models/ph2_segnet/1
"""

import argparse
import pathlib
import time

import numpy as np
import tensorflow as tf

from ph2_tf.data import external
from ph2_tf.evaluation import scoring
from ph2_tf.serving.export import SIGNATURE
from ph2_tf.serving.postprocessing import largest_component_filled

# Variant: (flip test-time augmentation, post-processing of the thresholded mask).
VARIANTS = {
    "plain": (False, None),
    "lcc+fill": (False, largest_component_filled),
    "flip TTA": (True, None),
    "flip TTA + lcc+fill": (True, largest_component_filled),
}
SET_LABELS = {
    "ph2_validation": "PH2 validation",
    "ph2_test": "PH2 test",
    "isic2017_dev": "ISIC-2017 dev",
}
WARMUP_CALLS = 3


def flip_averaged(predict):
    """A prediction function averaging the probabilities of the image and its two flips."""

    def predict_flips(image):
        return np.mean(
            [predict(image), predict(image[:, ::-1])[:, ::-1], predict(image[::-1])[::-1]],
            axis=0,
        )

    return predict_flips


def latency_ms(predict, postprocess, image, runs):
    """p50 and p95 wall time of one variant on one image, after `WARMUP_CALLS` untimed calls."""

    def call():
        scoring.predicted_mask(predict, image, postprocess=postprocess)

    for _ in range(WARMUP_CALLS):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return np.percentile(times, [50, 95])


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m ph2_tf.experiments.postprocessing_choice",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("saved_models", nargs="+", help="SavedModel directories")
    parser.add_argument("--data-dir", required=True, help="TFDS data dir with ph2/original")
    parser.add_argument("--runs", type=int, default=30, help="timed calls per variant")
    parser.add_argument(
        "--isic-dir", type=pathlib.Path, default=external.ISIC2017_DEV_DIR, help="ISIC images"
    )
    args = parser.parse_args(argv)
    for path in args.saved_models:
        if not (pathlib.Path(path) / "saved_model.pb").is_file():
            parser.error(f"{path} is not a SavedModel directory (no saved_model.pb)")
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, received {args.runs}")

    image_sets = external.evaluation_sets(data_dir=args.data_dir, isic_dir=args.isic_dir)
    timing_image = image_sets["ph2_validation"][0].image
    print(f"latency on one {timing_image.shape[1]}x{timing_image.shape[0]} image, {args.runs} runs")
    print("| model | variant | " + " | ".join(SET_LABELS.values()) + " | p50 ms | p95 ms |")
    print("|---|---|" + "---|" * (len(SET_LABELS) + 2))
    for path in args.saved_models:
        serve = tf.saved_model.load(path).signatures[SIGNATURE]
        for variant, (flip_tta, postprocess) in VARIANTS.items():
            predict = scoring.signature_predictor(serve)
            predict = flip_averaged(predict) if flip_tta else predict
            jaccards = scoring.mean_jaccards(predict, image_sets, postprocess=postprocess)
            cells = ["not measured" if j is None else f"{j:.3f}" for j in jaccards.values()]
            p50, p95 = latency_ms(predict, postprocess, timing_image, args.runs)
            print(f"| {path} | {variant} | " + " | ".join(cells) + f" | {p50:.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()
