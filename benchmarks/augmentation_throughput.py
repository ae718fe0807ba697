"""Examples/s of `augment_batch`, the numpy augmentation of the JAX path, by thread count.

Times the `all` preset on random 256×256 batches of 12 (the `compact` and `full` profiles'
size and batch), serially and with one thread per core, after one warm-up batch. Needs no
data and no TensorFlow. Run from the repository root:

    PYTHONPATH=. python benchmarks/augmentation_throughput.py
"""

import argparse
import os
import time

import numpy as np

from ph2_tf.data.augmentation import AUGMENTATIONS, augment_batch


def examples_per_second(preset, size, batch_size, batches, threads):
    rng = np.random.default_rng(0)
    images = rng.random((batch_size, size, size, 3), dtype=np.float32)
    masks = (images[..., :1] > 0.5).astype(np.float32)
    augmentation = AUGMENTATIONS[preset]
    augment_batch(augmentation, images, masks, rng, threads=threads)  # warm-up
    start = time.perf_counter()
    for _ in range(batches):
        augment_batch(augmentation, images, masks, rng, threads=threads)
    return batches * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="all", choices=sorted(AUGMENTATIONS))
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(
        f"augment_batch, preset {args.preset}, {args.image_size}x{args.image_size}, batch "
        f"{args.batch_size}, {args.batches} batches, {cores} CPU cores"
    )
    for threads in sorted({1, min(cores, args.batch_size)}):
        rate = examples_per_second(
            args.preset, args.image_size, args.batch_size, args.batches, threads
        )
        print(f"  {threads} thread(s): {rate:.0f} examples/s ({1000 / rate:.1f} ms per example)")


if __name__ == "__main__":
    main()
