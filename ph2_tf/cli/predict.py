"""`predict`: lesion masks and overlays for image files and folders."""

import pathlib
import sys

from ph2_tf.cli.common import fail, probability
from ph2_tf.serving import versions
from ph2_tf.serving.predict import IMAGE_SUFFIXES


def add_parser(commands):
    """Adds the `predict` command to `commands`, the parent parser's subparsers."""
    predict = commands.add_parser(
        "predict",
        help="lesion masks and overlays for image files and folders",
        description="Writes <name>.mask.png and <name>.overlay.png (the image with the mask's "
        "outline drawn in green) for each input image, e.g. a.jpg.mask.png for a.jpg. Inputs "
        "that cannot be read are reported and skipped; the exit status is 1 when any input "
        "failed.",
    )
    model = predict.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--saved-model",
        help="SavedModel version directory, or a model directory (latest version is used)",
    )
    model.add_argument(
        "--remote",
        metavar="URL",
        help="a model TF Serving serves, by its REST predict URL, e.g. "
        "http://localhost:8501/v1/models/ph2_unet:predict (.../versions/N:predict for one "
        "version): each file is sent to its serving_encoded signature (JPEG, PNG and BMP only; "
        "not with --threshold or --flip-tta)",
    )
    predict.add_argument(
        "--output-dir",
        required=True,
        help="where the outputs go; a folder input's tree is mirrored below it",
    )
    predict.add_argument(
        "--threshold",
        type=probability,
        help="probability at or above which a pixel is lesion, in (0, 1), applied to the "
        "`probabilities` output, followed by the post-processing the model was exported with "
        "(default: the signature's `mask`)",
    )
    predict.add_argument(
        "--probabilities",
        action="store_true",
        help="also write <name>.probabilities.png, 16-bit: round(probability * 65535)",
    )
    passes = predict.add_mutually_exclusive_group()
    passes.add_argument(
        "--flip-tta",
        action="store_true",
        help="average over the image and its two flips (the serving_flip_tta signature; two to "
        "three times the time of one pass; see results/flip-tta-choice/)",
    )
    passes.add_argument(
        "--single-pass",
        action="store_true",
        help="one pass without flips (the serving_single_pass signature), for a version whose "
        "serving_default averages flips (exported with --flip-tta)",
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
        + ", ".join(IMAGE_SUFFIXES)
        + " files except PH2 ground-truth masks (<case>/<case>_lesion/ and <case>/<case>_roi/)",
    )


