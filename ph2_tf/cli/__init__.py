"""Command line: `python -m ph2_tf prepare|train|evaluate|predict|export|soup`.

TensorFlow is imported only once a command that needs it runs, so `--help` is fast, and `train`
and `evaluate --run-dir` run without TensorFlow on another Keras backend (`KERAS_BACKEND=jax`).
`prepare`, `export`, `soup`, `predict` and `evaluate --saved-model` need TensorFlow.
"""

import argparse
import dataclasses
import json
import pathlib
import shutil
import sys

from ph2_tf.data.augmentation import AUGMENTATIONS
from ph2_tf.serving import versions
from ph2_tf.training.profiles import PROFILES

# Files `predict` takes from a folder (compared lower-case); files named explicitly are all read.
IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
# What `predict` appends to an input's file name, suffix included: `a.jpg` -> `a.jpg.mask.png`.
OUTPUT_SUFFIXES = {
    "mask": ".mask.png",
    "overlay": ".overlay.png",
    "probabilities": ".probabilities.png",
}
OVERLAY_COLOUR = (255, 0, 0)
OVERLAY_ALPHA = 0.4


def _probability(text):
    """argparse type: a float strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not strictly between 0 and 1")
    return value


def _add_data_args(parser):
    parser.add_argument("--data-dir", help="TFDS data directory (default: TFDS's, or the run's)")
    parser.add_argument(
        "--manual-dir", help="PH2 archive contents, used if the TFDS dataset is not prepared yet"
    )


def build_parser():
    """The argument parser of all commands.

    Returns:
        An `argparse.ArgumentParser` with the `prepare`, `train`, `evaluate`, `predict`,
        `export` and `soup` commands.
    """
    parser = argparse.ArgumentParser(
        prog="python -m ph2_tf", description="UNet / SegNet lesion segmentation on PH2."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model; writes a run directory")
    train.add_argument("--model", choices=("unet", "segnet"), default="unet")
    train.add_argument(
        "--loss", default="bce", help="loss name from ph2_tf.training.losses (default bce)"
    )
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
    train.add_argument(
        "--augment",
        nargs="?",
        const="all",
        default="none",
        choices=tuple(AUGMENTATIONS),
        help="training augmentation preset (default none; --augment alone: all); see "
        "ph2_tf/data/augmentation.py and results/augmentation/",
    )
    train.add_argument(
        "--colour-constancy",
        action="store_true",
        help="start the model with shades-of-grey colour normalisation (also when served)",
    )
    train.add_argument(
        "--jit-compile",
        action=argparse.BooleanOptionalAction,
        help="compile the training step with XLA, or not (default: Keras' auto, which is XLA "
        "under JAX, and under TensorFlow on GPUs without op determinism)",
    )
    train.add_argument(
        "--precision",
        default="float32",
        help="Keras dtype policy: float32 (the study's) or mixed_bfloat16",
    )
    train.add_argument(
        "--no-deterministic",
        dest="deterministic",
        action="store_false",
        help="do not enable TensorFlow op determinism",
    )
    train.add_argument(
        "--init-from",
        help="start from the weights of this .keras file (another run's best.keras, same "
        "model) and train --epochs more, with a fresh optimizer",
    )
    train.add_argument(
        "--ema-momentum",
        type=float,
        help="validate, checkpoint and finish with a moving average of the weights that "
        "each step updates with this momentum (e.g. 0.99); default: no averaging",
    )
    train.add_argument(
        "--out-dir", help="run directory (default results/<model>_<loss>_lr<lr>_e<epochs>)"
    )
    _add_data_args(train)

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
    _add_data_args(evaluate)

    export = commands.add_parser("export", help="SavedModel in TF Serving layout + models.config")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-dir", help="directory written by `train`")
    source.add_argument(
        "--from-saved-model",
        help="a published version directory (with its metrics.json) to export again, with "
        "today's serving graph, as a new version; writes the new version's metrics.json "
        "(needs the dataset: --data-dir, --manual-dir)",
    )
    export.add_argument("--base-dir", default="saved_models", help="TF Serving model root")
    export.add_argument("--model-name", help="TF Serving model name (default: the run's model)")
    export.add_argument("--version", type=int, help="version number (default: next free)")
    export.add_argument("--threshold", type=float, default=0.5)
    export.add_argument(
        "--largest-component",
        action="store_true",
        help="in both signatures' `mask`, keep only the largest lesion and fill its holes, "
        "inside the graph (ph2_tf.serving.postprocessing; `probabilities` stay the model's)",
    )
    export.add_argument(
        "--serving-root", help="base-dir as the server sees it in models.config (e.g. /models)"
    )
    export.add_argument(
        "--if-better",
        action="store_true",
        help="publish as the next version only if it beats the served (highest) version, both "
        "measured through their serving signature on the validation split (with "
        "--from-saved-model: the same weights in another serving graph); writes "
        "metrics.json (needs the dataset: --data-dir, --manual-dir)",
    )
    _add_data_args(export)

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
    _add_data_args(soup)

    predict = commands.add_parser(
        "predict",
        help="lesion masks and overlays for image files and folders",
        description="Writes <name>.mask.png and <name>.overlay.png for each input image, e.g. "
        "a.jpg.mask.png for a.jpg. Inputs that cannot be read are reported and skipped; the "
        "exit status is 1 when any input failed.",
    )
    predict.add_argument(
        "--saved-model",
        required=True,
        help="SavedModel version directory, or a model directory (latest version is used)",
    )
    predict.add_argument(
        "--output-dir",
        required=True,
        help="where the outputs go; a folder input's tree is mirrored below it",
    )
    predict.add_argument(
        "--threshold",
        type=_probability,
        help="probability at or above which a pixel is lesion, in (0, 1), applied to the "
        "`probabilities` output, followed by the post-processing the model was exported with "
        "(default: the signature's `mask`)",
    )
    predict.add_argument(
        "--probabilities",
        action="store_true",
        help="also write <name>.probabilities.png, 16-bit: round(probability * 65535)",
    )
    predict.add_argument(
        "--flip-tta",
        action="store_true",
        help="average over the image and its two flips (the serving_flip_tta signature; about "
        "3x the time; see results/postprocessing/)",
    )
    predict.add_argument(
        "--largest-component",
        action="store_true",
        help="keep only the largest lesion in the mask and fill its holes (after the "
        "threshold; ph2_tf.serving.postprocessing; see results/postprocessing/); models exported "
        "with `export --largest-component` do it already",
    )
    predict.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGE_OR_FOLDER",
        help="image files (any format Pillow reads) and folders, searched recursively for "
        + ", ".join(IMAGE_SUFFIXES),
    )

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
    return parser


def run_train(args):
    """`train` command: trains and prints the run directory and the best val_jaccard.

    Returns:
        0; 2 for invalid arguments (checked before any data is read or file written); 1 when
        training diverged (non-finite loss or weights).
    """
    from ph2_tf.training import train
    from ph2_tf.training.callbacks import TrainingDivergedError
    from ph2_tf.training.config import TrainConfig
    from ph2_tf.training.runs import BEST_MODEL_FILE, MONITOR

    profile = PROFILES[args.profile]

    def chosen(value, default):
        # `is None`, not `or`: an explicit 0 must be refused, not replaced by the profile's value.
        return default if value is None else value

    out_dir = args.out_dir or f"results/{args.model}_{args.loss}_lr{args.lr:g}_e{args.epochs}"
    try:
        cfg = TrainConfig(
            model=args.model,
            loss=args.loss,
            learning_rate=args.lr,
            epochs=args.epochs,
            image_size=chosen(args.image_size, profile.image_size),
            width=chosen(args.width, profile.width),
            batch_size=chosen(args.batch_size, profile.batch_size),
            weight_decay=args.weight_decay,
            seed=args.seed,
            augment=args.augment,
            colour_constancy=args.colour_constancy,
            data_dir=args.data_dir,
            manual_dir=args.manual_dir,
            out_dir=out_dir,
            deterministic=args.deterministic,
            precision=args.precision,
            jit_compile=args.jit_compile,
            init_from=args.init_from,
            ema_momentum=args.ema_momentum,
        )
    except ValueError as e:
        print(f"python -m ph2_tf train: error: {e}", file=sys.stderr)
        return 2
    try:
        _, history = train.train(cfg)
    except TrainingDivergedError as e:
        kept = pathlib.Path(out_dir) / BEST_MODEL_FILE
        print(
            f"python -m ph2_tf train: training diverged: {e}. "
            + (f"{kept} holds the best earlier epoch." if kept.exists() else "No model saved."),
            file=sys.stderr,
        )
        return 1
    best = max(history[MONITOR])
    print(json.dumps({"run_dir": out_dir, "best_" + MONITOR: best}))
    return 0


def run_evaluate(args):
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
        print(
            f"python -m ph2_tf evaluate: error: no saved_model.pb in {version_dir}", file=sys.stderr
        )
        return 2
    existing = version_dir / publish.METRICS_FILE
    source = json.loads(existing.read_text()).get("source") if existing.exists() else None
    summary = publish.write_metrics(
        version_dir, source, data_dir=args.data_dir, manual_dir=args.manual_dir
    )
    print(json.dumps(summary, indent=2))
    return 0


def run_export(args):
    """`export` command: exports a run's best checkpoint and rewrites models.config."""
    from ph2_tf.experiments import soup
    from ph2_tf.serving import export, publish
    from ph2_tf.training.runs import load_trained

    if args.if_better and args.version is not None:
        print("python -m ph2_tf export: error: --if-better picks the version itself; drop "
              f"--version {args.version}", file=sys.stderr)  # fmt: skip
        return 2
    if args.from_saved_model:
        return _export_again(args)
    model, cfg = load_trained(args.run_dir)
    common = dict(
        base_dir=args.base_dir,
        model_name=args.model_name or cfg.model,
        image_size=cfg.image_size,
        threshold=args.threshold,
        largest_component=args.largest_component,
    )
    if args.if_better:
        source = {"name": pathlib.Path(args.run_dir).name, "config": dataclasses.asdict(cfg)}
        soup_record = pathlib.Path(args.run_dir) / soup.SOUP_FILE
        if soup_record.exists():
            source["soup"] = json.loads(soup_record.read_text())
        path = publish.publish(
            model,
            source={**source, "serving": _serving_options(args)},
            data_dir=args.data_dir or cfg.data_dir,
            manual_dir=args.manual_dir or cfg.manual_dir,
            **common,
        )
        print(json.dumps({"saved_model": None if path is None else str(path)}))
        return 0
    path = export.export_for_serving(model, version=args.version, **common)
    config = export.write_models_config(args.base_dir, serving_root=args.serving_root)
    print(json.dumps({"saved_model": str(path), "models_config": str(config)}))


