"""Latency (p50/p95 ms) of the exported `serving_default` signature on one 768x560 uint8 image.

Exports an untrained model of the profile's size (weights do not change the cost) to a temporary
directory with `ph2_tf.export.export_for_serving`, loads it back with `tf.saved_model.load`, and
times single-image calls after `--warmup` untimed ones. Run from the repository root:

    PYTHONPATH=. .venv/bin/python benchmarks/serving_latency.py --profile small --model unet
"""

import argparse
import tempfile
import time

import numpy as np
import tensorflow as tf

from ph2_tf.export import INPUT_NAME, SIGNATURE, export_for_serving
from ph2_tf.models import build_model
from ph2_tf.profiles import PROFILES

HEIGHT, WIDTH = 560, 768


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="small", choices=sorted(PROFILES))
    parser.add_argument("--model", default="unet", choices=("unet", "segnet"))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    profile = PROFILES[args.profile]
    size = profile.image_size
    model = build_model(args.model, input_shape=(size, size, 3), width=profile.width)
    with tempfile.TemporaryDirectory() as base_dir:
        path = export_for_serving(model, base_dir=base_dir, model_name=args.model)
        serve = tf.saved_model.load(str(path)).signatures[SIGNATURE]
        rng = np.random.default_rng(0)
        image = tf.constant(rng.integers(0, 256, (1, HEIGHT, WIDTH, 3), dtype=np.uint8))
        for _ in range(args.warmup):
            serve(**{INPUT_NAME: image})
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            serve(**{INPUT_NAME: image})["mask"].numpy()
            times.append((time.perf_counter() - start) * 1000)
    p50, p95 = np.percentile(times, [50, 95])
    print(
        f"{args.model}, profile {args.profile} ({size}x{size}, width {profile.width}), "
        f"{WIDTH}x{HEIGHT} uint8 input, {args.runs} runs: p50 {p50:.1f} ms, p95 {p95:.1f} ms"
    )


if __name__ == "__main__":
    main()
