"""The environment the command line sets before any command imports TensorFlow.

Only the `ph2-seg` console script, `python -m ph2_tf` and `tuner_search.py` call
`set_up_command_line`; `ph2_tf.cli.main` called from Python does not, so library users and tests
keep their own environment.
"""

import contextlib
import ctypes
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

import ph2_tf

# An INFO line of absl's C++ logging, e.g. `I0000 00:00:1796168588.042775   18240 port.cc:153] ...`
ABSL_INFO_LINE = re.compile(r"I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ")
# What absl prints before log lines written ahead of its set-up, whatever their level.
ABSL_UNINITIALISED_BANNER = "WARNING: All log messages before absl::InitializeLog() is called"


def set_up_command_line():
    """Sets the command line's TensorFlow environment; call it before TensorFlow is imported.

    The console script and `python -m ph2_tf` call it; `ph2_tf.cli.main` called from Python does
    not, so library users and tests keep their own environment. Variables the user set are kept.

    - `TF_ENABLE_ONEDNN_OPTS=1`: oneDNN kernels on (`ph2_tf.use_onednn_kernels`).
    - `TF_CPP_MIN_LOG_LEVEL`: TensorFlow's C++ INFO and WARNING lines hidden, and where no GPU
      can be used (`cuda_gpus_may_be_used`) its ERROR lines too, since there TensorFlow logs its
      failure to start CUDA (`failed call to cuInit`) as an error on every run. Failures still
      reach the user as Python exceptions and the commands' `error:` lines.
    - The INFO lines TensorFlow prints while its libraries load (oneDNN on, no CUDA driver), before
      it reads `TF_CPP_MIN_LOG_LEVEL`, are dropped (`TensorFlowStartUpInfoFilter`), unless the
      user set that variable.
    """
    ph2_tf.use_onednn_kernels()
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2" if cuda_gpus_may_be_used() else "3"
        sys.meta_path.insert(0, TensorFlowStartUpInfoFilter())


def cuda_gpus_may_be_used():
    """Whether TensorFlow may find a GPU in this process.

    Returns:
        False when `CUDA_VISIBLE_DEVICES` hides every GPU or the CUDA driver does not load.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def is_start_up_info(line):
    """Whether a line on stderr is absl's INFO line or its banner about logging before set-up."""
    return line.startswith(ABSL_UNINITIALISED_BANNER) or ABSL_INFO_LINE.match(line) is not None


class TensorFlowStartUpInfoFilter(importlib.abc.MetaPathFinder):
    """Drops the INFO lines TensorFlow writes to stderr while `import tensorflow` runs.

    TensorFlow's libraries log them as they load, before TensorFlow reads `TF_CPP_MIN_LOG_LEVEL`,
    so no environment variable hides them. This finder takes part in the first import of
    `tensorflow` only: it captures file descriptor 2 while the package runs, then writes back
    every captured line that `is_start_up_info` does not match, or all of them if the import fails.
    """

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # Only the first import, and out of the way of find_spec.
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _StartUpInfoDroppingLoader(spec.loader)
        return spec


class _StartUpInfoDroppingLoader(importlib.abc.Loader):
    """Runs a module with `_start_up_info_dropped`; the module keeps the original loader."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self._loader
        with _start_up_info_dropped():
            self._loader.exec_module(module)


@contextlib.contextmanager
def _start_up_info_dropped():
    """Captures file descriptor 2 and writes back what `is_start_up_info` does not match."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # No stderr to filter.
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(x for x in lines if failed or not is_start_up_info(x)))
            sys.stderr.flush()
