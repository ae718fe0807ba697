"""SegNet's pooling-unpooling pair, forward and backward, against its layout before 05b7960.

The previous layers (window axis after the channels) are read from git at d3223cc, so run this
from a git checkout. TensorFlow without XLA, as training runs on the CPU; milliseconds per call,
best of 3 rounds of 20 calls, on ReLU'd random inputs of batch 12.

    python benchmarks/pooling_vs_previous.py
"""

import subprocess
import time
import types

# isort: off
import ph2_tf  # noqa: F401  (before TensorFlow: oneDNN on, as for training)
import tensorflow as tf

# isort: on
from ph2_tf import layers as current

SHAPES = ((8, 96), (16, 48), (32, 24), (64, 12))  # (channels, side) of the small SegNet's levels


def previous_layers():
    source = subprocess.run(
        ["git", "show", "d3223cc:ph2_tf/layers.py"], capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType("previous_layers")
    exec(compile(source, "d3223cc:ph2_tf/layers.py", "exec"), module.__dict__)
    return module


def milliseconds(module, x):
    pool, unpool = module.MaxPoolingWithArgmax2D(), module.MaxUnpooling2D()

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            pooled, indices = pool(x)
            total = tf.reduce_sum(unpool([pooled, indices]) * x)
        return tape.gradient(total, x)

    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(20):
            step()
        best = min(best, (time.perf_counter() - start) / 20 * 1000)
    return best


if __name__ == "__main__":
    previous = previous_layers()
    print("| input | before (ms) | now (ms) | speed-up |")
    print("|---|---|---|---|")
    for channels, side in SHAPES:
        x = tf.nn.relu(tf.random.stateless_normal((12, side, side, channels), seed=(0, 0)))
        before, now = milliseconds(previous, x), milliseconds(current, x)
        print(f"| {side}×{side}×{channels} | {before:.2f} | {now:.2f} | {before / now:.1f}× |")
