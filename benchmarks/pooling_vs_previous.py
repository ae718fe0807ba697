"""SegNet's pooling-unpooling pair, forward and backward, against an earlier version of the layers.

The previous layers are read from git at `--previous` (default d3223cc: the window axis after the
channels, before 05b7960; 4c01b8f has the current layout with `ArgMax`), so run this from a git
checkout. TensorFlow without XLA, as training runs on the CPU; milliseconds per call, best of 3
rounds of 20 calls, on ReLU'd random inputs of batch `--batch` at the levels of a profile's SegNet.

    python benchmarks/pooling_vs_previous.py
    python benchmarks/pooling_vs_previous.py --previous 4c01b8f --profile compact --batch 1
"""

import argparse
import subprocess
import time
import types

# isort: off
import ph2_tf

ph2_tf.use_onednn_kernels()  # Before TensorFlow loads, as the command line does for training.
import tensorflow as tf  # noqa: E402

# isort: on
from ph2_tf.models import layers as current  # noqa: E402
from ph2_tf.models.blocks import scaled  # noqa: E402
from ph2_tf.training.profiles import PROFILES  # noqa: E402

# Filters of the study's SegNet before each of its five poolings.
POOLED_FILTERS = (64, 128, 256, 512, 512)


def levels(profile):
    """`(channels, side)` of each pooled feature map of SegNet at a profile's size and width."""
    size, width = PROFILES[profile].image_size, PROFILES[profile].width
    return [(scaled(f, width), size // 2**level) for level, f in enumerate(POOLED_FILTERS)]


def previous_layers(revision):
    source = subprocess.run(
        ["git", "show", f"{revision}:ph2_tf/models/layers.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType("previous_layers")
    exec(compile(source, f"{revision}:ph2_tf/models/layers.py", "exec"), module.__dict__)
    return module


def milliseconds(module, x, inference):
    pool, unpool = module.MaxPoolingWithArgmax2D(), module.MaxUnpooling2D()

    @tf.function
    def forward():
        pooled, indices = pool(x)
        return unpool([pooled, indices])

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            tape.watch(x)
            pooled, indices = pool(x)
            total = tf.reduce_sum(unpool([pooled, indices]) * x)
        return tape.gradient(total, x)

    step = forward if inference else forward_backward
    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(20):
            step()
        best = min(best, (time.perf_counter() - start) / 20 * 1000)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--previous", default="d3223cc", help="git revision to compare with")
    parser.add_argument("--profile", default="small", choices=sorted(PROFILES))
    parser.add_argument("--batch", type=int, default=12)
    parser.add_argument("--inference", action="store_true", help="forward only, as in serving")
    args = parser.parse_args()
    previous = previous_layers(args.previous)
    what = "forward" if args.inference else "forward and backward"
    print(f"{what}, batch {args.batch}, profile {args.profile}, against {args.previous}")
    print("| input | before (ms) | now (ms) | speed-up |")
    print("|---|---|---|---|")
    for channels, side in levels(args.profile):
        shape = (args.batch, side, side, channels)
        x = tf.nn.relu(tf.random.stateless_normal(shape, seed=(0, 0)))
        before = milliseconds(previous, x, args.inference)
        now = milliseconds(current, x, args.inference)
        print(f"| {side}×{side}×{channels} | {before:.2f} | {now:.2f} | {before / now:.1f}× |")


if __name__ == "__main__":
    main()
