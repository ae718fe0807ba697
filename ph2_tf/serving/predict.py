"""Prediction for files: which images a `predict` call reads, and the mask, overlay and
probability map it writes for each, through a SavedModel's serving signature, or through a model
TF Serving serves (its REST API and the `serving_encoded` signatures, which take the files).

NumPy, SciPy, Pillow and TensorFlow are imported where they are used, so that the command line
can show these names in its help without loading them.
"""

import base64
import io
import json
import os
import pathlib
import re
import urllib.error
import urllib.request

from ph2_tf import files

# Files `predict` takes from a folder (compared lower-case); files named explicitly are all read.
IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
# What `predict` appends to an input's file name, suffix included: `a.jpg` -> `a.jpg.mask.png`.
OUTPUT_SUFFIXES = {
    "mask": ".mask.png",
    "overlay": ".overlay.png",
    "probabilities": ".probabilities.png",
}
# Folders of a PH2 case `<case>/` that hold its ground truth, not images to segment:
# `<case>_lesion/` the expert lesion mask, `<case>_roi/` the colour-class masks.
PH2_GROUND_TRUTH_FOLDERS = ("_lesion", "_roi")
# The overlay draws the mask's outline and leaves the lesion itself visible: its border is what
# a reader checks. Green stands out against skin and pigment.
OUTLINE_COLOUR = (0, 255, 0)
# Outline width in pixels: at least OUTLINE_MIN_WIDTH, and 1/OUTLINE_WIDTH_DIVISOR of the longer
# side on larger images, so that it stays visible when a large photo is shown shrunk to a screen.
OUTLINE_MIN_WIDTH = 3
OUTLINE_WIDTH_DIVISOR = 500
# TF Serving's REST predict URL of a model, or of one version of it.
REMOTE_URL = re.compile(r"https?://[^/?#]+/v1/models/[^/?#:]+(/versions/[0-9]+)?:predict")
# Seconds to wait for TF Serving's answer about one image.
REMOTE_TIMEOUT_S = 120


class RemoteError(Exception):
    """A served model that cannot be reached or used, or that refused an image; the message
    says why."""


def output_path(stem, kind):
    """The output of one kind (a key of `OUTPUT_SUFFIXES`): `out/a.jpg` -> `out/a.jpg.mask.png`."""
    return stem.with_name(stem.name + OUTPUT_SUFFIXES[kind])


def is_ph2_ground_truth(path):
    """Whether a file lies in a PH2 case's ground-truth folder.

    In the PH2 archive, case `IMD002` is a folder `IMD002/` with the image in
    `IMD002_Dermoscopic_Image/` and masks in `IMD002_lesion/` and `IMD002_roi/`. A file counts as
    ground truth when its folder is `<case>_lesion` or `<case>_roi` and that folder's parent is
    `<case>`, wherever the case folder is.

    Args:
        path: a file path, absolute or relative to the working directory.

    Returns:
        True for a file in `<case>/<case>_lesion/` or `<case>/<case>_roi/`.
    """
    folder = pathlib.Path(os.path.abspath(path)).parent  # abspath: `..` resolved, links kept.
    case = folder.parent.name
    return bool(case) and folder.name in {case + suffix for suffix in PH2_GROUND_TRUTH_FOLDERS}


def plan_outputs(inputs, out_dir):
    """Pairs each input image with the output stem its outputs are named after.

    A file goes to `<out_dir>/<its name>`; an image found in a folder to `<out_dir>/<its path
    relative to that folder>`. The same file named twice is predicted once. A folder is searched
    recursively for `IMAGE_SUFFIXES` files, except the outputs of an earlier run and PH2
    ground-truth masks (`is_ph2_ground_truth`); files named explicitly are always read.

    Args:
        inputs: file and folder paths as given on the command line.
        out_dir: the output directory, a `pathlib.Path`.

    Returns:
        `(plan, failures, skipped)`: a list of `(source, stem)` path pairs; one message for each
        input that gets no outputs (a folder without images, or outputs that would overwrite
        another input's); and the PH2 ground-truth masks left out of folders.
    """
    plan, failures, skipped, claimed = [], [], [], {}
    for name in inputs:
        path = pathlib.Path(name)
        if path.is_dir():
            found, ground_truth = [], []
            for p in sorted(path.rglob("*")):
                if (
                    p.suffix.lower() not in IMAGE_SUFFIXES
                    or p.name.endswith(tuple(OUTPUT_SUFFIXES.values()))
                    or not p.is_file()
                ):
                    continue
                (ground_truth if is_ph2_ground_truth(p) else found).append(p)
            skipped += ground_truth
            if not found:
                also = " other than PH2 ground-truth masks" if ground_truth else ""
                failures.append(
                    f"{path}: no {', '.join(IMAGE_SUFFIXES)} files in this folder{also}"
                )
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
    return plan, failures, skipped