def run_soup(args):
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
        print(f"python -m ph2_tf soup: error: {error}", file=sys.stderr)
        return 2
    summary = {key: record[key] for key in ("ingredients", "validation_jaccard")}
    print(json.dumps({"run_dir": args.out_dir, **summary}))
    return 0


def _serving_options(args):
    """What the exported graph does after the model, as recorded in `metrics.json`."""
    return {"threshold": args.threshold, "largest_component": args.largest_component}


def _export_again(args):
    """`export --from-saved-model`: a published version, exported anew as the next version."""
    from ph2_tf.serving import export, publish

    version_dir = pathlib.Path(args.from_saved_model)
    try:
        model, source = publish.load_published_model(version_dir)
    except (OSError, ValueError) as error:
        print(f"python -m ph2_tf export: error: {error}", file=sys.stderr)
        return 2
    source = {**source, "exported_again_from": str(version_dir), "serving": _serving_options(args)}
    common = dict(
        base_dir=args.base_dir,
        model_name=args.model_name or version_dir.resolve().parent.name,
        image_size=source["config"]["image_size"],
        threshold=args.threshold,
        largest_component=args.largest_component,
    )
    data = dict(
        data_dir=args.data_dir or source["config"].get("data_dir"),
        manual_dir=args.manual_dir or source["config"].get("manual_dir"),
    )
    if args.if_better:
        path = publish.publish(model, source=source, **common, **data)
        print(json.dumps({"saved_model": None if path is None else str(path)}))
        return 0
    path = export.export_for_serving(model, version=args.version, **common)
    try:
        publish.write_metrics(path, source, **data)
    except BaseException:
        shutil.rmtree(path)  # a version without its metrics would be served unmeasured
        raise
    config = export.write_models_config(args.base_dir, serving_root=args.serving_root)
    print(json.dumps({"saved_model": str(path), "models_config": str(config)}))
    return 0


