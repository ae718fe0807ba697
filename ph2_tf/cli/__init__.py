"""Command line: `ph2-seg` (or `python -m ph2_tf`) with one subcommand per stage.

Each command lives in its own module with `add_parser` and `run`. TensorFlow is imported only
once a command that needs it runs, so `--help` is fast, and `train` and `evaluate --run-dir` run
without TensorFlow on another Keras backend (`KERAS_BACKEND=jax`).
"""

import argparse
import sys

from ph2_tf.cli import card, evaluate, export, predict, prepare, soup, train, tune

COMMANDS = {
    "prepare": prepare,
    "train": train,
    "evaluate": evaluate,
    "export": export,
    "soup": soup,
    "predict": predict,
    "card": card,
    "tune": tune,
}


def build_parser(prog="python -m ph2_tf"):
    """The argument parser of all commands.

    Args:
        prog: the program name that usage and error lines show.

    Returns:
        An `argparse.ArgumentParser` with one subcommand per entry of `COMMANDS`.
    """
    parser = argparse.ArgumentParser(
        prog=prog, description="UNet / SegNet lesion segmentation on PH2."
    )
    parser.set_defaults(prog=prog)
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(commands)
    return parser


def main(argv=None, prog="python -m ph2_tf"):
    """Runs one command.

    Args:
        argv: arguments without the program name (`sys.argv[1:]` when None).
        prog: the program name that usage and error lines show.

    Returns:
        The process exit status: the command's, 0 when it returns none.
    """
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    return COMMANDS[args.command].run(args) or 0


def console_main():
    """Entry point of the `ph2-seg` console script."""
    from ph2_tf.cli.environment import set_up_command_line

    set_up_command_line()
    sys.exit(main(prog="ph2-seg"))
