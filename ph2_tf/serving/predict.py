"""Prediction for files: which images a `predict` call reads, and the mask, overlay and
probability map it writes for each, through a SavedModel's serving signature.

NumPy, Pillow and TensorFlow are imported by `predict_image`, so that the command line can show
these names in its help without loading TensorFlow.
"""

import pathlib

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


def output_path(stem, kind):
    """The output of one kind (a key of `OUTPUT_SUFFIXES`): `out/a.jpg` -> `out/a.jpg.mask.png`."""
    return stem.with_name(stem.name + OUTPUT_SUFFIXES[kind])


def plan_outputs(inputs, out_dir):
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


def predict_image(serve, source, stem, threshold, write_probabilities, largest_component):
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
        paths.append(output_path(stem, kind))
        Image.fromarray(values).save(paths[-1])  # uint16 is saved as a 16-bit greyscale PNG.
    return float(mask.mean()), paths
