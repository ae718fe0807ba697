"""Post-processing and flip test-time augmentation on the shipped models: Jaccard gain and latency.

For each SavedModel given, through its `serving_default` signature (uint8 image at original size
in, probabilities out), four variants of the final mask:

- `plain`: probabilities >= 0.5, what the signature's `mask` output is;
- `lcc+fill`: of that mask, the largest 8-connected component (scikit-image) with its enclosed
  holes filled (SciPy, which scikit-image depends on), an empty mask left empty;
- `flip TTA`: the mean of the probabilities for the image and its left-right and up-down flips
  (each flipped back), >= 0.5: three signature calls;
- `flip TTA + lcc+fill`.

Scores are mean per-image Jaccard at original size on PH2 validation (the split to decide on), PH2
test and, when `../shared/external/isic2017-dev` is beside the repository, its 38 ISIC-2017 images
(evaluation only). Latency is the wall time of one variant on the first validation image,
signature calls and post-processing included, p50 and p95 over `--runs` calls after 3 warm-up
calls, in this process (give it a quiet machine).

    PH2_MANUAL_DIR=../shared/ph2 python results/postprocessing/measure_postprocessing.py \\
        --data-dir /tmp/tfds saved_models/ph2_unet/1 saved_models/ph2_segnet/1
"""

import argparse
import pathlib
import time

import numpy as np
import tensorflow as tf

from ph2_tf.data import external
from ph2_tf.evaluation.metrics import compute_metrics
from ph2_tf.serving.postprocessing import largest_component_filled

ISIC_DIR = pathlib.Path(__file__).resolve().parents[3] / "shared" / "external" / "isic2017-dev"
VARIANTS = ("plain", "lcc+fill", "flip TTA", "flip TTA + lcc+fill")


def predict(serve, image, variant):
    """The variant's bool mask for one uint8 `(H, W, 3)` image."""

    def probabilities(pixels):
        return serve(images=tf.constant(pixels[None]))["probabilities"].numpy()[0, ..., 0]

    if variant.startswith("flip TTA"):
        probability = np.mean(
            [
                probabilities(image),
                probabilities(image[:, ::-1])[:, ::-1],
                probabilities(image[::-1])[::-1],
            ],
            axis=0,
        )
    else:
        probability = probabilities(image)
    mask = probability >= 0.5
    return largest_component_filled(mask) if variant.endswith("lcc+fill") else mask


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("saved_models", nargs="+", help="SavedModel directories")
    parser.add_argument("--data-dir", required=True, help="TFDS data dir with ph2/original")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    sets = {
        "PH2 validation": external.ph2_cases("validation", data_dir=args.data_dir),
        "PH2 test": external.ph2_cases("test", data_dir=args.data_dir),
        "ISIC-2017 dev": external.folder_cases(ISIC_DIR),
    }
    timing_image = sets["PH2 validation"][0][0]
    print(f"latency on one {timing_image.shape[1]}x{timing_image.shape[0]} image, {args.runs} runs")
    print("| model | variant | " + " | ".join(sets) + " | p50 ms | p95 ms |")
    print("|---|---|" + "---|" * (len(sets) + 2))
    for path in args.saved_models:
        serve = tf.saved_model.load(path).signatures["serving_default"]
        for variant in VARIANTS:
            scores = []
            for cases in sets.values():
                if not cases:
                    scores.append("not measured")
                    continue
                predicted = [predict(serve, image, variant) for image, _ in cases]
                jaccard = compute_metrics([truth for _, truth in cases], predicted)["jaccard"]
                scores.append(f"{jaccard:.3f}")
            for _ in range(3):
                predict(serve, timing_image, variant)
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                predict(serve, timing_image, variant)
                times.append((time.perf_counter() - start) * 1000)
            p50, p95 = np.percentile(times, [50, 95])
            print(f"| {path} | {variant} | " + " | ".join(scores) + f" | {p50:.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()
