"""Command line: `python -m ph2_tf train|evaluate|predict|export`.

TensorFlow is imported only once a command runs, so `--help` is fast.
"""

import argparse
import json
import pathlib
import sys

from ph2_tf.profiles import PROFILES

IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg")
OVERLAY_COLOUR = (255, 0, 0)
OVERLAY_ALPHA = 0.4


def _add_data_args(parser):
    parser.add_argument("--data-dir", help="TFDS data directory (default: TFDS's, or the run's)")
    parser.add_argument(
        "--manual-dir", help="PH2 archive contents, used if the TFDS dataset is not prepared yet"
    )


def build_parser():
    """The argument parser of all commands.

    Returns:
        An `argparse.ArgumentParser` with the `train`, `evaluate`, `predict` and `export` commands.
    """
    parser = argparse.ArgumentParser(
        prog="python -m ph2_tf", description="UNet / SegNet lesion segmentation on PH2."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model; writes a run directory")
    train.add_argument("--model", choices=("unet", "segnet"), default="unet")
    train.add_argument("--loss", default="bce", help="loss name from ph2_tf.losses (default bce)")
    train.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    train.add_argument("--epochs", type=int, default=50)
    train.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="small",
        help="image size, width and batch size preset (overridable below)",
    )
    train.add_argument("--image-size", type=int, help="square training size in pixels")
    train.add_argument("--width", type=float, help="filter-count multiplier")
    train.add_argument("--batch-size", type=int, help="global batch size")
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--augment", action="store_true", help="flips, rotations, zoom, colour")
    train.add_argument(
        "--no-deterministic",
        dest="deterministic",
        action="store_false",
        help="do not enable TensorFlow op determinism",
    )
    train.add_argument(
        "--out-dir", help="run directory (default results/<model>_<loss>_lr<lr>_e<epochs>)"
    )
    _add_data_args(train)

    evaluate = commands.add_parser("evaluate", help="metrics of a trained run on a split (JSON)")
    evaluate.add_argument("--run-dir", required=True, help="directory written by `train`")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--batch-size", type=int, default=8)
    evaluate.add_argument("--threshold", type=float, default=0.5)
    evaluate.add_argument(
        "--no-original-resolution",
        dest="original_resolution",
        action="store_false",
        help="skip the metrics at each image's original size",
    )
    evaluate.add_argument("--output", help="JSON file (default <run-dir>/metrics_<split>.json)")
    _add_data_args(evaluate)

    export = commands.add_parser("export", help="SavedModel in TF Serving layout + models.config")
    export.add_argument("--run-dir", required=True, help="directory written by `train`")
    export.add_argument("--base-dir", default="saved_models", help="TF Serving model root")
    export.add_argument("--model-name", help="TF Serving model name (default: the run's model)")
    export.add_argument("--version", type=int, help="version number (default: next free)")
    export.add_argument("--threshold", type=float, default=0.5)
    export.add_argument(
        "--serving-root", help="base-dir as the server sees it in models.config (e.g. /models)"
    )

    predict = commands.add_parser(
        "predict", help="lesion masks and overlays for BMP/PNG/JPEG images"
    )
    predict.add_argument(
        "--saved-model",
        required=True,
        help="SavedModel version directory, or a model directory (latest version is used)",
    )
    predict.add_argument("--output-dir", required=True)
    predict.add_argument("images", nargs="+", help="image files (.bmp, .png, .jpg, .jpeg)")
    return parser


def run_train(args):
    """`train` command: trains and prints the run directory and the best val_jaccard."""
    from ph2_tf import train

    profile = PROFILES[args.profile]
    out_dir = args.out_dir or f"results/{args.model}_{args.loss}_lr{args.lr:g}_e{args.epochs}"
    cfg = train.TrainConfig(
        model=args.model,
        loss=args.loss,
        learning_rate=args.lr,
        epochs=args.epochs,
        image_size=args.image_size or profile.image_size,
        width=args.width or profile.width,
        batch_size=args.batch_size or profile.batch_size,
        weight_decay=args.weight_decay,
        seed=args.seed,
        augment=args.augment,
        data_dir=args.data_dir,
        manual_dir=args.manual_dir,
        out_dir=out_dir,
        deterministic=args.deterministic,
    )
    _, history = train.train(cfg)
    best = max(history.history.get(train.MONITOR, [float("nan")]))
    print(json.dumps({"run_dir": out_dir, "best_" + train.MONITOR: best}))


def run_evaluate(args):
    """`evaluate` command: writes and prints the metrics JSON of a run's best checkpoint."""
    from ph2_tf import evaluate, train

    model, cfg = train.load_trained(args.run_dir)
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


def run_export(args):
    """`export` command: exports a run's best checkpoint and rewrites models.config."""
    from ph2_tf import export, train

    model, cfg = train.load_trained(args.run_dir)
    path = export.export_for_serving(
        model,
        base_dir=args.base_dir,
        model_name=args.model_name or cfg.model,
        version=args.version,
        image_size=cfg.image_size,
        threshold=args.threshold,
    )
    config = export.write_models_config(args.base_dir, serving_root=args.serving_root)
    print(json.dumps({"saved_model": str(path), "models_config": str(config)}))


def _version_dir(saved_model):
    """A SavedModel version directory, or the latest version under a model directory."""
    path = pathlib.Path(saved_model)
    if (path / "saved_model.pb").exists():
        return path
    versions = sorted(
        (p for p in path.glob("*") if p.name.isdigit() and (p / "saved_model.pb").exists()),
        key=lambda p: int(p.name),
    )
    if not versions:
        raise ValueError(f"no SavedModel in {saved_model!r} or in its numbered subdirectories")
    return versions[-1]


def run_predict(args):
    """`predict` command: writes `<stem>_mask.png` and `<stem>_overlay.png` for each image."""
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from ph2_tf.export import INPUT_NAME, SIGNATURE

    for name in args.images:
        if pathlib.Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"unsupported image type {name!r}; expected one of {IMAGE_SUFFIXES}")
    serve = tf.saved_model.load(str(_version_dir(args.saved_model))).signatures[SIGNATURE]
    out_dir = pathlib.Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.images:
        with Image.open(name) as img:
            image = np.asarray(img.convert("RGB"))
        mask = serve(**{INPUT_NAME: tf.constant(image[None])})["mask"].numpy()[0, ..., 0] > 0
        overlay = image.astype(np.float32)
        overlay[mask] = (1 - OVERLAY_ALPHA) * overlay[mask] + OVERLAY_ALPHA * np.array(
            OVERLAY_COLOUR, np.float32
        )
        stem = out_dir / pathlib.Path(name).stem
        Image.fromarray(mask.astype(np.uint8) * 255).save(f"{stem}_mask.png")
        Image.fromarray(overlay.round().astype(np.uint8)).save(f"{stem}_overlay.png")
        print(f"{name}: {mask.mean():.1%} lesion -> {stem}_mask.png, {stem}_overlay.png")


COMMANDS = {
    "train": run_train,
    "evaluate": run_evaluate,
    "export": run_export,
    "predict": run_predict,
}


def main(argv=None):
    """Runs one command.

    Args:
        argv: arguments without the program name (`sys.argv[1:]` when None).

    Returns:
        The process exit status (0).
    """
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    COMMANDS[args.command](args)
    return 0
