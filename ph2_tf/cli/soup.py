"""`soup`: a greedy weight soup of runs fine-tuned from one checkpoint."""

import json
import sys

from ph2_tf.cli.common import add_data_args, fail


def add_parser(commands):
    """Adds the `soup` command to `commands`, the parent parser's subparsers."""
    soup = commands.add_parser(
        "soup",
        help="average the weights of runs fine-tuned from one checkpoint (greedy soup)",
        description="Scores each ingredient and each growing mean of their weights as "
        "`export --if-better` would (through the serving signature on PH2 validation), keeps "
        "the ingredients that do not lower it, best first, and writes the mean as a run "
        "directory for `export`. See ph2_tf/experiments/soup.py.",
    )
    soup.add_argument(
        "ingredients",
        nargs="+",
        metavar="RUN_OR_VERSION_DIR",
        help="run directories written by `train`, or published SavedModel versions",
    )
    soup.add_argument("--out-dir", required=True, help="the soup's run directory (must be new)")
    add_data_args(soup)


def run(args):
    """`soup` command: writes a greedy soup's run directory and prints its summary."""
    from ph2_tf.experiments import soup

    try:
        record = soup.make_soup(
            args.ingredients,
            args.out_dir,
            data_dir=args.data_dir,
            manual_dir=args.manual_dir,
            log=lambda line: print(line, file=sys.stderr),
        )
    except (OSError, ValueError) as error:
        return fail(args, error)
    summary = {key: record[key] for key in ("ingredients", "validation_jaccard")}
    print(json.dumps({"run_dir": args.out_dir, **summary}))
    return 0