def op_error_reason(error):
    """The part of a TensorFlow error raised inside a graph that says what went wrong.

    Such messages start with lines about where it happened ("Graph execution error:",
    "Detected at node ..."); an assertion's message (the checks of the exported signatures) is
    the first bracket of its "assertion failed: [...]" line, before any "[Condition ...]".

    Args:
        error: a `tf.errors.OpError`, or such an error's message (as TF Serving returns it).

    Returns:
        One line.
    """
    message = error if isinstance(error, str) else error.message
    lines = [line.strip() for line in message.splitlines()]
    prefix = "assertion failed: ["
    for line in lines:
        if line.startswith(prefix):
            reason = line.removeprefix(prefix)
            if "] [Condition" in reason:
                return reason.split("] [Condition", 1)[0]
            return reason.removesuffix("]")
    where = ("Graph execution error:", "Detected at node", "<stack traces unavailable>", "[[")
    return next((line for line in lines if line and not line.startswith(where)), repr(error))


def outline_width(shape):
    """The overlay's outline width in pixels for an image of `shape` (height, width, ...)."""
    return max(OUTLINE_MIN_WIDTH, round(max(shape[:2]) / OUTLINE_WIDTH_DIVISOR))


def draw_outline(image, mask):
    """The image with the mask's outline drawn in `OUTLINE_COLOUR`, every other pixel unchanged.

    The outline is the band of mask pixels within `outline_width` pixels of its edge (the mask
    minus its erosion), so it lies on the lesion and leaves the skin around it untouched. Where
    the mask runs off the image, no line is drawn along the image's edge: the lesion does not end
    there.

    Args:
        image: an (H, W, 3) uint8 array.
        mask: an (H, W) boolean array.

    Returns:
        A new (H, W, 3) uint8 array; a copy of `image` when `mask` is empty or covers everything.
    """
    import numpy as np
    from scipy import ndimage

    eroded = ndimage.binary_erosion(
        mask,
        structure=np.ones((3, 3), bool),
        iterations=outline_width(image.shape),
        border_value=1,
    )
    drawn = image.copy()
    drawn[mask & ~eroded] = OUTLINE_COLOUR
    return drawn


