"""Scores exported models through their serving signature, in a process that never imports ph2_tf.

Only TensorFlow, TFDS (reading the prepared `ph2/original` from its directory, without the
builder code), NumPy and Pillow are used, so the numbers check the SavedModel as a TF Serving
user receives it, independently of this project's evaluation code. For each SavedModel and each
signature (`serving_default`, and `serving_flip_tta` where present): mean per-image Jaccard and
Dice of the `mask` output at original size, on the PH2 test split and on the ISIC-2017 images
of `../shared/external/isic2017-dev` (evaluation only: never trained on, never chosen on).
With `--per-image`, each image's Jaccard too, by case id, with its lesion's share of the image.

    python results/v2-models/score_served.py --data-dir /tmp/tfds \\
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

ISIC_DIR = pathlib.Path(__file__).resolve().parents[3] / "shared" / "external" / "isic2017-dev"
SIGNATURES = ("serving_default", "serving_flip_tta")


def ph2_test(data_dir):
    """`(case id, image, bool mask)` of the PH2 test split at original size."""
    versions = sorted((pathlib.Path(data_dir) / "ph2" / "original").iterdir())
    builder = tfds.builder_from_directory(str(versions[-1]))
    return [
        (example["image_id"].decode(), example["image"], example["segmentation_mask"][..., 0] > 0)
        for example in tfds.as_numpy(builder.as_dataset(split="test", shuffle_files=False))
    ]


def isic_dev():
    """`(ISIC id, image, bool mask)` of the ISIC-2017 dev images."""
    cases = []
    for image_path in sorted((ISIC_DIR / "images").glob("*.jpg")):
        mask_path = ISIC_DIR / "masks" / f"{image_path.stem}_segmentation.png"
        image = np.asarray(Image.open(image_path).convert("RGB"))
        mask = np.asarray(Image.open(mask_path).convert("L")) > 0
        cases.append((image_path.stem, image, mask))
    return cases


def scores(serve, cases, per_image=False):
    jaccards, dices, lesion_shares = [], [], []
    for _, image, truth in cases:
        predicted = serve(images=tf.constant(image[None]))["mask"].numpy()[0, ..., 0] > 0
        intersection = np.logical_and(predicted, truth).sum()
        union = np.logical_or(predicted, truth).sum()
        jaccards.append(intersection / union if union else 1.0)
        dices.append(2 * intersection / (predicted.sum() + truth.sum()) if union else 1.0)
        lesion_shares.append(truth.mean())
    result = {"images": len(cases), "jaccard": np.mean(jaccards), "dice": np.mean(dices)}
    if per_image:
        result["per_image"] = {
            name: {"jaccard": jaccard, "lesion_share": share}
            for (name, _, _), jaccard, share in zip(cases, jaccards, lesion_shares, strict=True)
        }
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="TFDS data dir with ph2/original")
    parser.add_argument("--per-image", action="store_true", help="also each image's Jaccard")
    parser.add_argument("saved_models", nargs="+", help="SavedModel version directories")
    args = parser.parse_args()
    sets = {"ph2_test": ph2_test(args.data_dir), "isic2017_dev": isic_dev()}
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
        print(path, json.dumps(results[path]), file=sys.stderr, flush=True)
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
