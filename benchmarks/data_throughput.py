"""`tf.data` images/s of `ph2_tf.data.pipeline.load_split` on the real PH2 training split.

For each setting, the first pass (TFDS read, decode, resize, cache fill) and the mean of the
later passes (from the cache; shuffle and augmentation still run) are timed separately. The
dataset is prepared into `--data-dir` first if needed (not timed). Run from the repository root:

    PYTHONPATH=. .venv/bin/python benchmarks/data_throughput.py \
        --manual-dir ../shared/ph2 --data-dir /tmp/tfds
"""

import argparse
import time

from ph2_tf.data import pipeline
from ph2_tf.data.augmentation import AUGMENTATIONS

# (label, image_size, augmentation preset): 128 and 256 read their resized configs; 96 has no
# resized config, so it decodes the full-size images of `original` and resizes them in the
# pipeline.
SETTINGS = (
    ("resized_128 config, 128", 128, "none"),
    ("resized_128 config, 128, augment all", 128, "all"),
    ("resized_256 config, 256, augment all", 256, "all"),
    ("original config, 96", 96, "none"),
    ("original config, 96, augment all", 96, "all"),
)


def measure(image_size, augmentation, epochs, batch_size, data_dir, manual_dir):
    """(first-pass images/s, later-pass images/s) of the training pipeline."""
    ds = pipeline.load_split(
        "train",
        image_size=image_size,
        batch_size=batch_size,
        training=True,
        augmentation=AUGMENTATIONS[augmentation],
        data_dir=data_dir,
        manual_dir=manual_dir,
    )
    rates = []
    for _ in range(epochs):
        start, count = time.perf_counter(), 0
        for images, _ in ds:
            count += int(images.shape[0])
        rates.append(count / (time.perf_counter() - start))
    return rates[0], sum(rates[1:]) / len(rates[1:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="TFDS data directory (default: TFDS's)")
    parser.add_argument("--manual-dir", help="PH2 directory, to prepare the dataset if needed")
    parser.add_argument("--epochs", type=int, default=4, help="passes per setting (>= 2)")
    parser.add_argument("--batch-size", type=int, default=12)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error(f"--epochs must be at least 2, got {args.epochs}")
    for config in sorted({pipeline.tfds_config_for(size) for _, size, _ in SETTINGS}):
        pipeline.load_examples("train", config, data_dir=args.data_dir, manual_dir=args.manual_dir)
    for label, image_size, augmentation in SETTINGS:
        first, later = measure(
            image_size, augmentation, args.epochs, args.batch_size, args.data_dir, args.manual_dir
        )
        print(f"{label:38s} first pass {first:8.1f} images/s   cached {later:8.1f} images/s")


if __name__ == "__main__":
    main()
