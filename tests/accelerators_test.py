"""Tests of ph2_tf.training.accelerators: counting accelerators, JAX's persistent compilation
cache.
"""

import importlib.util
import json
import textwrap

import keras
import pytest
from conftest import run_python, subprocess_env

from ph2_tf.training import accelerators

needs_jax = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="jax is not installed"
)

# Run in a child process under KERAS_BACKEND=jax, with TensorFlow made unimportable (as on a
# machine without it: `import tensorflow` fails and find_spec returns None). argv[1] is the
# cache directory; prints one JSON line.
_JAX_CHILD = textwrap.dedent(
    """
    import json, os, sys
    sys.modules["tensorflow"] = None

    import jax
    import jax.numpy as jnp

    from ph2_tf.training import accelerators

    enabled = accelerators.enable_jax_compilation_cache(sys.argv[1])

    @jax.jit
    def step(x):
        for i in range(30):
            x = jnp.tanh(x @ x.T + i)
        return x.sum()

    value = float(step(jnp.ones((32, 32))))
    print(json.dumps({
        "enabled": enabled,
        "accelerators": accelerators.accelerator_count(),
        "cache_dir": accelerators.jax_compilation_cache_dir(),
        "config_dir": jax.config.jax_compilation_cache_dir,
        "min_compile_time": jax.config.jax_persistent_cache_min_compile_time_secs,
        "files": sorted(os.listdir(sys.argv[1])),
        "tensorflow_imported": any(
            m.startswith("tensorflow") and v is not None for m, v in sys.modules.items()
        ),
        "value": value,
    }))
    """
)


def _run_jax_child(tmp_path, cache_dir):
    script = tmp_path / "jax_child.py"
    script.write_text(_JAX_CHILD)
    env = subprocess_env(KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    proc = run_python([script, cache_dir], env=env, timeout=180)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_accelerator_count_matches_the_backend_devices():
    count = accelerators.accelerator_count()
    assert isinstance(count, int)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        expected = len(tf.config.list_physical_devices("GPU")) + len(
            tf.config.list_physical_devices("TPU")
        )
        assert count == expected
    elif keras.backend.backend() == "jax":
        import jax

        assert count == sum(d.platform != "cpu" for d in jax.devices())


def test_cache_is_not_enabled_under_other_backends(tmp_path):
    if keras.backend.backend() == "jax":
        pytest.skip("the test suite runs on the JAX backend")
    assert accelerators.enable_jax_compilation_cache(str(tmp_path / "cache")) is False
    assert accelerators.jax_compilation_cache_dir() is None
    assert not (tmp_path / "cache").exists()


@needs_jax
def test_jax_cache_is_written_then_reused_without_tensorflow(tmp_path):
    cache_dir = tmp_path / "nested" / "cache"  # created by enable_jax_compilation_cache
    first = _run_jax_child(tmp_path, cache_dir)
    assert first["enabled"] is True
    assert first["tensorflow_imported"] is False
    assert first["accelerators"] == 0  # JAX_PLATFORMS=cpu
    assert first["cache_dir"] == first["config_dir"] == str(cache_dir)
    assert first["min_compile_time"] == 0.0
    compiled = [name for name in first["files"] if name.startswith("jit_step-")]
    assert compiled, first["files"]

    # A second process finds every program in the cache: nothing new is written.
    second = _run_jax_child(tmp_path, cache_dir)
    assert second["files"] == first["files"]
    assert second["value"] == first["value"]
