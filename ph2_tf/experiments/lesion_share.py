"""Mean per-image Jaccard by the lesion's share of the image, from `served_scores.py --per-image`.

Prints a Markdown table: one row per model and image set, one column per band of lesion share
(the ground-truth mask's fraction of the image), each cell the mean Jaccard and the image count,
for the `serving_default` signature. The scores come from `benchmarks/served_scores.py`, which
scores SavedModels without this package. With `--ph2-data-dir` (a TFDS data dir with the
prepared `ph2/original`), also the lesion shares of PH2's splits, for comparison.

    python -m ph2_tf.experiments.lesion_share --ph2-data-dir /tmp/tfds \\
        results/v2-models/served_scores_per_image*.json
"""

import argparse
import json
import pathlib

import numpy as np

from ph2_tf.data import arrays

BANDS = ((0.0, 0.03), (0.03, 0.10), (0.10, 1.01))
SIGNATURE = "serving_default"


def band_name(low, high):
    """The column heading of a band of lesion share."""
    return f"lesion ≥ {low:.0%}" if high > 1 else f"lesion {low:.0%}–{high:.0%}"


def ph2_lesion_shares(data_dir):
    """Prints the lesion share's minimum, 10th, 50th and 90th percentile per PH2 split."""
    for split in ("train", "validation", "test"):
        shares = [mask.mean() for mask in arrays.original_masks(split, data_dir=data_dir).values()]
        low, p10, p50, p90 = np.min(shares), *np.percentile(shares, [10, 50, 90])
        print(
            f"PH2 {split}: lesion share min {low:.1%}, "
            f"p10 {p10:.1%}, median {p50:.1%}, p90 {p90:.1%}"
        )


def read_scores(path):
    """The `models` of a `served_scores.py --per-image` file.

    Raises:
        ValueError: the file cannot be read as such a file; the message says why.
    """
    try:
        models = json.loads(pathlib.Path(path).read_text())["models"]
        for model, signatures in models.items():
            for set_name, result in signatures[SIGNATURE].items():
                if "per_image" not in result:
                    raise ValueError(
                        f"no per-image scores for {model} on {set_name} (made without --per-image)"
                    )
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(str(error)) from None
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"not a served_scores.py output ({type(error).__name__}: {error})"
        ) from None
    return models


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m ph2_tf.experiments.lesion_share", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("scores", nargs="+", help="JSON files by served_scores.py --per-image")
    parser.add_argument("--ph2-data-dir", help="also print PH2's lesion shares, from this dir")
    args = parser.parse_args(argv)
    models = {}
    for path in args.scores:
        try:
            models.update(read_scores(path))
        except ValueError as error:
            parser.error(f"{path}: {error}")
    print("| model | images | all | " + " | ".join(band_name(*band) for band in BANDS) + " |")
    print("|---" * (len(BANDS) + 3) + "|")
    for model, signatures in models.items():
        for set_name, result in signatures[SIGNATURE].items():
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