def predict_image(serve, source, stem, threshold, write_probabilities, largest_component):
    """Predicts one image with the serving signature and writes its outputs, each atomically.

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

    from ph2_tf.serving.export import INPUT_NAME
    from tfds_ph2.ph2.image_reading import read_image

    image = read_image(source)
    outputs = serve(**{INPUT_NAME: tf.constant(image[None])})
    probabilities = outputs["probabilities"].numpy()[0, ..., 0]
    if threshold is None:
        mask = outputs["mask"].numpy()[0, ..., 0] > 0
    else:
        mask = probabilities >= threshold
    levels = np.round(probabilities * 65535).astype(np.uint16) if write_probabilities else None
    return _write_outputs(image, mask, levels, stem, largest_component)


def predict_remote_image(url, source, stem, write_probabilities, largest_component):
    """Predicts one image with a model TF Serving serves and writes its outputs, each
    atomically.

    Sends the file itself to the `serving_encoded` signature (`serving_encoded_probabilities`
    for the probability map) through TF Serving's REST API, which decodes it in the graph with
    `read_image`'s rules; the image is also read here, for the overlay.

    Args:
        url: TF Serving's REST predict URL of the model (`REMOTE_URL`).
        source: the image file (JPEG, PNG or BMP: the formats the signature decodes).
        stem: output path without the `OUTPUT_SUFFIXES`; its folder is created if needed.
        write_probabilities: also write the 16-bit probability map.
        largest_component: keep only the mask's largest component, its holes filled.

    Returns:
        `(lesion fraction, paths written)`.

    Raises:
        ImageReadError: the image cannot be read.
        RemoteError: the server cannot be reached or refused the image.
        OSError: an output cannot be written.
    """
    import numpy as np
    from PIL import Image

    from ph2_tf.serving import export
    from tfds_ph2.ph2.image_reading import read_image

    image = read_image(source)
    signature = (
        export.ENCODED_PROBABILITIES_SIGNATURE if write_probabilities else export.ENCODED_SIGNATURE
    )
    request = {
        "signature_name": signature,
        "instances": [
            {export.ENCODED_INPUT_NAME: {"b64": base64.b64encode(_read_bytes(source)).decode()}}
        ],
    }
    answer = _call(url, request)
    names = (
        [export.MASK_PNG, export.PROBABILITIES_PNG] if write_probabilities else [export.MASK_PNG]
    )
    try:
        (prediction,) = answer["predictions"]
        pixels = {
            name: np.asarray(
                Image.open(io.BytesIO(base64.b64decode(prediction[name]["b64"], validate=True)))
            )
            for name in names
        }
    except (KeyError, TypeError, ValueError, OSError) as error:
        raise RemoteError(f"{url} answered no PNG {', '.join(names)} ({error!r})") from None
    mask = pixels[export.MASK_PNG] > 0
    if mask.shape != image.shape[:2]:
        raise RemoteError(
            f"the served mask is {mask.shape[1]}x{mask.shape[0]} pixels, the image "
            f"{image.shape[1]}x{image.shape[0]}: not the image read here"
        )
    return _write_outputs(
        image, mask, pixels.get(export.PROBABILITIES_PNG), stem, largest_component
    )


def served_model(url):
    """The name and version of the model TF Serving serves at a predict URL, after checking that
    it has the `serving_encoded` signatures.

    Args:
        url: TF Serving's REST predict URL (`REMOTE_URL`).

    Returns:
        `(name, version)`, as the server's model metadata gives them.

    Raises:
        RemoteError: the server cannot be reached, or its model lacks the signatures.
    """
    from ph2_tf.serving import export

    metadata_url = url.removesuffix(":predict") + "/metadata"
    metadata = _call(metadata_url)
    try:
        spec = metadata["model_spec"]
        signatures = metadata["metadata"]["signature_def"]["signature_def"]
        name, version = spec["name"], spec["version"]
    except (KeyError, TypeError) as error:
        raise RemoteError(f"{metadata_url} answered no model metadata ({error!r})") from None
    for signature in (export.ENCODED_SIGNATURE, export.ENCODED_PROBABILITIES_SIGNATURE):
        if signature not in signatures:
            raise RemoteError(
                f"{name} version {version} served at {url} has no {signature!r} signature "
                "(exported before it existed): serve a version exported since"
            )
    return name, version


def _read_bytes(source):
    """The bytes of an image file; `ImageReadError` when it cannot be read, as for `read_image`."""
    from tfds_ph2.ph2.image_reading import ImageReadError

    try:
        return pathlib.Path(source).read_bytes()
    except OSError as error:
        raise ImageReadError(source, error.strerror or str(error)) from error


def _call(url, request=None):
    """TF Serving's JSON answer at `url`: a GET, or a POST of `request`.

    Raises:
        RemoteError: no answer, or an error, whose reason is TF Serving's `error` message.
    """
    body = None if request is None else json.dumps(request).encode()
    headers = {"Content-Type": "application/json"}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, data=body, headers=headers), timeout=REMOTE_TIMEOUT_S
        ) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        try:
            reason = op_error_reason(json.load(error)["error"])
        except (ValueError, KeyError, TypeError):
            reason = f"HTTP {error.code} {error.reason}"
        raise RemoteError(reason) from None
    except (urllib.error.URLError, OSError) as error:  # refused, unknown host, timed out
        raise RemoteError(f"cannot reach {url}: {getattr(error, 'reason', error)}") from None
    except ValueError as error:
        raise RemoteError(f"{url} answered something other than JSON: {error}") from None


def _write_outputs(image, mask, levels, stem, largest_component):
    """Writes the mask, the overlay and, when `levels` is given, the 16-bit probability map.

    Args:
        image: the uint8 `(H, W, 3)` image read.
        mask: its boolean `(H, W)` mask.
        levels: uint16 `(H, W)`, round(probability * 65535), or None.
        stem: output path without the `OUTPUT_SUFFIXES`; its folder is created if needed.
        largest_component: keep only the mask's largest component, its holes filled.

    Returns:
        `(lesion fraction, paths written)`.
    """
    import numpy as np
    from PIL import Image

    from ph2_tf.serving.postprocessing import largest_component_filled

    if largest_component:
        mask = largest_component_filled(mask)
    pixels = {
        "mask": mask.astype(np.uint8) * 255,
        "overlay": draw_outline(image, mask),
    }
    if levels is not None:
        pixels["probabilities"] = levels
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind, values in pixels.items():
        paths.append(output_path(stem, kind))
        with files.replacing(paths[-1]) as partial:  # a kill leaves no half-written image
            Image.fromarray(values).save(partial)  # uint16: a 16-bit greyscale PNG
    return float(mask.mean()), paths
