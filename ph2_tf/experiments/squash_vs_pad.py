"""Squash or pad: how to make PH2's 4:3 images square for the model, decided on PH2 validation.

Every pipeline of this project squashes: the whole image is resized to the square model input,
so lesions are stretched horizontally by about 4/3. The alternative is to pad the image with
black to a centred square first, which keeps the shapes but spends a quarter of the input on
padding. This trains the `small` UNet (96x96, width 1/8, BCE, AdamW lr 1e-4 with weight decay
0.01, batch 12, 50 epochs, final weights) on the PH2 train split both ways for each seed, and
scores each model at original resolution (`ph2_tf.evaluation.scoring`): its probability map is
mapped back onto the image (resized, and for padding cropped), then thresholded at 0.5.
Reported: mean per-image Jaccard on PH2 validation (the deciding split), PH2 test, and the
ISIC-2017 dev images of `--isic-dir` when present (evaluation only, never used to choose). Both
arms share this module's input pipeline (numpy arrays, Keras' seeded shuffling), so compare the
arms with each other, not with the tuner's tables. The recorded runs trained with TensorFlow's
oneDNN kernels, which `ph2-seg` turns on and a module run with `python -m` does not: set
`TF_ENABLE_ONEDNN_OPTS=1` for them.

    PH2_MANUAL_DIR=../shared/ph2 TF_ENABLE_ONEDNN_OPTS=1 \\
        python -m ph2_tf.experiments.squash_vs_pad --data-dir /tmp/tfds --seeds 0 1 2 \\
        --out results/squash-vs-pad/records.json
"""

import argparse
import json
import pathlib
import time

import numpy as np

from ph2_tf import provenance
from ph2_tf.data import arrays, external, preprocessing
from ph2_tf.evaluation import scoring
from ph2_tf.training import train
from ph2_tf.training.config import TrainConfig

FITS = ("squash", "pad")
PROFILE = "small"
EPOCHS = 50


def pad_to_square(pixels):
    """Centres `(H, W, C)` pixels on a black square of side `max(H, W)`.

    Returns:
        `(square, (top, left))`: the padded array and where the image starts in it.
    """
    height, width = pixels.shape[:2]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    square = np.zeros((side, side, pixels.shape[2]), pixels.dtype)
    square[top : top + height, left : left + width] = pixels
    return square, (top, left)


def squared(pixels, fit):
    """The pixels as the model is given them: padded for `pad`, as they are for `squash`."""
    return pad_to_square(pixels)[0] if fit == "pad" else pixels


def training_arrays(split, fit, size, data_dir):
    """A split's images and masks made square by `fit`, then resized to `size`."""
    images, masks = [], []
    for example in arrays.examples(split, "original", data_dir=data_dir):
        image = preprocessing.model_input(squared(example["image"], fit), size)
        mask = preprocessing.resize_mask(squared(example["segmentation_mask"], fit), (size, size))
        images.append(np.asarray(image))
        masks.append((np.asarray(mask) > 0).astype("float32"))
    return np.stack(images), np.stack(masks)


def padded_predictor(predict):
    """A prediction function on padded squares, its probabilities cropped back to the image."""

    def predict_padded(image):
        square, (top, left) = pad_to_square(image)
        height, width = image.shape[:2]
        return predict(square)[top : top + height, left : left + width]

    return predict_padded


def train_and_score(fit, seed, data_dir, image_sets):
    """Trains the UNet on the split made square by `fit`, and scores it; returns its record."""
    cfg = TrainConfig.from_profile(
        PROFILE, model="unet", loss="bce", learning_rate=1e-4, epochs=EPOCHS, seed=seed
    )
    images, masks = training_arrays("train", fit, cfg.image_size, data_dir)
    train.set_seeds(seed, cfg.deterministic)
    model = train.build_and_compile(cfg)
    start = time.perf_counter()
    model.fit(images, masks, batch_size=cfg.batch_size, epochs=cfg.epochs, verbose=0)
    record = {"fit": fit, "seed": seed, "train_seconds": time.perf_counter() - start}
    predict = scoring.keras_predictor(model, cfg.image_size)
    if fit == "pad":
        predict = padded_predictor(predict)
    record.update(scoring.mean_jaccards(predict, image_sets))
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m ph2_tf.experiments.squash_vs_pad", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data-dir", required=True, help="TFDS data dir with ph2/original")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="records JSON")
    parser.add_argument(
        "--isic-dir", type=pathlib.Path, default=external.ISIC2017_DEV_DIR, help="ISIC images"
    )
    args = parser.parse_args(argv)
    if not args.out.parent.is_dir():
        parser.error(f"--out {args.out}: its folder does not exist")

    origin = provenance.collect()  # before the run: the code that runs, not the code at its end
    image_sets = external.evaluation_sets(data_dir=args.data_dir, isic_dir=args.isic_dir)
    records = []
    for seed in args.seeds:
        for fit in FITS:
            records.append(train_and_score(fit, seed, args.data_dir, image_sets))
            print(json.dumps(records[-1]), flush=True)

    print(f"\nUNet small, {EPOCHS} epochs, seeds {args.seeds}; mean per-image Jaccard at original")
    print("resolution, mean ± sample std (ddof 1) over seeds:\n")
    print("| fit | PH2 validation | PH2 test | ISIC-2017 dev (38 images, evaluation only) |")
    print("|---|---|---|---|")
    for fit in FITS:
        chosen = [r for r in records if r["fit"] == fit]
        cells = [scoring.over_seeds([r[name] for r in chosen]) for name in image_sets]
        print(f"| {fit} | " + " | ".join(cells) + " |")
    args.out.write_text(json.dumps({"provenance": origin, "records": records}, indent=2) + "\n")


if __name__ == "__main__":
    main()