def _output_path(stem, kind):
    """The output of one kind (a key of `OUTPUT_SUFFIXES`): `out/a.jpg` -> `out/a.jpg.mask.png`."""
    return stem.with_name(stem.name + OUTPUT_SUFFIXES[kind])


def _plan_outputs(inputs, out_dir):
    """Pairs each input image with the output stem its outputs are named after.

    A file goes to `<out_dir>/<its name>`; an image found in a folder to `<out_dir>/<its path
    relative to that folder>`. The same file named twice is predicted once.

    Args:
        inputs: file and folder paths as given on the command line.
        out_dir: the output directory, a `pathlib.Path`.

    Returns:
        `(plan, failures)`: a list of `(source, stem)` path pairs, and one message for each input
        that gets no outputs (an empty folder, or outputs that would overwrite another input's).
    """
    plan, failures, claimed = [], [], {}
    for name in inputs:
        path = pathlib.Path(name)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in IMAGE_SUFFIXES
                # Outputs of an earlier run into this folder are not inputs.
                and not p.name.endswith(tuple(OUTPUT_SUFFIXES.values()))
                and p.is_file()
            )
            if not found:
                failures.append(f"{path}: no {', '.join(IMAGE_SUFFIXES)} files in this folder")
            pairs = [(p, out_dir / p.relative_to(path)) for p in found]
        else:
            pairs = [(path, out_dir / path.name)]  # A missing or bad file fails when it is read.
        for source, stem in pairs:
            first = claimed.setdefault(stem, source)
            if first is source:
                plan.append((source, stem))
            elif first.resolve() != source.resolve():
                failures.append(
                    f"{source}: not predicted: its outputs ({stem}.*) would overwrite those "
                    f"of {first}"
                )
    return plan, failures


