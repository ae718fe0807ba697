"""Mean per-image Jaccard by the lesion's share of the image, from `score_served.py --per-image`.

    python results/v2-models/by_lesion_share.py --ph2-data-dir /tmp/tfds \\
        results/v2-models/served_scores_per_image*.json

Prints a Markdown table: one row per model and image set, one column per band of lesion share
(the ground-truth mask's fraction of the image), each cell the mean Jaccard and the image count,
for the `serving_default` signature. With `--ph2-data-dir` (a TFDS data dir with the prepared
`ph2/original`), also the lesion shares of PH2's splits, for comparison.
"""

import argparse
import json

import numpy as np

BANDS = ((0.0, 0.03), (0.03, 0.10), (0.10, 1.01))


def band_name(low, high):
    return f"lesion ≥ {low:.0%}" if high > 1 else f"lesion {low:.0%}–{high:.0%}"


def ph2_lesion_shares(data_dir):
    """Prints the lesion share's minimum, 10th, 50th and 90th percentile per PH2 split."""
    import tensorflow_datasets as tfds

    import tfds_ph2  # noqa: F401  (registers the builder)

    for split in ("train", "validation", "test"):
        dataset = tfds.load("ph2/original", split=split, data_dir=data_dir)
        shares = [(e["segmentation_mask"] > 0).mean() for e in tfds.as_numpy(dataset)]
        low, p10, p50, p90 = np.min(shares), *np.percentile(shares, [10, 50, 90])
        print(
            f"PH2 {split}: lesion share min {low:.1%}, "
            f"p10 {p10:.1%}, median {p50:.1%}, p90 {p90:.1%}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scores", nargs="+", help="JSON files by score_served.py --per-image")
    parser.add_argument("--ph2-data-dir", help="also print PH2's lesion shares, from this dir")
    args = parser.parse_args()
    models = {}
    for path in args.scores:
        with open(path) as f:
            models.update(json.load(f)["models"])
    print("| model | images | all | " + " | ".join(band_name(*band) for band in BANDS) + " |")
    print("|---" * (len(BANDS) + 3) + "|")
    for model, signatures in models.items():
        for set_name, result in signatures["serving_default"].items():
            cases = result["per_image"].values()
            cells = [f"{result['jaccard']:.3f} ({result['images']})"]
            for low, high in BANDS:
                band = [c["jaccard"] for c in cases if low <= c["lesion_share"] < high]
                cells.append(f"{np.mean(band):.3f} ({len(band)})" if band else "–")
            print(f"| `{model}` | {set_name} | " + " | ".join(cells) + " |")
    if args.ph2_data_dir:
        print()
        ph2_lesion_shares(args.ph2_data_dir)


if __name__ == "__main__":
    main()
