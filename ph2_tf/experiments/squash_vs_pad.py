"""Squash or pad: how to make PH2's 4:3 images square for the model, decided on PH2 validation.

Every pipeline of this project squashes: the whole image is resized to the square model input,
so lesions are stretched horizontally by about 4/3. The alternative is to pad the image with
black to a centred square first, which keeps the shapes but spends a quarter of the input on
padding. This trains the `small` UNet (96x96, width 1/8, BCE, AdamW lr 1e-4 with weight decay
0.01, batch 12, 50 epochs, final weights) on the PH2 train split both ways for each seed, and
scores each model at original resolution: its probability map is mapped back onto the image
(resized, and for padding cropped), then thresholded at 0.5. Reported: mean per-image Jaccard on
PH2 validation (the deciding split), PH2 test, and the ISIC-2017 dev images when
`../shared/external/isic2017-dev` is beside the repository (evaluation only, never used to
choose). Both arms share this script's input pipeline (numpy arrays, Keras' seeded shuffling),
so compare the arms with each other, not with the tuner's tables.

    PH2_MANUAL_DIR=../shared/ph2 python results/squash-vs-pad/squash_vs_pad.py \\
        --data-dir /tmp/tfds --seeds 0 1 2 --out results/squash-vs-pad/records.json
"""

import argparse
import json
import pathlib
import time

import numpy as np

import ph2_tf  # noqa: F401  (first: TensorFlow's oneDNN kernels)
from ph2_tf import provenance
from ph2_tf.data import arrays, external, preprocessing
from ph2_tf.evaluation import evaluate
from ph2_tf.evaluation.metrics import compute_metrics
from ph2_tf.models.heads import lesion_probability
from ph2_tf.training import train
from ph2_tf.training.config import TrainConfig
from ph2_tf.training.profiles import PROFILES

FITS = ("squash", "pad")
ISIC_DIR = pathlib.Path(__file__).resolve().parents[3] / "shared" / "external" / "isic2017-dev"
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
    return pad_to_square(pixels)[0] if fit == "pad" else pixels


def training_arrays(split, fit, size, data_dir):
    images, masks = [], []
    for example in arrays.examples(split, "original", data_dir=data_dir):
        image = preprocessing.model_input(squared(example["image"], fit), size)
        mask = preprocessing.resize_mask(squared(example["segmentation_mask"], fit), (size, size))
        images.append(np.asarray(image))
        masks.append((np.asarray(mask) > 0).astype("float32"))
    return np.stack(images), np.stack(masks)


def predicted_mask(model, image, fit, size):
    """The model's lesion mask for one uint8 image, at the image's own size."""
    square, (top, left) = pad_to_square(image) if fit == "pad" else (image, (0, 0))
    logits = model(preprocessing.model_input(square[None], size), training=False)
    probability = np.asarray(lesion_probability(logits))[0, ..., 0]
    probability = evaluate.resize_probability(probability, square.shape[:2])
    height, width = image.shape[:2]
    return probability[top : top + height, left : left + width] >= 0.5


def jaccard(model, cases, fit, size):
    predicted = [predicted_mask(model, image, fit, size) for image, _ in cases]
    return compute_metrics([mask for _, mask in cases], predicted)["jaccard"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="TFDS data dir with ph2/original")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="records JSON")
    args = parser.parse_args()

    origin = provenance.collect()  # before the run: the code that runs, not the code at its end
    profile = PROFILES["small"]
    size = profile.image_size
    evaluation = {
        "ph2_validation": external.ph2_cases("validation", data_dir=args.data_dir),
        "ph2_test": external.ph2_cases("test", data_dir=args.data_dir),
        "isic2017_dev": external.folder_cases(ISIC_DIR),
    }
    records = []
    for seed in args.seeds:
        for fit in FITS:
            cfg = TrainConfig(
                model="unet",
                loss="bce",
                learning_rate=1e-4,
                epochs=EPOCHS,
                image_size=size,
                width=profile.width,
                batch_size=profile.batch_size,
                seed=seed,
            )
            images, masks = training_arrays("train", fit, size, args.data_dir)
            train.set_seeds(seed, cfg.deterministic)
            model = train.build_and_compile(cfg)
            start = time.perf_counter()
            model.fit(images, masks, batch_size=cfg.batch_size, epochs=EPOCHS, verbose=0)
            record = {"fit": fit, "seed": seed, "train_seconds": time.perf_counter() - start}
            for name, cases in evaluation.items():
                record[name] = jaccard(model, cases, fit, size) if cases else None
            print(json.dumps(record), flush=True)
            records.append(record)

    print(f"\nUNet small, {EPOCHS} epochs, seeds {args.seeds}; mean per-image Jaccard at original")
    print("resolution, mean ± sample std (ddof 1) over seeds:\n")
    print("| fit | PH2 validation | PH2 test | ISIC-2017 dev (38 images, evaluation only) |")
    print("|---|---|---|---|")
    for fit in FITS:
        cells = []
        for name in evaluation:
            values = [r[name] for r in records if r["fit"] == fit and r[name] is not None]
            spread = f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else ""
            cells.append(f"{np.mean(values):.3f}{spread}" if values else "not measured")
        print(f"| {fit} | " + " | ".join(cells) + " |")
    args.out.write_text(json.dumps({"provenance": origin, "records": records}, indent=2) + "\n")


if __name__ == "__main__":
    main()
