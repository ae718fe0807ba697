"""Does a model lose the small-lesion set in its post-processing, or does it not see the lesions?

For the served version and each run's best checkpoint (exported in memory with the served
version's serving options), on the small-lesion stress set (PH2 validation zoomed out, seed 0,
`ph2_tf.experiments.stress_sets`), at original size:
- the mean Jaccard of the signature's `mask` (threshold, component rule, refining pass);
- the mean Jaccard of its `probabilities` at 0.5 with no post-processing;
- the mean probability inside the true lesion;
- the images where the mask misses the lesion (Jaccard under 0.05).

    python results/unet-artefacts-from-start/300-epochs/small_lesion_probabilities.py \\
        --data-dir /tmp/tfds saved_models/ph2_unet/9 \\
        runs/ph2_unet_artefacts_from_start_300/base-seed*
"""

import argparse

import numpy as np
import tensorflow as tf

from ph2_tf.data import external
from ph2_tf.evaluation import scoring
from ph2_tf.experiments import stress_sets
from ph2_tf.serving import export, publish
from ph2_tf.training import runs

MISSED = 0.05


def jaccard(predicted, true):
    return (predicted & true).sum() / max((predicted | true).sum(), 1)


def row(name, serve, cases):
    masks = scoring.signature_predictor(serve, "mask")
    probabilities = scoring.signature_predictor(serve, "probabilities")
    served, raw, inside = [], [], []
    for case in cases:
        probability = probabilities(case.image)
        served.append(jaccard(masks(case.image) > 0.5, case.mask))
        raw.append(jaccard(probability >= 0.5, case.mask))
        inside.append(probability[case.mask].mean())
    missed = sum(score < MISSED for score in served)
    scores = f"{np.mean(served):.4f} | {np.mean(raw):.4f} | {np.mean(inside):.3f}"
    return f"| {name} | {scores} | {missed} |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("served_version", help="a published version directory")
    parser.add_argument("run_dirs", nargs="+", help="training run directories")
    parser.add_argument("--data-dir", required=True, help="TFDS data dir with ph2/original")
    args = parser.parse_args()

    validation = external.ph2_cases("validation", data_dir=args.data_dir)
    cases = stress_sets.small_lesion_cases(validation, seed=stress_sets.SEED)
    options = publish.serving_options(args.served_version)
    print(f"serving options: {options}; {len(cases)} images")
    columns = "served mask | probabilities >= 0.5 | mean probability in the lesion | missed"
    print(f"| model | {columns} |")
    print("|---|---|---|---|---|")
    served = tf.saved_model.load(args.served_version).signatures["serving_default"]
    print(row(args.served_version, served, cases), flush=True)
    for run_dir in args.run_dirs:
        model, cfg = runs.load_trained(run_dir)
        print(row(run_dir, export.serving_function(model, cfg.image_size, **options), cases))


if __name__ == "__main__":
    main()
