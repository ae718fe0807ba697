"""Scores exported models through their serving signature, in a process that never imports ph2_tf.

Why not `ph2_tf.evaluation.scoring`, which every other score goes through: this is the check on
it. Only TensorFlow, TFDS (reading the prepared `ph2/original` from its directory, without the
builder code), NumPy and Pillow are used, and Jaccard and Dice are computed here from scratch,
so the numbers check the SavedModel as a TF Serving user receives it, independently of this
project's reading, preprocessing and evaluation code. The script fails if `ph2_tf` was imported.
It is a script rather than a module of `ph2_tf.experiments` because `python -m` would import the
package first.

For each SavedModel and each signature (`serving_default`, and `serving_single_pass` and
`serving_flip_tta` where present): mean per-image Jaccard, thresholded Jaccard and Dice of the
`mask` output at original size, on the PH2 test split and on the ISIC-2017 images of `--isic-dir`
when it exists (evaluation only: never trained on, never chosen on). With `--per-image`, each
image's Jaccard too, by case id, with its lesion's share of the image (`python -m
ph2_tf.experiments.lesion_share` tabulates those).

The thresholded Jaccard is the ISIC challenge's score (ISIC 2018 task 1), as its reference scorer
`isic-challenge-scoring` computes it: an image's Jaccard counts when it is at least 0.65 and as 0
below, so a model that misses some lesions badly scores lower on it than on the mean.

    python benchmarks/served_scores.py --data-dir /tmp/tfds \\
        saved_models/ph2_unet/1 saved_models/ph2_unet/2 > results/v2-models/served_scores.json
"""

import argparse
import json
import pathlib
import sys

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

ISIC_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "external" / "isic2017-dev"
SIGNATURES = ("serving_default", "serving_single_pass", "serving_flip_tta")
# ISIC 2018 task 1: a per-image Jaccard below this counts as 0.
ISIC_JACCARD_THRESHOLD = 0.65


def ph2_test(data_dir):
    """`(case id, image, bool mask)` of the PH2 test split at original size."""
    versions = sorted((pathlib.Path(data_dir) / "ph2" / "original").iterdir())
    builder = tfds.builder_from_directory(str(versions[-1]))
    return [
        (example["image_id"].decode(), example["image"], example["segmentation_mask"][..., 0] > 0)
        for example in tfds.as_numpy(builder.as_dataset(split="test", shuffle_files=False))
    ]


def isic_dev(isic_dir):
    """`(ISIC id, image, bool mask)` of the ISIC-layout folder's images."""
    cases = []
    for image_path in sorted((isic_dir / "images").glob("*.jpg")):
        mask_path = isic_dir / "masks" / f"{image_path.stem}_segmentation.png"
        image = np.asarray(Image.open(image_path).convert("RGB"))
        mask = np.asarray(Image.open(mask_path).convert("L")) > 0
        cases.append((image_path.stem, image, mask))
    return cases


def scores(serve, cases, per_image=False):
    """Mean Jaccard, thresholded Jaccard and Dice of a signature's `mask`.

    Jaccard and Dice are 1 where both masks are empty, as in the ISIC reference scorer.
    """
    jaccards, dices, lesion_shares = [], [], []
    for _, image, truth in cases:
        predicted = serve(images=tf.constant(image[None]))["mask"].numpy()[0, ..., 0] > 0
        intersection = np.logical_and(predicted, truth).sum()
        union = np.logical_or(predicted, truth).sum()
        jaccards.append(intersection / union if union else 1.0)
        dices.append(2 * intersection / (predicted.sum() + truth.sum()) if union else 1.0)
        lesion_shares.append(truth.mean())
    kept = np.array(jaccards) >= ISIC_JACCARD_THRESHOLD
    result = {
        "images": len(cases),
        "jaccard": np.mean(jaccards),
        "thresholded_jaccard": np.mean(np.where(kept, jaccards, 0.0)),
        "dice": np.mean(dices),
    }
    if per_image:
        result["per_image"] = {
            name: {"jaccard": jaccard, "lesion_share": share}
            for (name, _, _), jaccard, share in zip(cases, jaccards, lesion_shares, strict=True)
        }
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="benchmarks/served_scores.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data-dir", required=True, help="TFDS data dir with ph2/original")
    parser.add_argument("--per-image", action="store_true", help="also each image's Jaccard")
    parser.add_argument("--isic-dir", type=pathlib.Path, default=ISIC_DIR, help="ISIC images")
    parser.add_argument("saved_models", nargs="+", help="SavedModel version directories")
    args = parser.parse_args(argv)
    prepared = pathlib.Path(args.data_dir) / "ph2" / "original"
    if not prepared.is_dir() or not any(prepared.iterdir()):
        parser.error(f"--data-dir {args.data_dir} has no prepared ph2/original")
    for path in args.saved_models:
        if not (pathlib.Path(path) / "saved_model.pb").is_file():
            parser.error(f"{path} is not a SavedModel directory (no saved_model.pb)")
    sets = {"ph2_test": ph2_test(args.data_dir)}
    if args.isic_dir.is_dir():
        sets["isic2017_dev"] = isic_dev(args.isic_dir)
    results = {}
    for path in args.saved_models:
        loaded = tf.saved_model.load(path)
        results[path] = {
            name: {
                set_name: scores(loaded.signatures[name], cases, args.per_image)
                for set_name, cases in sets.items()
            }
            for name in SIGNATURES
            if name in loaded.signatures
        }
        print(path, json.dumps(results[path], default=float), file=sys.stderr, flush=True)
    assert "ph2_tf" not in sys.modules, "ph2_tf was imported"
    json.dump(
        {"tensorflow": tf.__version__, "ph2_tf_imported": False, "models": results},
        sys.stdout,
        indent=2,
        default=float,
    )
    print()


if __name__ == "__main__":
    main()
