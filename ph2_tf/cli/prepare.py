"""`prepare`: the TFDS `ph2` configs, for `tfds.load` and for reading without TensorFlow."""

import pathlib

from ph2_tf.cli.common import fail


def add_parser(commands):
    """Adds the `prepare` command to `commands`, the parent parser's subparsers."""
    prepare = commands.add_parser(
        "prepare",
        help="prepare the TFDS ph2 configs for tfds.load and for reading without TensorFlow",
        description="Prepares each config in TFDS's tfrecord format (read by tfds.load) and "
        "adds array_record files (read by tfds.data_source, ph2_tf.data.sources, without "
        "TensorFlow). Configs already complete are skipped.",
    )
    prepare.add_argument("--data-dir", help="TFDS data directory (default: TFDS's)")
    prepare.add_argument(
        "--manual-dir",
        help="PH2 archive contents (default: TFDS's manual dir, then $PH2_MANUAL_DIR)",
    )
    prepare.add_argument(
        "--configs",
        nargs="+",
        choices=("original", "resized_256", "resized_128"),
        default=("original", "resized_256", "resized_128"),
        help="ph2 configs to prepare (default: all)",
    )


def run(args):
    """`prepare` command: prepares `ph2` configs for `tfds.load` and for `ph2_tf.data.sources`.

    An interrupted run leaves each config either prepared or ignored by readers (TFDS writes into
    `incomplete.*` folders, the array_record files under `.incomplete` names); running it again
    completes what is missing.

    Returns:
        0; 2 when PH2 data is needed but not found or a directory argument is a file; 1 when the
        PH2 data is unreadable or a prepared dataset cannot be completed or written.
    """
    for option, path in (("--data-dir", args.data_dir), ("--manual-dir", args.manual_dir)):
        if path is not None and pathlib.Path(path).exists() and not pathlib.Path(path).is_dir():
            return fail(args, f"{option} {path} exists and is not a directory")

    from ph2_tf.data import prepare
    from tfds_ph2.ph2 import Ph2DataError, Ph2FileNotFoundError

    try:
        prepare.prepare(args.data_dir, args.manual_dir, args.configs)
    except Ph2FileNotFoundError as e:
        # The first line says what is missing; the rest are the download instructions.
        return fail(args, str(e).splitlines()[0])
    except (Ph2DataError, prepare.PrepareError) as e:
        return fail(args, e, status=1)
    except OSError as e:  # a data directory that cannot be written: full, or not ours
        return fail(args, f"cannot write the prepared data: {e}", status=1)
    return 0
