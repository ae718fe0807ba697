"""Training throughput (images/s) of UNet and SegNet on random data, for each profile.

Compiles each model as training does (AdamW, a named loss, the segmentation metrics), runs a
few warm-up steps (the first one traces and compiles the step), then times `train_on_batch`.
Prints a table. Run from the repository root:

    python -m benchmarks.train_throughput
    python -m benchmarks.train_throughput --profiles small --models segnet --steps 10

Numbers depend on the machine and on what else runs on it.
"""

import argparse
import platform
import time

import numpy as np

# isort: off
import ph2_tf

ph2_tf.use_onednn_kernels()  # Before TensorFlow (keras imports it), as the command line does.
import keras  # noqa: E402

# isort: on
from ph2_tf.evaluation.metrics import segmentation_metrics  # noqa: E402
from ph2_tf.models import MODEL_NAMES, build_model  # noqa: E402
from ph2_tf.training.losses import get_loss, num_classes_for  # noqa: E402
from ph2_tf.training.profiles import PROFILES  # noqa: E402

WARMUP_STEPS = 2
TIMED_STEPS = 3
LOSS = "bce"
JIT_CHOICES = {"auto": "auto", "true": True, "false": False}


def measure(model_name, profile, loss, warmup_steps, timed_steps, jit_compile, seed=0):
    """Time training steps; return (images/s, parameter count, resolved jit_compile).

    Args:
        model_name: One of `MODEL_NAMES`.
        profile: A `ph2_tf.training.profiles.Profile` (image size, width, batch size).
        loss: A loss name of `ph2_tf.training.losses.LOSS_NAMES`.
        warmup_steps: Untimed steps first (at least 1: the first step compiles).
        timed_steps: Timed steps.
        jit_compile: Passed to `model.compile`: True, False or 'auto' (Keras: XLA only on GPU).
        seed: Seed of the weights and the random batch.
    """
    keras.utils.set_random_seed(seed)
    size, batch = profile.image_size, profile.batch_size
    model = build_model(
        model_name,
        input_shape=(size, size, 3),
        width=profile.width,
        num_classes=num_classes_for(loss),
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4),
        loss=get_loss(loss),
        metrics=segmentation_metrics(),
        jit_compile=jit_compile,
    )
    rng = np.random.default_rng(seed)
    images = rng.random((batch, size, size, 3), dtype="float32")
    masks = (rng.random((batch, size, size, 1)) < 0.32).astype("float32")
    for _ in range(warmup_steps):
        model.train_on_batch(images, masks)
    start = time.perf_counter()
    for _ in range(timed_steps):
        model.train_on_batch(images, masks)
    seconds = time.perf_counter() - start
    return timed_steps * batch / seconds, model.count_params(), model.jit_compile


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    parser.add_argument("--profiles", nargs="+", choices=list(PROFILES), default=list(PROFILES))
    parser.add_argument("--loss", default=LOSS)
    parser.add_argument("--warmup-steps", type=int, default=WARMUP_STEPS)
    parser.add_argument("--steps", type=int, default=TIMED_STEPS)
    parser.add_argument("--jit-compile", choices=list(JIT_CHOICES), default="auto")
    args = parser.parse_args()
    if args.warmup_steps < 1 or args.steps < 1:
        parser.error("--warmup-steps and --steps must be at least 1")

    print(
        f"backend={keras.backend.backend()} keras={keras.__version__} "
        f"machine={platform.machine()} loss={args.loss} jit_compile={args.jit_compile} "
        f"warmup={args.warmup_steps} steps={args.steps}"
    )
    header = (
        f"{'model':<8} {'profile':<8} {'size':>5} {'width':>6} {'batch':>6} "
        f"{'params':>12} {'xla':>5} {'img/s':>9}"
    )
    print(header)
    print("-" * len(header))
    for profile_name in args.profiles:
        profile = PROFILES[profile_name]
        for model_name in args.models:
            images_per_second, params, xla = measure(
                model_name,
                profile,
                args.loss,
                args.warmup_steps,
                args.steps,
                JIT_CHOICES[args.jit_compile],
            )
            print(
                f"{model_name:<8} {profile_name:<8} {profile.image_size:>5} {profile.width:>6} "
                f"{profile.batch_size:>6} {params:>12,} {xla!s:>5} {images_per_second:>9.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
