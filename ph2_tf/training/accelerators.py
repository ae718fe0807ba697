"""Accelerators and compilation caches of the current Keras backend.

Nothing here imports TensorFlow unless TensorFlow is the Keras backend, so that the JAX backend
can run without TensorFlow installed (as on the GPU machine of `benchmarks/device/`).
"""

import os

import keras

# Where `enable_jax_compilation_cache` keeps compiled XLA programs when given no directory.
DEFAULT_JAX_CACHE_DIR = "~/.cache/ph2-seg/jax"


def accelerator_count():
    """Number of accelerators (GPUs, TPUs) that the current Keras backend computes on.

    Returns:
        0 on a CPU-only machine. Under JAX, the non-CPU devices of `jax.devices()`; under
        TensorFlow, the physical GPU and TPU devices; under PyTorch, the CUDA devices; 0 under
        other backends.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return sum(device.platform != "cpu" for device in jax.devices())
    if backend == "tensorflow":
        import tensorflow as tf

        return sum(
            device.device_type in ("GPU", "TPU") for device in tf.config.list_physical_devices()
        )
    if backend == "torch":
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    return 0


def enable_jax_compilation_cache(directory=None, min_compile_time_secs=0.0):
    """Keep JAX's compiled XLA programs on disk, so that a later process reuses them.

    Does nothing unless JAX is the Keras backend. Call it before the first compilation that
    should be cached (e.g. right after importing Keras); programs compiled before are not
    written. Under JAX's defaults the same directory also keeps XLA's GPU autotuning results.

    The cache is trusted code: do not point it at a directory that others can write to.

    Args:
        directory: Cache directory, created if missing; `~` is expanded. None:
            `DEFAULT_JAX_CACHE_DIR`.
        min_compile_time_secs: Programs that compiled faster than this are not written
            (JAX's own default is 1 second; 0 writes every program).

    Returns:
        True if the cache is now on, False if the backend is not JAX or JAX's compilation cache
        is switched off (`jax_enable_compilation_cache`).
    """
    if keras.backend.backend() != "jax":
        return False
    import jax

    if not jax.config.jax_enable_compilation_cache:
        return False
    directory = os.path.abspath(os.path.expanduser(directory or DEFAULT_JAX_CACHE_DIR))
    os.makedirs(directory, exist_ok=True)
    previous = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    if previous and previous != directory:
        # A cache opened on the previous directory stays in use until it is reset.
        from jax.experimental.compilation_cache import compilation_cache

        compilation_cache.reset_cache()
    return True


def jax_compilation_cache_dir():
    """The directory JAX's persistent compilation cache writes to, or None when it is off.

    Returns:
        An absolute path, or None when the backend is not JAX or no directory is set.
    """
    if keras.backend.backend() != "jax":
        return None
    import jax

    if not jax.config.jax_enable_compilation_cache:
        return None
    return jax.config.jax_compilation_cache_dir or None
