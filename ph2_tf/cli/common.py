"""What the commands share: argument types, data arguments and the one-line error."""

import argparse
import sys


def probability(text):
    """argparse type: a float strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not strictly between 0 and 1")
    return value


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
