"""Training images/s of the full-size UNet and SegNet per batch size and precision, on any backend.

Made for an accelerator (`benchmarks/device/` runs it on a GPU beside the PyTorch peer), but it
runs wherever Keras does. Each combination of model, precision and batch size builds a fresh
model under that Keras dtype policy ('float32' or 'mixed_bfloat16'), compiles it as training
does (AdamW with learning rate 1e-4 and weight decay 0.01, BCE on logits, the segmentation
metrics; `jit_compile` left at Keras' 'auto', which is XLA on accelerators and always under
JAX), makes a random batch on the device, and times `train_on_batch` after warm-up steps (the
first of which traces and compiles the step; its time is the table's "compile s"). Each step
waits for its result (the returned loss is converted to a Python float).

Under JAX each combination is timed a second way, as the PyTorch peer times itself: the compiled
training step (`model.train_function`, the one `fit` runs) is called `--steps` times with the
training state carried from step to step, and the device is waited for once, at the end
(`queued_images_per_second`). `train_on_batch` pays per step what `fit` does not: it gathers
every variable into the state and writes it back, and converts the logs to numpy, which waits
for the device before the next step can be queued. With a step of 10-20 ms on a GPU, that is a
share of the time that the peer, which queues its steps, does not pay. (`ph2_tf.training.train`'s
check for a non-finite loss reads each step's loss, so training waits for each step too, but it does
not gather and write back the variables.)

Under JAX it turns JAX's persistent compilation cache on (`--compile-cache`), so that a second
run skips XLA compilation. It imports no TensorFlow unless TensorFlow is the backend:

    KERAS_BACKEND=jax python benchmarks/gpu_throughput.py --json throughput.json
    KERAS_BACKEND=jax python benchmarks/gpu_throughput.py --image-size 64 --width 0.125 --steps 2

Prints a table and writes a JSON file after each combination (so an interrupted run keeps what
it measured). Exits 1 if a combination failed (e.g. out of memory); the others still run.
"""

import argparse
import datetime
import gc
import json
import math
import os
import pathlib
import platform
import sys
import time
import traceback

# Run as a script from anywhere: the repository root holds ph2_tf, this folder trace_summary.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import keras  # noqa: E402
import trace_summary  # noqa: E402  (beside this file)
from keras import ops  # noqa: E402

from ph2_tf import provenance  # noqa: E402
from ph2_tf.evaluation.metrics import segmentation_metrics  # noqa: E402
from ph2_tf.models import MODEL_NAMES, build_model  # noqa: E402
from ph2_tf.training import accelerators
from ph2_tf.training.losses import get_loss  # noqa: E402

PRECISIONS = ("float32", "mixed_bfloat16")
LEARNING_RATE = 1e-4
WEIGHT_DECAY = 0.01  # PyTorch's AdamW default, as in training (ph2_tf.training.train) and the peer
LOSS = "bce"
LESION_FRACTION = 0.32  # about PH2's share of lesion pixels
# Versions beside provenance.PACKAGES that can change a GPU number.
EXTRA_PACKAGES = (
    "jax-cuda12-plugin",
    "jax-cuda13-plugin",
    "jax-cuda13-pjrt",
    "ml-dtypes",
    "optree",
    "torch",
)


