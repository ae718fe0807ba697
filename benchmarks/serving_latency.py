"""Latency (p50/p95 ms) of a SavedModel on one 768x560 uint8 image, with and without flip TTA.

Times single-image calls of `serving_default`, of `serving_single_pass` where the SavedModel has it,
and of `serving_flip_tta` (flip test-time augmentation) after `--warmup` untimed ones, resizing
inside the graph included. Either of an exported model (`--saved-model`), or of an untrained model
of a profile's size exported to a temporary directory with
`ph2_tf.serving.export.export_for_serving` (weights do not change the cost). The image is uniform
noise unless `--image` names a file: a graph exported with `--largest-component` costs more on a
mask in many pieces, which noise can give, so time such a model on a real image as well. Run from
the repository root on a quiet machine; pin the cores with `taskset -c 0,1` to measure "2 CPU cores"
on a larger machine:

    PYTHONPATH=. python benchmarks/serving_latency.py --profile small --model unet
    PYTHONPATH=. python benchmarks/serving_latency.py --saved-model saved_models/ph2_unet
    PYTHONPATH=. python benchmarks/serving_latency.py --saved-model saved_models/ph2_unet \\
        --image "$(find ../shared/ph2 -name IMD002.png)"
"""

import argparse
import os
import tempfile
import time

import numpy as np
from PIL import Image

# isort: off
import ph2_tf

ph2_tf.use_onednn_kernels()  # Before TensorFlow loads, as the command line does for `predict`.
import tensorflow as tf  # noqa: E402

# isort: on
from ph2_tf.models import build_model  # noqa: E402
from ph2_tf.serving import versions  # noqa: E402
from ph2_tf.serving.export import (  # noqa: E402
    FLIP_TTA_SIGNATURE,
    INPUT_NAME,
    SIGNATURE,
    SINGLE_PASS_SIGNATURE,
    export_for_serving,
)
from ph2_tf.training.profiles import PROFILES  # noqa: E402

HEIGHT, WIDTH = 560, 768


def latencies_ms(serve, image, warmup, runs):
    """Wall times of `runs` calls (mask fetched to numpy), after `warmup` untimed calls."""
    for _ in range(warmup):
        serve(**{INPUT_NAME: image})["mask"].numpy()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        serve(**{INPUT_NAME: image})["mask"].numpy()
        times.append((time.perf_counter() - start) * 1000)
    return times


def measure(path, label, args):
    loaded = tf.saved_model.load(str(path))
    if args.image:
        pixels = np.asarray(Image.open(args.image).convert("RGB"))
        what = args.image
    else:
        pixels = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        what = "noise"
    image = tf.constant(pixels[None])
    height, width = pixels.shape[:2]
    runs = f"{args.runs} runs after {args.warmup} warm-up"
    print(f"{label}; {width}x{height} uint8 input ({what}), {runs}")
    print(f"  TensorFlow {tf.__version__}, {len(os.sched_getaffinity(0))} CPU cores available")
    for name in (SIGNATURE, SINGLE_PASS_SIGNATURE, FLIP_TTA_SIGNATURE):
        if name not in loaded.signatures:
            print(f"  {name}: not in this SavedModel")
            continue
        p50, p95 = np.percentile(
            latencies_ms(loaded.signatures[name], image, args.warmup, args.runs), [50, 95]
        )
        print(f"  {name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saved-model", help="SavedModel version or model directory")
    parser.add_argument("--profile", default="small", choices=sorted(PROFILES))
    parser.add_argument("--model", default="unet", choices=("unet", "segnet"))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--image", help="an image file to time on (default: uniform noise)")
    args = parser.parse_args()
    if args.saved_model:
        path = versions.resolve(args.saved_model)
        measure(path, f"{path}", args)
        return
    profile = PROFILES[args.profile]
    size = profile.image_size
    model = build_model(args.model, input_shape=(size, size, 3), width=profile.width)
    with tempfile.TemporaryDirectory() as base_dir:
        path = export_for_serving(model, base_dir=base_dir, model_name=args.model)
        label = (
            f"untrained {args.model}, profile {args.profile} ({size}x{size}, width {profile.width})"
        )
        measure(path, label, args)


if __name__ == "__main__":
    main()
