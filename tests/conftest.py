"""Shared fixtures: the dummy PH2 dataset prepared once per session, and a subprocess runner."""

import os
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest

import ph2_tf

ph2_tf.use_onednn_kernels()  # Before TensorFlow loads: the kernels the command line runs.

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS_DIR = pathlib.Path(__file__).resolve().parent / "scripts"


@pytest.fixture(scope="session")
def ph2_dummy(tmp_path_factory):
    """The dummy PH2 data (`tfds_ph2.ph2.DUMMY_DATA_DIR`) prepared as TFDS `ph2/original`.

    Returns:
        A namespace with `data_dir` (a fresh TFDS data directory) and `manual_dir` (the dummy
        data), both as strings.
    """
    import tensorflow_datasets as tfds

    import tfds_ph2

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    manual_dir = str(tfds_ph2.ph2.DUMMY_DATA_DIR)
    tfds.builder("ph2/original", data_dir=data_dir).download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
    return types.SimpleNamespace(data_dir=data_dir, manual_dir=manual_dir)


@pytest.fixture(scope="session")
def ph2_real(tmp_path_factory):
    """The real PH2 `original` config, prepared once per session from `PH2_MANUAL_DIR`.

    About a minute on two CPU cores; skips the test when `PH2_MANUAL_DIR` is not set (CI sets it
    to `../shared/ph2`).

    Returns:
        A namespace with `builder` (the prepared TFDS builder), `data_dir` and `manual_dir`.
    """
    if not os.environ.get("PH2_MANUAL_DIR"):
        pytest.skip("PH2_MANUAL_DIR is not set")
    import tensorflow_datasets as tfds

    import tfds_ph2  # noqa: F401  (registers `ph2`)

    manual_dir = pathlib.Path(os.environ["PH2_MANUAL_DIR"]).expanduser().resolve()
    data_dir = tmp_path_factory.mktemp("ph2_data")
    builder = tfds.builder("ph2/original", data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
    return types.SimpleNamespace(
        builder=builder, data_dir=str(data_dir), manual_dir=str(manual_dir)
    )


def subprocess_env(**extra):
    """Environment for a child Python process: CPU only, quiet TensorFlow, the repo importable.

    Args:
        **extra: variables to add or override.

    Returns:
        A dict for `subprocess`'s `env`.
    """
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
        CUDA_VISIBLE_DEVICES="",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run_python(args, *, timeout=300, check=True, env=None, cwd=None):
    """Runs `python <args>` in a child process and returns the completed process.

    Args:
        args: arguments after the interpreter (a script path or `-m module`, then its arguments).
        timeout: seconds before the child is killed.
        check: fail the test (showing the child's output) if the exit status is not 0.
        env: environment (`subprocess_env()` when None).
        cwd: working directory (the repository root when None).

    Returns:
        The `subprocess.CompletedProcess`, with text `stdout` and `stderr`.
    """
    proc = subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env() if env is None else env,
        cwd=str(cwd or REPO_ROOT),
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{args} exited with {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def ph2_prepared(tmp_path_factory):
    """The dummy PH2 data prepared by `python -m ph2_tf prepare` (`original` and `resized_128`,
    tfrecord and array_record), readable with and without TensorFlow.

    Returns:
        The TFDS data directory, as a string.
    """
    import tfds_ph2
    from ph2_tf.data import prepare

    data_dir = str(tmp_path_factory.mktemp("prepared"))
    prepare.prepare(
        data_dir,
        manual_dir=str(tfds_ph2.ph2.DUMMY_DATA_DIR),
        configs=("original", "resized_128"),
    )
    return data_dir


def run_without_tensorflow(args, *, backend="jax", timeout=600, check=True):
    """Runs `python <args>` as on a machine without TensorFlow, on another Keras backend.

    Args:
        args: a script path or `-m module`, then its arguments.
        backend: `KERAS_BACKEND` of the child.
        timeout: seconds before the child is killed.
        check: fail the test if the exit status is not 0 (3: TensorFlow got imported).

    Returns:
        The `subprocess.CompletedProcess`.
    """
    return run_python(
        [SCRIPTS_DIR / "without_tensorflow.py", *args],
        timeout=timeout,
        check=check,
        env=subprocess_env(KERAS_BACKEND=backend),
    )


def constant_model(logit, image_size=32):
    """A tiny UNet whose every pixel gets `logit`: all lesion (> 0) or all background (< 0)."""
    from ph2_tf.models import build_model  # Keras: imported by the tests that need it

    model = build_model("unet", input_shape=(image_size, image_size, 3), width=0.125)
    head = model.layers[-1]
    kernel, bias = head.get_weights()
    head.set_weights([np.zeros_like(kernel), np.full_like(bias, logit)])
    return model
