"""Where a number came from: code version, packages, backend, device and precision.

Every training record and exported model carries `collect()`'s dict, so that a result can be
traced to the code and the machine that produced it.
"""

import functools
import importlib.metadata
import os
import pathlib
import platform
import subprocess

import keras

# Distributions whose versions can change a result; missing ones are recorded as None.
PACKAGES = (
    "ph2-seg",
    "keras",
    "tensorflow",
    "jax",
    "jaxlib",
    "tensorflow-datasets",
    "keras-tuner",
    "numpy",
    "scikit-image",
    "pillow",
)
_REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _git(*args):
    """Output of a git command in this package's checkout, or None outside one."""
    try:
        proc = subprocess.run(
            ["git", *args], cwd=_REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_state():
    """The checkout's commit and whether tracked files differ from it.

    The environment variables `PH2_GIT_COMMIT` and `PH2_GIT_DIRTY` (`1` or `0`), when set, win
    over git: whoever set them made a copy of the tree (as for the GPU machine of
    `benchmarks/device/`), and a `.git` travelling with such a copy can be older than the code
    beside it. Otherwise git is asked; outside a checkout nothing is known.

    Returns:
        `{"commit": sha or None, "dirty": bool or None}`, plus `"from": "PH2_GIT_COMMIT"` when
        read from the environment; None where nothing is known.
    """
    if os.environ.get("PH2_GIT_COMMIT"):
        dirty = os.environ.get("PH2_GIT_DIRTY")
        return {
            "commit": os.environ["PH2_GIT_COMMIT"],
            "dirty": None if dirty is None else dirty == "1",
            "from": "PH2_GIT_COMMIT",
        }
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    # Untracked files (results, caches) do not change the code that ran.
    return {"commit": commit, "dirty": bool(_git("status", "--porcelain", "--untracked-files=no"))}


def package_versions(names=PACKAGES):
    """Installed versions of the distributions `names` (None for those not installed)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_name():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def device_description():
    """Accelerators the current Keras backend computes on, else the CPU and its core count.

    Returns:
        A short string, e.g. `"1 x NVIDIA H200"` or `"CPU: <model name>, 2 cores"`.
    """
    names = []
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        for device in tf.config.list_physical_devices("GPU"):
            names.append(tf.config.experimental.get_device_details(device).get("device_name"))
    elif keras.backend.backend() == "jax":
        import jax

        names = [d.device_kind for d in jax.devices() if d.platform != "cpu"]
    if names:
        return ", ".join(f"{names.count(n)} x {n}" for n in sorted(set(names)))
    return f"CPU: {_cpu_name()}, {os.cpu_count()} cores"


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN kernels in this process (see `ph2_tf/__init__.py`).

    Returns:
        True or False on the TensorFlow backend; None on other backends, or where TensorFlow
        does not say.
    """
    if keras.backend.backend() != "tensorflow":
        return None
    try:  # TensorFlow's own check of TF_ENABLE_ONEDNN_OPTS and the CPU; not public API.
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def collect():
    """The provenance of a result computed now, in this process.

    Returns:
        A JSON-serialisable dict: `git` (commit, dirty), `packages`, `python`, `backend`,
        `device`, `precision` (the global Keras dtype policy) and `onednn` (TensorFlow's
        oneDNN kernels on or off; None off TensorFlow).
    """
    return {
        "git": git_state(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "backend": keras.backend.backend(),
        "device": device_description(),
        "precision": keras.config.dtype_policy().name,
        "onednn": onednn_enabled(),
    }