def _predict_image(serve, source, stem, threshold, write_probabilities, largest_component):
    """Predicts one image with the serving signature and writes its outputs.

    Args:
        serve: the SavedModel's `serving_default` signature.
        source: the image file.
        stem: output path without the `OUTPUT_SUFFIXES`; its folder is created if needed.
        threshold: probability at or above which a pixel is lesion; None uses the signature's
            `mask` (the threshold the model was exported with).
        write_probabilities: also write the 16-bit probability map.
        largest_component: keep only the mask's largest component, its holes filled.

    Returns:
        `(lesion fraction, paths written)`.

    Raises:
        ImageReadError: the image cannot be read.
        OSError: an output cannot be written.
    """
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from ph2_tf.serving.export import INPUT_NAME
    from ph2_tf.serving.postprocessing import largest_component_filled
    from tfds_ph2.ph2.image_reading import read_image

    image = read_image(source)
    outputs = serve(**{INPUT_NAME: tf.constant(image[None])})
    probabilities = outputs["probabilities"].numpy()[0, ..., 0]
    if threshold is None:
        mask = outputs["mask"].numpy()[0, ..., 0] > 0
    else:
        mask = probabilities >= threshold
    if largest_component:
        mask = largest_component_filled(mask)
    overlay = image.astype(np.float32)
    overlay[mask] = (1 - OVERLAY_ALPHA) * overlay[mask] + OVERLAY_ALPHA * np.array(
        OVERLAY_COLOUR, np.float32
    )
    pixels = {
        "mask": mask.astype(np.uint8) * 255,
        "overlay": overlay.round().astype(np.uint8),
    }
    if write_probabilities:
        pixels["probabilities"] = np.round(probabilities * 65535).astype(np.uint16)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind, values in pixels.items():
        paths.append(_output_path(stem, kind))
        Image.fromarray(values).save(paths[-1])  # uint16 is saved as a 16-bit greyscale PNG.
    return float(mask.mean()), paths


