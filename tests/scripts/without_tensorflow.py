"""Runs a Python script or module as on a machine where TensorFlow is not installed.

Usage: python without_tensorflow.py (-m MODULE | SCRIPT) [ARGS...]

TensorFlow is made unfindable: `importlib.util.find_spec("tensorflow")` returns None and
`import tensorflow` raises ModuleNotFoundError, which is what libraries that probe for it
(etils, TFDS, Keras) see on such a machine. Exits with status 3 if TensorFlow was imported
anyway, e.g. from a module cached before this ran.
"""

import importlib.machinery
import os
import runpy
import sys


class WithoutTensorFlow(importlib.machinery.PathFinder):
    """The standard path finder, blind to `tensorflow` and its submodules."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] == "tensorflow":
            return None
        return super().find_spec(name, path, target)


def main(args):
    sys.meta_path[:] = [
        WithoutTensorFlow if finder is importlib.machinery.PathFinder else finder
        for finder in sys.meta_path
    ]
    try:
        if args[0] == "-m":
            sys.argv = [args[1], *args[2:]]
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(args)
            runpy.run_path(args[0], run_name="__main__")
    finally:
        if "tensorflow" in sys.modules:
            print("without_tensorflow.py: TensorFlow was imported", file=sys.stderr, flush=True)
            os._exit(3)


if __name__ == "__main__":
    main(sys.argv[1:])
