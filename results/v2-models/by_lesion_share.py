"""Mean per-image Jaccard by the lesion's share of the image, from `score_served.py --per-image`.

    python results/v2-models/by_lesion_share.py results/v2-models/served_scores_per_image.json

Prints a Markdown table: one row per model and image set, one column per band of lesion share
(the ground-truth mask's fraction of the image), each cell the mean Jaccard and the image count,
for the `serving_default` signature.
"""

import argparse
import json

import numpy as np

BANDS = ((0.0, 0.03), (0.03, 0.10), (0.10, 1.01))


def band_name(low, high):
    return f"lesion ≥ {low:.0%}" if high > 1 else f"lesion {low:.0%}–{high:.0%}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scores", help="JSON written by score_served.py --per-image")
    args = parser.parse_args()
    with open(args.scores) as f:
        models = json.load(f)["models"]
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


if __name__ == "__main__":
    main()
