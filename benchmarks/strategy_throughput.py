"""Training images/s of `model.fit` under each distribution strategy available on this machine.

Strategies: the default one, `OneDeviceStrategy` on the first device, and `MirroredStrategy` over
all GPUs or, without GPUs, over `--cpu-replicas` logical CPU devices (they share the same cores,
so this measures the strategy's overhead, not a speed-up). The model is built and compiled by
`ph2_tf.training.train.build_and_compile` (AdamW, the loss, the metrics) on random data of the
profile's size; the first `--warmup` steps (tracing) are not timed. Run from the repository root:

    PYTHONPATH=. .venv/bin/python benchmarks/strategy_throughput.py --profile small --model unet
"""

import argparse
import time

# isort: off
import ph2_tf

ph2_tf.use_onednn_kernels()  # Before TensorFlow loads, as the command line does for training.
import tensorflow as tf  # noqa: E402

# isort: on


def configure_devices(cpu_replicas):
    """Splits the CPU into logical devices; must run before TensorFlow initializes its devices."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_replicas)]
    )


def strategies(cpu_replicas):
    """Name -> strategy for this machine."""
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")][:cpu_replicas]
    return {
        "default": tf.distribute.get_strategy(),
        "one_device": tf.distribute.OneDeviceStrategy(devices[0]),
        f"mirrored_{len(devices)}": tf.distribute.MirroredStrategy(devices),
    }


def images_per_second(strategy, cfg, warmup, steps):
    """Mean training images/s of `steps` fit steps after `warmup` untimed ones."""
    from ph2_tf.training import train

    train.set_seeds(cfg.seed, deterministic=False)
    with strategy.scope():
        model = train.build_and_compile(cfg)
    shape = (cfg.batch_size, cfg.image_size, cfg.image_size)
    images = tf.random.uniform((*shape, 3))
    masks = tf.cast(tf.random.uniform((*shape, 1)) > 0.5, tf.float32)
    ds = tf.data.Dataset.from_tensors((images, masks)).repeat()
    model.fit(ds, steps_per_epoch=warmup, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * cfg.batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="small", choices=("small", "full"))
    parser.add_argument("--model", default="unet", choices=("unet", "segnet"))
    parser.add_argument("--cpu-replicas", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    configure_devices(args.cpu_replicas)

    from ph2_tf.training.config import TrainConfig
    from ph2_tf.training.profiles import PROFILES

    profile = PROFILES[args.profile]
    cfg = TrainConfig.from_profile(profile, model=args.model)
    print(f"{args.model}, profile {args.profile}: {profile}, {args.steps} timed steps")
    for name, strategy in strategies(args.cpu_replicas).items():
        rate = images_per_second(strategy, cfg, args.warmup, args.steps)
        print(f"{name:12s} replicas={strategy.num_replicas_in_sync}  {rate:8.2f} images/s")


if __name__ == "__main__":
    main()
