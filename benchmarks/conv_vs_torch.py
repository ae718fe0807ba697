"""One 3×3 convolution + ReLU, forward and backward, in TensorFlow and in PyTorch on this CPU.

The shapes are the `small` profile's UNet levels (batch 12, 96×96 with 8 filters down to 6×6
with 128), where `benchmarks/cpu_vs_torch.py` finds our training step half as fast as
PyTorch's. Prints milliseconds per call, each side timed in this one process. PyTorch is a
benchmark dependency only (`pip install ".[benchmark]"`).

    python benchmarks/conv_vs_torch.py                            # oneDNN, as ph2-seg runs
    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/conv_vs_torch.py   # TensorFlow's Eigen kernels
"""

import argparse
import time

# isort: off
import ph2_tf

ph2_tf.use_onednn_kernels()  # Before TensorFlow loads, as the command line does for training.
import tensorflow as tf  # noqa: E402

# isort: on
import torch  # noqa: E402

from ph2_tf import provenance  # noqa: E402

# (input channels, output channels, side): the small UNet's first convolution, then one per level.
SHAPES = ((3, 8, 96), (8, 8, 96), (16, 16, 48), (32, 32, 24), (64, 64, 12), (128, 128, 6))
BATCH = 12


def milliseconds(call, repeats):
    for _ in range(3):
        call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats * 1000


def tensorflow_calls(cin, cout, side, jit_compile):
    images = tf.random.normal((BATCH, side, side, cin))
    kernel = tf.Variable(tf.random.normal((3, 3, cin, cout)))

    @tf.function(jit_compile=jit_compile)
    def forward():
        return tf.nn.conv2d(images, kernel, 1, "SAME")

    @tf.function(jit_compile=jit_compile)
    def forward_backward():
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(tf.nn.relu(tf.nn.conv2d(images, kernel, 1, "SAME")))
        return tape.gradient(total, [kernel, images])

    return forward, forward_backward


def torch_calls(cin, cout, side):
    images = torch.randn(BATCH, cin, side, side, requires_grad=True)
    kernel = torch.randn(cout, cin, 3, 3, requires_grad=True)

    def forward():
        with torch.no_grad():
            return torch.nn.functional.conv2d(images, kernel, padding=1)

    def forward_backward():
        torch.relu(torch.nn.functional.conv2d(images, kernel, padding=1)).sum().backward()

    return forward, forward_backward


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    print(
        f"TensorFlow {tf.__version__} (oneDNN {provenance.onednn_enabled()}), "
        f"PyTorch {torch.__version__}, batch {BATCH}, ms per call"
    )
    print("| conv | TF fwd | TF fwd+bwd | TF+XLA fwd+bwd | torch fwd | torch fwd+bwd |")
    print("|---|---|---|---|---|---|")
    for cin, cout, side in SHAPES:
        tf_forward, tf_both = tensorflow_calls(cin, cout, side, jit_compile=False)
        _, xla_both = tensorflow_calls(cin, cout, side, jit_compile=True)
        torch_forward, torch_both = torch_calls(cin, cout, side)
        cells = [
            milliseconds(call, args.repeats)
            for call in (tf_forward, tf_both, xla_both, torch_forward, torch_both)
        ]
        print(f"| {cin}→{cout} @ {side}² | " + " | ".join(f"{c:.2f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
