"""Where a SavedModel signature spends its time on the CPU: per op type and per model layer.

Runs the signature on one random 768x560 uint8 image in a TensorFlow 1 session with a full
trace (`RunOptions.FULL_TRACE`), after `--warmup` untraced runs, and sums each node's time over
`--runs` traced runs (averaged per run). Times are of the graph after TensorFlow's optimizer
(fused convolutions appear as `_FusedConv2D`). Ops run in parallel on the cores, so the sum
exceeds the wall time. Layers are named as in the Keras model (`enc1_pool`); digits are kept,
or folded with `--group-levels` (`encN_convN`). Tracing adds overhead: use
`benchmarks/serving_latency.py` for latency itself.

    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/serving_op_profile.py saved_models/ph2_segnet/7
"""

import argparse
import collections
import re

import numpy as np
import tensorflow as tf

HEIGHT, WIDTH = 560, 768
# `.../StatefulPartitionedCall/segnet_1/enc1_pool_1/ArgMax` -> `enc1_pool`.
LAYER_PATTERN = re.compile(r"/(?:segnet|unet)\w*/(\w+?)_\d+/")


def traced_node_times(path, signature, warmup, runs):
    """Mean per-run time (ms) of each node, and the median traced wall time (ms) per run."""
    tf.compat.v1.disable_eager_execution()
    image = np.random.default_rng(0).integers(0, 256, (1, HEIGHT, WIDTH, 3), dtype=np.uint8)
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path))
        signature_def = meta_graph.signature_def[signature]
        graph = session.graph
        feed = {graph.get_tensor_by_name(t.name): image for t in signature_def.inputs.values()}
        fetch = graph.get_tensor_by_name(signature_def.outputs["mask"].name)
        for _ in range(warmup):
            session.run(fetch, feed)
        node_ms, walls = collections.Counter(), []
        options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
        for _ in range(runs):
            metadata = tf.compat.v1.RunMetadata()
            session.run(fetch, feed, options=options, run_metadata=metadata)
            spans = []
            for device in metadata.step_stats.dev_stats:
                for node in device.node_stats:
                    op = node.timeline_label.split("(")[0].split(" = ")[-1].strip()
                    node_ms[(node.node_name, op or node.node_name)] += node.all_end_rel_micros
                    spans.append(
                        (node.all_start_micros, node.all_start_micros + node.all_end_rel_micros)
                    )
            walls.append((max(end for _, end in spans) - min(start for start, _ in spans)) / 1000)
    return {key: micros / 1000 / runs for key, micros in node_ms.items()}, float(np.median(walls))


def layer_of(node_name, group_levels):
    match = LAYER_PATTERN.search(node_name)
    if not match:
        return "(outside the model: resizing, colour scaling, threshold)"
    return re.sub(r"\d", "N", match.group(1)) if group_levels else match.group(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("saved_model", help="a SavedModel version directory")
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--group-levels", action="store_true", help="encN_convN, not enc1_conv1")
    args = parser.parse_args()
    node_ms, wall = traced_node_times(args.saved_model, args.signature, args.warmup, args.runs)
    by_op, by_layer = collections.Counter(), collections.Counter()
    for (name, op), ms in node_ms.items():
        by_op[op] += ms
        by_layer[layer_of(name, args.group_levels)] += ms
    print(f"{args.saved_model} {args.signature}; {WIDTH}x{HEIGHT} uint8, {args.runs} traced runs")
    summed = sum(by_op.values())
    print(f"traced wall time per run: median {wall:.1f} ms; op time summed: {summed:.1f} ms")
    for title, counter in (("op type", by_op), ("layer", by_layer)):
        print(f"| {title} | ms per run |\n|---|---|")
        for key, ms in counter.most_common(args.top):
            print(f"| {key} | {ms:.2f} |")


if __name__ == "__main__":
    main()
