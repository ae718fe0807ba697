"""Distribution: `tf.distribute` strategies on TensorFlow, data parallelism over local JAX devices.

TensorFlow is imported only inside the functions that need it, so that this module also serves
the JAX backend.
"""

import contextlib
import os
import pathlib

import keras

from ph2_tf.training import accelerators

# Keras versions whose private fit internals `adapt_for_multi_worker` patches were checked with.
MULTI_WORKER_PATCH_KERAS = ((3, 0), (3, 16))  # [first, last) major.minor


def get_strategy():
    """Picks the distribution strategy for this machine.

    `MultiWorkerMirroredStrategy` when `TF_CONFIG` is set (checked first: it must be created
    before TensorFlow initializes its devices), `MirroredStrategy` on two or more GPUs, else the
    default (no-op) strategy, which places work on the one GPU if there is one. Not
    `OneDeviceStrategy` there: under any strategy but the default one, Keras'
    `jit_compile="auto"` turns XLA off.

    Returns:
        A `tf.distribute.Strategy`; None on other Keras backends (see `use_local_accelerators`).
    """
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) >= 2:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def strategy_scope(strategy):
    """`strategy.scope()`, or a no-op context for None (non-TensorFlow backends)."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def use_local_accelerators():
    """On JAX with several local accelerators, trains data-parallel over all of them.

    Sets `keras.distribution.DataParallel()` as the global distribution, so call it before
    building the model. One device, the CPU, and the TensorFlow backend (which has
    `get_strategy`) are left alone.

    Returns:
        The number of accelerators used, 0 when none.
    """
    count = accelerators.accelerator_count()
    if keras.backend.backend() == "jax" and count > 1:
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    return count


def adapt_for_multi_worker(model, image_size):
    """Works around two Keras 3 (<= 3.15) bugs with MultiWorkerMirroredStrategy (keras#20585).

    1. Before its first step, `fit`/`evaluate` averages one distributed batch with
       `strategy.reduce` only to learn the input shapes for building the metric, loss and
       optimizer state; MultiWorkerMirroredStrategy cannot reduce an `(x, y)` tuple. Here the
       state is built from the known shapes and that pre-build is turned off for this model.
    2. Each step's logs are averaged over replicas with `strategy.reduce("MEAN", v, axis=0)`,
       which fails on the scalar logs; the train and test steps here return them as shape `(1,)`,
       which that reduction turns back into scalars.

    Both patches touch private Keras methods, so they are applied only to the Keras versions in
    `MULTI_WORKER_PATCH_KERAS`, which the two-worker test ran with; another version is refused
    with an error rather than trained with untested internals.

    Args:
        model: the compiled model, inside the strategy's scope.
        image_size: side of the square training images.

    Raises:
        RuntimeError: the installed Keras is outside `MULTI_WORKER_PATCH_KERAS`.
    """
    import tensorflow as tf

    check_multi_worker_patch_applies()
    shapes = ((None, image_size, image_size, 3), (None, image_size, image_size, 1))
    model._symbolic_build(data_batch=tuple(tf.TensorSpec(shape) for shape in shapes))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None

    def vector_logs(step):
        return lambda batch: tf.nest.map_structure(lambda v: tf.reshape(v, [1]), step(batch))

    model.train_step = vector_logs(model.train_step)
    model.test_step = vector_logs(model.test_step)


def check_multi_worker_patch_applies(version=None):
    """Raises unless `version` (the installed Keras by default) is one the patch was tested with.

    Args:
        version: a Keras version string such as `"3.15.1"`.

    Raises:
        RuntimeError: naming the version and the tested range.
    """
    version = version or keras.__version__
    major_minor = tuple(int(part) for part in version.split(".")[:2])
    first, last = MULTI_WORKER_PATCH_KERAS
    if not first <= major_minor < last:
        raise RuntimeError(
            f"MultiWorkerMirroredStrategy needs a workaround of private Keras internals that was "
            f"tested with Keras >= {first[0]}.{first[1]}, < {last[0]}.{last[1]}; installed: "
            f"{version}. Recheck keras#20585 and tests/multiworker_test.py, then widen "
            "ph2_tf.training.train.MULTI_WORKER_PATCH_KERAS."
        )


def worker_out_dir(out_dir, strategy):
    """Directory a worker writes to: `out_dir` for the chief, a per-worker subdirectory otherwise.

    Under `MultiWorkerMirroredStrategy` every worker runs the callbacks; only the chief (task 0
    of type `chief`, or `worker` 0 without a chief) writes to `out_dir`.

    Args:
        out_dir: the run's output directory.
        strategy: the strategy in use.

    Returns:
        A `pathlib.Path`.
    """
    out_dir = pathlib.Path(out_dir)
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return out_dir
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return out_dir
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    if task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief):
        return out_dir
    return out_dir / f"{task_type}_{task_id}"
