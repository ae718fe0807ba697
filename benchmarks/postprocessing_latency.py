"""Time of the mask post-processing (largest component, holes filled) on 768x560 masks.

Times `ph2_tf.serving.postprocessing.largest_component_filled_graph` (TensorFlow ops, as inside a
SavedModel exported with `--largest-component`, traced once with unknown sizes) and the NumPy
reference `largest_component_filled` (scikit-image and SciPy) on masks whose shape sets the
cost: a disk, a winding mask (smoothed noise at its median: long components and many holes) and
uniform noise (many tiny components; no model output looks like it, it is the worst case).
Median and p95 over `--runs` calls after one untimed call. Run from the repository root on a
quiet machine:

    PYTHONPATH=. python benchmarks/postprocessing_latency.py
"""

import argparse
import os
import time

import numpy as np
import tensorflow as tf
from scipy import ndimage

from ph2_tf.serving.postprocessing import largest_component_filled, largest_component_filled_graph

HEIGHT, WIDTH = 560, 768


def masks():
    """`{name: 2-D bool mask}` of the benchmark's cases, seeded."""
    rng = np.random.default_rng(0)
    rows, columns = np.mgrid[:HEIGHT, :WIDTH]
    smooth = ndimage.gaussian_filter(rng.random((HEIGHT, WIDTH)), sigma=12)
    return {
        "disk": np.hypot(rows - HEIGHT / 2, columns - WIDTH / 2) < 200,
        "winding": smooth > np.median(smooth),
        "noise 10%": rng.random((HEIGHT, WIDTH)) < 0.1,
        "noise 50%": rng.random((HEIGHT, WIDTH)) < 0.5,
    }


def milliseconds(function, argument, runs):
    """Median and p95 wall time of `runs` calls, after one untimed call."""
    function(argument)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function(argument)
        times.append((time.perf_counter() - start) * 1000)
    return np.percentile(times, [50, 95])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    graph = tf.function(
        largest_component_filled_graph,
        input_signature=[tf.TensorSpec([None, None, None, 1], tf.bool)],
    )
    print(f"{WIDTH}x{HEIGHT} masks, {args.runs} runs after 1 untimed")
    print(f"TensorFlow {tf.__version__}, {len(os.sched_getaffinity(0))} CPU cores available")
    for name, mask in masks().items():
        batch = tf.constant(mask[None, ..., None])
        in_graph = milliseconds(lambda m: graph(m).numpy(), batch, args.runs)
        reference = milliseconds(largest_component_filled, mask, args.runs)
        print(
            f"  {name:10} ({mask.mean():.0%} lesion): graph p50 {in_graph[0]:.1f} ms, "
            f"p95 {in_graph[1]:.1f} ms; NumPy reference p50 {reference[0]:.1f} ms"
        )


if __name__ == "__main__":
    main()