def run_predict(args):
    """`predict` command: masks and overlays (and probability maps) for image files and folders.

    Every input that cannot be read or written is reported on one line and skipped; a summary
    line ends the run.

    Returns:
        0 when every input was predicted; 1 when any failed; 2 when nothing could run (the output
        directory is a file or cannot be created, or there is no SavedModel).
    """

    def fatal(message):
        print(f"python -m ph2_tf predict: error: {message}", file=sys.stderr)
        return 2

    # Checked before TensorFlow is imported, which takes seconds.
    out_dir = pathlib.Path(args.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        return fatal(f"--output-dir {out_dir} exists and is not a directory")
    try:
        version_dir = versions.resolve(args.saved_model)
    except ValueError as e:
        return fatal(str(e))

    import tensorflow as tf
    from tqdm import tqdm

    from ph2_tf.serving import publish
    from ph2_tf.serving.export import FLIP_TTA_SIGNATURE, SIGNATURE
    from tfds_ph2.ph2.image_reading import ImageReadError

    saved_model = tf.saved_model.load(str(version_dir))  # Referenced: it owns the variables.
    signature = FLIP_TTA_SIGNATURE if args.flip_tta else SIGNATURE
    if signature not in saved_model.signatures:
        exported_before = " (exported before it existed)" if args.flip_tta else ""
        return fatal(
            f"the SavedModel {version_dir} has no {signature!r} signature{exported_before}"
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return fatal(f"cannot create --output-dir {out_dir}: {e.strerror or e}")

    # A new --threshold replaces the signature's mask, so the graph's post-processing is redone.
    largest_component = args.largest_component or (
        args.threshold is not None
        and publish.serving_options(version_dir).get("largest_component", False)
    )
    plan, failures = _plan_outputs(args.inputs, out_dir)
    for message in failures:
        print(f"predict: {message}", file=sys.stderr)
    written = 0
    # disable=None: a bar on a terminal only, so that logs get the result lines alone.
    with tqdm(plan, desc="predict", unit="image", file=sys.stderr, disable=None) as progress:
        for source, stem in progress:
            try:
                lesion, paths = _predict_image(
                    serve=saved_model.signatures[signature],
                    source=source,
                    stem=stem,
                    threshold=args.threshold,
                    write_probabilities=args.probabilities,
                    largest_component=largest_component,
                )
            except ImageReadError as e:
                message = str(e)
            except OSError as e:
                message = f"cannot write the outputs of {source}: {e}"
            except tf.errors.OpError as e:  # E.g. out of memory on a huge image.
                message = f"prediction failed for {source}: {e.message.splitlines()[0]}"
            else:
                written += 1
                names = ", ".join(str(p) for p in paths)
                progress.write(f"{source}: {lesion:.1%} lesion -> {names}", file=sys.stdout)
                continue
            failures.append(message)
            progress.write(f"predict: {message}", file=sys.stderr)
    print(f"predict: {written} written, {len(failures)} failed", file=sys.stderr)
    return 1 if failures else 0


def run_prepare(args):
    """`prepare` command: prepares `ph2` configs for `tfds.load` and for `ph2_tf.data.sources`.

    Returns:
        0; 2 when PH2 data is needed but not found; 1 when the PH2 data is unreadable or a
        prepared dataset cannot be completed.
    """
    from ph2_tf.data import prepare
    from tfds_ph2.ph2 import Ph2DataError, Ph2FileNotFoundError

    try:
        prepare.prepare(args.data_dir, args.manual_dir, args.configs)
    except Ph2FileNotFoundError as e:
        # The first line says what is missing; the rest are the download instructions.
        print(f"python -m ph2_tf prepare: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    except (Ph2DataError, prepare.PrepareError) as e:
        print(f"python -m ph2_tf prepare: error: {e}", file=sys.stderr)
        return 1
    return 0


COMMANDS = {
    "train": run_train,
    "evaluate": run_evaluate,
    "export": run_export,
    "soup": run_soup,
    "predict": run_predict,
    "prepare": run_prepare,
}


def main(argv=None):
    """Runs one command.

    Args:
        argv: arguments without the program name (`sys.argv[1:]` when None).

    Returns:
        The process exit status: the command's, 0 when it returns none.
    """
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return COMMANDS[args.command](args) or 0