def run(args):
    """`predict` command: masks and overlays (and probability maps) for image files and folders.

    A first line on stderr names the SavedModel version used, or the served model and version.
    Every input that cannot be read, predicted or written is reported on one line and skipped; a
    summary line ends the run.

    Returns:
        0 when every input was predicted; 1 when any failed; 2 when nothing could run (the output
        directory is a file or cannot be created, no SavedModel, or no served model with the
        encoded signatures at --remote).
    """

    # Checked before TensorFlow is imported, which takes seconds.
    out_dir = pathlib.Path(args.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        return fail(args, f"--output-dir {out_dir} exists and is not a directory")
    if args.remote:
        return _run_remote(args, out_dir)
    try:
        version_dir = versions.resolve(args.saved_model)
    except ValueError as e:
        return fail(args, str(e))
    # A model directory serves its latest version: say which one these outputs come from.
    print(f"predict: using the SavedModel in {version_dir.absolute()}", file=sys.stderr)

    import tensorflow as tf

    from ph2_tf.serving import export, publish
    from ph2_tf.serving.predict import op_error_reason, predict_image

    signature = (
        export.FLIP_TTA_SIGNATURE
        if args.flip_tta
        else export.SINGLE_PASS_SIGNATURE
        if args.single_pass
        else export.SIGNATURE
    )
    try:
        saved_model = export.load_saved_model(version_dir, signature)  # owns the variables
        # A new --threshold replaces the signature's mask, so the graph's post-processing is
        # redone.
        largest_component = args.largest_component or (
            args.threshold is not None
            and publish.serving_options(version_dir).get("largest_component", False)
        )
    except ValueError as e:  # a damaged SavedModel or metrics.json, or no such signature
        return fail(args, e)

    def predict_one(source, stem):
        try:
            return predict_image(
                serve=saved_model.signatures[signature],
                source=source,
                stem=stem,
                threshold=args.threshold,
                write_probabilities=args.probabilities,
                largest_component=largest_component,
            )
        except tf.errors.OpError as e:  # an image too large, or out of memory
            raise _PredictionFailed(op_error_reason(e)) from None

    return _predict_all(args, out_dir, predict_one)


class _PredictionFailed(Exception):
    """One image that the model (local or served) could not predict; the message says why."""


def _predict_all(args, out_dir, predict_one):
    """Predicts every input with `predict_one(source, stem)`, one result or failure line each.

    Returns:
        The exit status: 0, or 1 when any input failed.
    """
    from tqdm import tqdm

    from ph2_tf.serving.predict import plan_outputs
    from tfds_ph2.ph2.image_reading import ImageReadError

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return fail(args, f"cannot create --output-dir {out_dir}: {e.strerror or e}")
    plan, failures, skipped = plan_outputs(args.inputs, out_dir)
    for message in failures:
        print(f"predict: {message}", file=sys.stderr)
    if skipped:
        print(
            f"predict: skipped {len(skipped)} PH2 ground-truth masks (in <case>_lesion and "
            "<case>_roi folders); name a file to predict it",
            file=sys.stderr,
        )
    written = 0
    # disable=None: a bar on a terminal only, so that logs get the result lines alone.
    with tqdm(plan, desc="predict", unit="image", file=sys.stderr, disable=None) as progress:
        for source, stem in progress:
            try:
                lesion, paths = predict_one(source, stem)
            except ImageReadError as e:
                message = str(e)
            except OSError as e:
                message = f"cannot write the outputs of {source}: {e}"
            except _PredictionFailed as e:
                message = f"prediction failed for {source}: {e}"
            else:
                written += 1
                names = ", ".join(str(p) for p in paths)
                progress.write(f"{source}: {lesion:.1%} lesion -> {names}", file=sys.stdout)
                continue
            failures.append(message)
            progress.write(f"predict: {message}", file=sys.stderr)
    print(f"predict: {written} written, {len(failures)} failed", file=sys.stderr)
    return 1 if failures else 0


def _run_remote(args, out_dir):
    """`predict --remote`: the same outputs, from a model TF Serving serves."""
    from ph2_tf.serving.predict import (
        REMOTE_URL,
        RemoteError,
        predict_remote_image,
        served_model,
    )

    if not REMOTE_URL.fullmatch(args.remote):
        return fail(
            args,
            f"--remote {args.remote}: not TF Serving's REST predict URL, "
            "http://HOST:PORT/v1/models/NAME[/versions/N]:predict",
        )
    # The served encoded signature computes serving_default's mask, as exported.
    for flag, given in (
        ("--threshold", args.threshold is not None),
        ("--flip-tta", args.flip_tta),
        ("--single-pass", args.single_pass),
    ):
        if given:
            return fail(
                args,
                f"{flag} needs --saved-model: a served model's encoded signature gives "
                "serving_default's mask, with the threshold and passes it was exported with",
            )
    try:
        name, version = served_model(args.remote)
    except RemoteError as e:
        return fail(args, e)
    print(f"predict: using {name} version {version} served at {args.remote}", file=sys.stderr)

    def predict_one(source, stem):
        try:
            return predict_remote_image(
                url=args.remote,
                source=source,
                stem=stem,
                write_probabilities=args.probabilities,
                largest_component=args.largest_component,
            )
        except RemoteError as e:
            raise _PredictionFailed(e) from None

    return _predict_all(args, out_dir, predict_one)