def devices():
    """What the backend computes on: a list of device kinds (e.g. `["NVIDIA H200"]`)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [device.device_kind for device in jax.devices()]
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return ["cpu"]
    return [provenance.device_description()]


def measure(
    model_name,
    precision,
    batch_size,
    image_size,
    width,
    warmup_steps,
    steps,
    seed=0,
    profile_dir=None,
):
    """Train one fresh model on one random batch; return its timings.

    Args:
        model_name: One of `MODEL_NAMES`.
        precision: A Keras dtype policy name, e.g. 'float32' or 'mixed_bfloat16'.
        batch_size: Images per step.
        image_size: Height and width of the square images.
        width: Filter-count multiplier of the model (1.0: the study's model).
        warmup_steps: Untimed steps (at least 1; the first traces and compiles).
        steps: Timed steps.
        seed: Seed of the weights and the batch.
        profile_dir: JAX only: after the timings, trace `steps` more queued steps with the JAX
            profiler into this directory, and write `summary.json` and `summary.md` there
            (`trace_summary.py`). The traced steps are not part of the timings.

    Returns:
        A JSON-serialisable dict: the settings, `params`, `jit_compile` (as Keras resolved it),
        `compile_s` (the first step), `step_ms`, `images_per_second` and the last `loss`.
    """
    previous_policy = keras.config.dtype_policy()
    keras.utils.clear_session(free_memory=True)
    keras.config.set_dtype_policy(precision)
    try:
        keras.utils.set_random_seed(seed)
        model = build_model(model_name, input_shape=(image_size, image_size, 3), width=width)
        model.compile(
            optimizer=keras.optimizers.AdamW(
                learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY
            ),
            loss=get_loss(LOSS),
            metrics=segmentation_metrics(),
        )
        # Made by the backend on its default device: no host-to-device copy in the timed steps.
        images = keras.random.uniform((batch_size, image_size, image_size, 3), seed=seed)
        masks = ops.cast(
            keras.random.uniform((batch_size, image_size, image_size, 1), seed=seed + 1)
            < LESION_FRACTION,
            "float32",
        )

        def step():
            logs = model.train_on_batch(images, masks, return_dict=True)
            return float(logs["loss"])  # waits for the step to finish

        start = time.perf_counter()
        loss = step()
        compile_seconds = time.perf_counter() - start
        for _ in range(warmup_steps - 1):
            step()
        start = time.perf_counter()
        for _ in range(steps):
            loss = step()
        seconds = time.perf_counter() - start
        queued = None
        if keras.backend.backend() == "jax":
            queued_seconds, queued_loss = time_queued_steps(model, images, masks, steps)
            queued = {
                "queued_step_ms": round(1000 * queued_seconds / steps, 3),
                "queued_images_per_second": round(steps * batch_size / queued_seconds, 2),
                "queued_loss": queued_loss,
            }
            if profile_dir:
                profile_queued_steps(model, images, masks, steps, profile_dir)
        return {
            "model": model_name,
            "precision": precision,
            "batch_size": batch_size,
            "image_size": image_size,
            "width": width,
            "params": model.count_params(),
            "jit_compile": model.jit_compile,
            "compile_s": round(compile_seconds, 3),
            "step_ms": round(1000 * seconds / steps, 3),
            "images_per_second": round(steps * batch_size / seconds, 2),
            "loss": loss,
            **(queued or {}),
        }
    finally:
        keras.config.set_dtype_policy(previous_policy)
        model = images = masks = None
        keras.utils.clear_session(free_memory=True)
        gc.collect()


def time_queued_steps(model, images, masks, steps):
    """Seconds for `steps` compiled training steps queued back to back, as `fit` runs them.

    JAX backend only. The state (the model's, the optimizer's and the metrics' variables) is
    carried from step to step as `fit` carries it; only the end waits for the device. The final
    state is written back into the variables, as `fit` does at its end (the compiled step may
    donate the buffers it was given, so the variables must not keep the old ones).

    Args:
        model: a compiled Keras model that has run `train_on_batch` (so its step is compiled).
        images: the batch's images, on the device.
        masks: the batch's masks, on the device.
        steps: how many steps to time.

    Returns:
        `(seconds, loss)`: the wall time of the steps, and the last step's loss.
    """
    import jax

    groups = (
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    )
    state = tuple([v.value for v in group] for group in groups)
    batch = (images, masks, None)  # as train_on_batch passes it: the step compiled once
    logs, state = model.train_function(state, iter([batch]))  # already compiled
    jax.block_until_ready((logs, state))
    start = time.perf_counter()
    for _ in range(steps):
        logs, state = model.train_function(state, iter([batch]))
    jax.block_until_ready((logs, state))
    seconds = time.perf_counter() - start
    for group, values in zip(groups, state, strict=True):
        for variable, value in zip(group, values, strict=True):
            variable.assign(value)
    return seconds, float(logs["loss"])


def profile_queued_steps(model, images, masks, steps, profile_dir):
    """Traces queued steps with the JAX profiler and summarises where their time went."""
    import jax

    profile_dir = pathlib.Path(profile_dir)
    with jax.profiler.trace(str(profile_dir), create_perfetto_trace=True):
        time_queued_steps(model, images, masks, steps)
    events, process_names = trace_summary.load_events(profile_dir)
    summary = trace_summary.summarise(events, process_names)
    (profile_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (profile_dir / "summary.md").write_text("\n".join(trace_summary.render(summary)) + "\n")


def print_row(row):
    xla = row["jit_compile"]
    print(
        f"{row['model']:<8} {row['precision']:<15} {row['batch_size']:>5} "
        f"{row['images_per_second']:>9.1f} {row['step_ms']:>9.2f} {row['compile_s']:>9.1f} "
        f"{xla!s:>5} {row['loss']:>8.4f} {fmt_optional(row.get('queued_images_per_second')):>11}",
        flush=True,
    )


def fmt_optional(value):
    return "-" if value is None else f"{value:.1f}"


HEADER = (
    f"{'model':<8} {'precision':<15} {'batch':>5} {'img/s':>9} {'step ms':>9} {'compile s':>9} "
    f"{'xla':>5} {'loss':>8} {'queued/s':>11}"
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[12, 48])
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=PRECISIONS,
        default=list(PRECISIONS),
        help="Keras dtype policies; the outer loop, in the order given",
    )
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here (rewritten after each one)")
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="MODEL:PRECISION:BATCH",
        help="JAX only: also trace this combination's queued steps (repeatable), e.g. "
        "unet:mixed_bfloat16:12; needs --profile-dir",
    )
    parser.add_argument(
        "--profile-dir", help="traces and their summaries go to <dir>/<model>-<precision>-b<batch>"
    )
    parser.add_argument(
        "--compile-cache",
        default=accelerators.DEFAULT_JAX_CACHE_DIR,
        help="JAX's persistent compilation cache directory (JAX backend only); '' turns it off",
    )
    args = parser.parse_args(argv)
    if args.warmup_steps < 1 or args.steps < 1:
        parser.error("--warmup-steps and --steps must be at least 1")
    if min(args.batch_sizes) < 1 or args.image_size < 8 or args.width <= 0:
        parser.error("batch sizes must be positive, --image-size at least 8, --width positive")
    args.profile_cells = set()
    for cell in args.profile:
        model_name, _, rest = cell.partition(":")
        precision, _, batch = rest.partition(":")
        if model_name not in MODEL_NAMES or precision not in PRECISIONS or not batch.isdigit():
            parser.error(
                f"--profile takes MODEL:PRECISION:BATCH, e.g. unet:float32:12, not {cell!r}"
            )
        args.profile_cells.add((model_name, precision, int(batch)))
    if args.profile_cells and not args.profile_dir:
        parser.error("--profile needs --profile-dir")
    if args.profile_cells and keras.backend.backend() != "jax":
        parser.error(
            f"--profile traces with the JAX profiler; the backend is {keras.backend.backend()}"
        )
    return args


def main(argv=None):
    args = parse_args(argv)
    cache_on = bool(args.compile_cache) and accelerators.enable_jax_compilation_cache(
        args.compile_cache
    )
    started = time.time()
    report = {
        "benchmark": "gpu_throughput",
        "complete": False,
        "argv": sys.argv,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "backend": keras.backend.backend(),
        "devices": devices(),
        "accelerator_count": accelerators.accelerator_count(),
        "compile_cache": accelerators.jax_compilation_cache_dir() if cache_on else None,
        "recipe": {
            "optimizer": f"AdamW(learning_rate={LEARNING_RATE}, weight_decay={WEIGHT_DECAY})",
            "loss": LOSS,
            "metrics": "segmentation_metrics()",
            "jit_compile": "auto",
            "image_size": args.image_size,
            "width": args.width,
            "warmup_steps": args.warmup_steps,
            "steps": args.steps,
            "seed": args.seed,
        },
        "provenance": provenance.collect(),
        "extra_packages": provenance.package_versions(EXTRA_PACKAGES),
        "machine": platform.machine(),
        "results": [],
        "errors": [],
    }

    def save():
        report["elapsed_s"] = round(time.time() - started, 1)
        if args.json:
            path = pathlib.Path(args.json)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(report, indent=1) + "\n")
            os.replace(tmp, path)

    print(
        f"backend={report['backend']} devices={report['devices']} "
        f"keras={keras.__version__} compile_cache={report['compile_cache']} "
        f"size={args.image_size} width={args.width} "
        f"warmup={args.warmup_steps} steps={args.steps}",
        flush=True,
    )
    print(HEADER)
    print("-" * len(HEADER), flush=True)
    save()
    for precision in args.precisions:
        for model_name in args.models:
            for batch_size in args.batch_sizes:
                try:
                    row = measure(
                        model_name,
                        precision,
                        batch_size,
                        args.image_size,
                        args.width,
                        args.warmup_steps,
                        args.steps,
                        args.seed,
                        profile_dir=(
                            pathlib.Path(args.profile_dir)
                            / f"{model_name}-{precision}-b{batch_size}"
                            if (model_name, precision, batch_size) in args.profile_cells
                            else None
                        ),
                    )
                except Exception as error:  # e.g. out of device memory: go on with the others
                    traceback.print_exc()
                    print(f"{model_name} {precision} batch {batch_size} FAILED: {error!r}")
                    report["errors"].append(
                        {
                            "model": model_name,
                            "precision": precision,
                            "batch_size": batch_size,
                            "error": repr(error)[:2000],
                        }
                    )
                else:
                    if not math.isfinite(row["loss"]):
                        print(f"warning: non-finite loss {row['loss']}", flush=True)
                    report["results"].append(row)
                    print_row(row)
                save()
    report["complete"] = True
    save()
    print(f"\nall results ({report['elapsed_s']} s):")
    print(HEADER)
    print("-" * len(HEADER))
    for row in report["results"]:
        print_row(row)
    for error in report["errors"]:
        print(f"{error['model']:<8} {error['precision']:<15} {error['batch_size']:>5} FAILED")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
