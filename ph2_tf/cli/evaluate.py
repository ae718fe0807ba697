"""`evaluate`: metrics of a trained run, or of an exported model as served."""

import json
import pathlib
import sys

from ph2_tf.cli.common import (
    add_data_args,
    fail,
    fail_on_data,
    positive_int,
    probability,
    refuse_unused,
)

# The PH2 splits (`tfds_ph2.ph2.ph2_dataset_builder.SPLIT_NAMES`), spelled out so that `--help`
# does not import TensorFlow Datasets.
SPLITS = ("train", "validation", "test")


def add_parser(commands):
    """Adds the `evaluate` command to `commands`, the parent parser's subparsers."""
    evaluate = commands.add_parser(
        "evaluate",
        help="metrics of a trained run, or of an exported model as served (JSON)",
        description="Prints the metrics as JSON and writes them to a file: --output, or by "
        "default <run-dir>/metrics_<split>.json for a run. An exported model's metrics are "
        "written into its published metrics.json only with --update-metrics.",
    )
    what = evaluate.add_mutually_exclusive_group(required=True)
    what.add_argument("--run-dir", help="directory written by `train` (its best.keras)")
    what.add_argument(
        "--saved-model",
        help="an exported SavedModel version directory, or a model directory (its highest "
        "version): measured through its serving signature on the validation and test splits at "
        "original size",
    )
    run_options = evaluate.add_argument_group("with --run-dir")
    run_options.add_argument("--split", choices=SPLITS, help="split to score (default test)")
    run_options.add_argument("--batch-size", type=positive_int, help="default 8")
    run_options.add_argument(
        "--threshold", type=probability, help="mask threshold, in (0, 1) (default 0.5)"
    )
    run_options.add_argument(
        "--no-original-resolution",
        dest="skip_original_resolution",
        action="store_true",
        help="skip the metrics at each image's original size",
    )
    saved_model_options = evaluate.add_argument_group("with --saved-model")
    saved_model_options.add_argument(
        "--update-metrics",
        action="store_true",
        help="rewrite the version's metrics.json with the new measurement (keeping its `source` "
        "entry), atomically, and the model's card if it is the highest version",
    )
    evaluate.add_argument(
        "--output",
        help="JSON file to write (default with --run-dir: <run-dir>/metrics_<split>.json; with "
        "--saved-model: none)",
    )
    add_data_args(evaluate)


def run(args):
    """`evaluate` command: prints the metrics JSON and writes it where asked.

    Returns:
        0; 2 for an option the chosen mode cannot honour, an unusable run directory or
        SavedModel, or missing PH2 data; 1 when the PH2 data cannot be read.
    """
    output = pathlib.Path(args.output) if args.output else None
    if output is not None and output.is_dir():
        return fail(args, f"--output {output} is a directory; give a file name")
    if args.saved_model:
        return _evaluate_saved_model(args, output)
    refused = refuse_unused(args, {"--update-metrics": args.update_metrics}, "with --run-dir")
    if refused:
        return refused

    from ph2_tf.evaluation import evaluate
    from ph2_tf.training.runs import RunDirError, load_trained
    from tfds_ph2.ph2 import Ph2DataError, Ph2FileNotFoundError

    split = args.split or "test"
    try:
        model, cfg = load_trained(args.run_dir)
    except RunDirError as error:
        return fail(args, error)
    try:
        result = evaluate.evaluate(
            model,
            split,
            image_size=cfg.image_size,
            batch_size=8 if args.batch_size is None else args.batch_size,
            threshold=0.5 if args.threshold is None else args.threshold,
            original_resolution=not args.skip_original_resolution,
            data_dir=args.data_dir or cfg.data_dir,
            manual_dir=args.manual_dir or cfg.manual_dir,
        )
    except (Ph2DataError, Ph2FileNotFoundError) as error:
        return fail_on_data(args, error)
    evaluate.write_json(result, output or pathlib.Path(args.run_dir) / f"metrics_{split}.json")
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _evaluate_saved_model(args, output):
    """`evaluate --saved-model`: measures a version as served; writes where asked."""
    refused = refuse_unused(
        args,
        {
            "--split": args.split,
            "--batch-size": args.batch_size,
            "--threshold": args.threshold,
            "--no-original-resolution": args.skip_original_resolution,
        },
        "with --saved-model, which measures the validation and test splits one image at a "
        "time at original size, with the threshold the model was exported with",
    )
    if refused:
        return refused

    from ph2_tf import files
    from ph2_tf.evaluation import evaluate
    from ph2_tf.serving import publish, versions

    try:
        version_dir = versions.resolve(args.saved_model)
        source = publish.read_metrics(version_dir).get("source")
    except ValueError as error:
        return fail(args, error)
    print(f"evaluate: measuring the SavedModel in {version_dir.absolute()}", file=sys.stderr)

    from ph2_tf.serving import cards
    from tfds_ph2.ph2 import Ph2DataError, Ph2FileNotFoundError

    try:
        summary = publish.metrics_summary(
            version_dir, source, data_dir=args.data_dir, manual_dir=args.manual_dir
        )
    except (Ph2DataError, Ph2FileNotFoundError) as error:
        return fail_on_data(args, error)
    except ValueError as error:  # a damaged SavedModel, or one without its signature
        return fail(args, error)
    if output is not None:
        evaluate.write_json(summary, output)
    if args.update_metrics:
        files.write_json(version_dir / publish.METRICS_FILE, summary)
        served = versions.served_versions(version_dir.parent)
        if served and served[-1].resolve() == version_dir.resolve():  # the card describes it
            try:
                cards.write_card(version_dir.parent)
            except ValueError as error:  # a damaged card.json: metrics.json is written
                return fail(args, f"metrics.json written, but not the card: {error}", status=1)
    print(json.dumps(summary, indent=2))
    return 0
