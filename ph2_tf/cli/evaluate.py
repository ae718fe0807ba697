"""`evaluate`: metrics of a trained run, or of an exported model as served."""

import json
import pathlib

from ph2_tf.cli.common import add_data_args, fail


def add_parser(commands):
    """Adds the `evaluate` command to `commands`, the parent parser's subparsers."""
    evaluate = commands.add_parser(
        "evaluate", help="metrics of a trained run, or of an exported model as served (JSON)"
    )
    what = evaluate.add_mutually_exclusive_group(required=True)
    what.add_argument("--run-dir", help="directory written by `train` (its best.keras)")
    what.add_argument(
        "--saved-model",
        help="an exported SavedModel version directory: measures it through its serving "
        "signature on the validation and test splits at original size, and writes "
        "metrics.json beside saved_model.pb (keeping its `source` entry)",
    )
    evaluate.add_argument("--split", default="test", help="split of --run-dir")
    evaluate.add_argument("--batch-size", type=int, default=8)
    evaluate.add_argument("--threshold", type=float, default=0.5)
    evaluate.add_argument(
        "--no-original-resolution",
        dest="original_resolution",
        action="store_false",
        help="skip the metrics at each image's original size",
    )
    evaluate.add_argument("--output", help="JSON file (default <run-dir>/metrics_<split>.json)")
    add_data_args(evaluate)


def run(args):
    """`evaluate` command: writes and prints the metrics JSON of a run's best checkpoint."""
    from ph2_tf.evaluation import evaluate
    from ph2_tf.training.runs import load_trained

    if args.saved_model:
        return _evaluate_saved_model(args)
    model, cfg = load_trained(args.run_dir)
    result = evaluate.evaluate(
        model,
        args.split,
        image_size=cfg.image_size,
        batch_size=args.batch_size,
        threshold=args.threshold,
        original_resolution=args.original_resolution,
        data_dir=args.data_dir or cfg.data_dir,
        manual_dir=args.manual_dir or cfg.manual_dir,
    )
    output = args.output or pathlib.Path(args.run_dir) / f"metrics_{args.split}.json"
    evaluate.write_json(result, output)
    print(json.dumps(result, indent=2, sort_keys=True))


def _evaluate_saved_model(args):
    """`evaluate --saved-model`: writes and prints the version's `metrics.json`."""
    from ph2_tf.serving import publish

    version_dir = pathlib.Path(args.saved_model)
    if not (version_dir / "saved_model.pb").exists():
        return fail(args, f"no saved_model.pb in {version_dir}")
    existing = version_dir / publish.METRICS_FILE
    source = json.loads(existing.read_text()).get("source") if existing.exists() else None
    summary = publish.write_metrics(
        version_dir, source, data_dir=args.data_dir, manual_dir=args.manual_dir
    )
    print(json.dumps(summary, indent=2))
    return 0
