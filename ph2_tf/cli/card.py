"""`card`: regenerates the model card (`README.md`) of each served model from its files."""

import json
import pathlib

from ph2_tf.cli.common import fail, model_name


def add_parser(commands):
    """Adds the `card` command to `commands`, the parent parser's subparsers."""
    card = commands.add_parser(
        "card",
        help="write each model's README.md card from its highest version's files",
        description="Writes <base-dir>/<model>/README.md, the card of the model's highest "
        "version (the one served), from that version's metrics.json, SavedModel and optional "
        "card.json. See ph2_tf/serving/cards.py.",
    )
    card.add_argument("--base-dir", default="saved_models", help="TF Serving model root")
    card.add_argument(
        "--model-name",
        type=model_name,
        help="only this model, a folder name under --base-dir (default: every model there)",
    )


def run(args):
    """`card` command: writes the cards and prints their paths."""
    from ph2_tf.serving import versions

    base_dir = pathlib.Path(args.base_dir)
    if not base_dir.is_dir():
        return fail(args, f"--base-dir {args.base_dir!r} is not a directory")
    candidates = [base_dir / args.model_name] if args.model_name else sorted(base_dir.glob("*"))
    model_dirs = [model_dir for model_dir in candidates if versions.served_versions(model_dir)]
    if not model_dirs:
        if args.model_name:
            return fail(args, f"no SavedModel version under {str(candidates[0])!r}")
        return fail(args, f"no model with a SavedModel version in --base-dir {args.base_dir!r}")
    from ph2_tf.serving import cards  # imports TensorFlow: only once there is work

    try:
        written = [str(cards.write_card(model_dir)) for model_dir in model_dirs]
    except ValueError as error:
        return fail(args, error)
    print(json.dumps({"cards": written}))
    return 0
