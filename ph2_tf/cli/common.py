"""What the commands share: argument types, data arguments, the one-line error, and the
environment the command line sets before any command imports TensorFlow."""

import argparse
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
# A TF Serving model name that is one plain folder name (`model_name`).
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def probability(text):
    """argparse type: a float strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text} is not strictly between 0 and 1")
    return value


def positive_int(text):
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not an integer >= 1")
    return value


def model_name(text):
    """argparse type: a TF Serving model name, which is also a folder name under the model root:
    letters, digits, `_`, `-` and `.`, starting with a letter or digit, so that what is written
    under it stays inside the root (no `/`, no `..`)."""
    if not MODEL_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a model name (letters, digits, '_', '-' and '.', starting with a "
            "letter or digit)"
        )
    return text


def add_data_args(parser):
    """Adds `--data-dir` and `--manual-dir`, where a command finds PH2."""
    parser.add_argument("--data-dir", help="TFDS data directory (default: TFDS's, or the run's)")
    parser.add_argument(
        "--manual-dir", help="PH2 archive contents, used if the TFDS dataset is not prepared yet"
    )


def fail(args, message, status=2):
    """Prints `<prog> <command>: error: <message>` on stderr and returns `status`.

    Status 2 is for usage and input errors, 1 for a failure during work.
    """
    print(f"{args.prog} {args.command}: error: {message}", file=sys.stderr)
    return status


def fail_on_data(args, error):
    """`fail` for a PH2 data error (`tfds_ph2.ph2`) raised while a command measures a model.

    Missing data is an input error (status 2) shown by the message's first line, which says what
    is missing (the rest are download instructions); unreadable data is a failure (status 1).
    """
    from tfds_ph2.ph2 import Ph2FileNotFoundError

    if isinstance(error, Ph2FileNotFoundError):
        return fail(args, str(error).splitlines()[0])
    return fail(args, error, status=1)


def refuse_unused(args, options, reason):
    """`fail` naming the first of `options` (option string -> parsed value) that was given.

    Args:
        args: the parsed arguments.
        options: `{"--flag": value}`; None or False is "not given".
        reason: why these options cannot be honoured here, e.g. "with --saved-model".

    Returns:
        Status 2 after the error line, or None when none was given.
    """
    for flag, value in options.items():
        if value is not None and value is not False:
            return fail(args, f"{flag} is not used {reason}; drop it")
    return None


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
