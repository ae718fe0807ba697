"""SavedModel export in TF Serving layout, and the TF Serving `models.config`.

Layout: `<base_dir>/<model_name>/<version>/saved_model.pb` (+ `variables/`), as TF Serving expects
under a model's base path. The `serving_default` signature takes uint8 images `[N, H, W, 3]` of
any size, resizes and scales them inside the graph with `ph2_tf.data.preprocessing`, as training
does, and returns, at the input's size:

- `probabilities`: float32 `[N, H, W, 1]` lesion probability;
- `mask`: uint8 `[N, H, W, 1]`, 1 where the probability is at least the threshold.

A second signature, `serving_flip_tta`, has the same inputs and outputs and averages the
probabilities of the image and its left-right and up-down flips (test-time augmentation: one
model call on a batch three times as large). It is an option, not the default: it helped some
models and hurt others, and costs about three times the latency (`results/postprocessing/`).

Exported with `largest_component=True` (`export --largest-component`), both signatures' `mask`
keeps only the largest lesion and fills its holes, inside the graph
(`ph2_tf.serving.postprocessing.largest_component_filled_graph`); `probabilities` stay the model's.

The exported graph computes the model in inference mode with each BatchNormalization folded
into the convolution before it (`ph2_tf.serving.folding`): the same function up to float rounding,
with fewer passes over the feature maps.

Another dtype is rejected by the signature ("expected to be a uint8 tensor"), another rank by
the graph ("input must be 4-dimensional"), a last dimension other than 3 by a check before the
model ("must be RGB"), all as `InvalidArgumentError`.

Loading needs only TensorFlow (`tf.saved_model.load`), not this package.
"""

import pathlib

import keras
import numpy as np
import tensorflow as tf

from ph2_tf.data import preprocessing
from ph2_tf.models.heads import lesion_probability
from ph2_tf.serving import folding, versions
from ph2_tf.serving.postprocessing import largest_component_filled_graph

SIGNATURE = "serving_default"
FLIP_TTA_SIGNATURE = "serving_flip_tta"
INPUT_NAME = "images"
MODELS_CONFIG = "models.config"


def _training_size(model):
    """Square training size read from a model's static input shape, or None."""
    _, height, width, _ = model.input_shape
    return height if height is not None and height == width else None


def serving_function(model, image_size, threshold=0.5, flip_tta=False, largest_component=False):
    """The serving computation: uint8 images of any size -> probabilities and mask at that size.

    Args:
        model: Keras model taking float32 `(B, S, S, 3)` images in [0, 1] and returning logits.
        image_size: training size `S` the images are resized to before the model.
        threshold: probability at or above which a pixel is lesion.
        flip_tta: average the probabilities of the model input and of its left-right and
            up-down flips, each flipped back (bilinear resizing commutes with both the flips
            and the mean, so this equals averaging at the image's size).
        largest_component: keep only the mask's largest 8-connected lesion, its holes filled.

    Returns:
        A function of a uint8 `[N, H, W, 3]` tensor returning `{'probabilities', 'mask'}`.
    """

    def serve(images):
        # The signature's [None, None, None, 3] is not enforced on a call through the loaded
        # SavedModel: without this, 1 or 4 channels fail deep inside the first convolution.
        tf.debugging.assert_equal(
            tf.shape(images)[-1],
            3,
            message=f"`{INPUT_NAME}` must be RGB, [N, H, W, 3]: its last dimension is not 3",
        )
        size = tf.shape(images)[1:3]
        inputs = preprocessing.model_input(images, image_size)
        if flip_tta:
            flipped = tf.concat([inputs, inputs[:, :, ::-1], inputs[:, ::-1]], axis=0)
            plain, left_right, up_down = tf.split(
                lesion_probability(model(flipped, training=False)), 3, axis=0
            )
            probability = (plain + left_right[:, :, ::-1] + up_down[:, ::-1]) / 3
        else:
            probability = lesion_probability(model(inputs, training=False))
        probabilities = tf.image.resize(probability, size, method="bilinear")
        mask = probabilities >= threshold
        if largest_component:
            mask = largest_component_filled_graph(mask)
        return {"probabilities": probabilities, "mask": tf.cast(mask, tf.uint8)}

    return serve


def export_for_serving(
    model,
    base_dir="saved_models",
    model_name=None,
    version=None,
    image_size=None,
    threshold=0.5,
    largest_component=False,
):
    """Writes a SavedModel with the `serving_default` and `serving_flip_tta` signatures in TF
    Serving layout.

    Args:
        model: Keras model taking float32 `(B, S, S, 3)` images in [0, 1] and returning logits
            (either head: 1-channel sigmoid or 2-channel softmax).
        base_dir: TF Serving model root; the SavedModel goes to `<base_dir>/<model_name>/<version>`.
        model_name: TF Serving model name; `model.name` when None.
        version: positive integer version; the next free one when None.
        image_size: training size `S`; read from the model's static input shape when None.
        threshold: probability at or above which the `mask` output is 1.
        largest_component: the `mask` outputs keep only the largest lesion, its holes filled.

    Returns:
        The version directory written, as a `pathlib.Path`.

    Raises:
        ValueError: non-finite weights, no known image size, or an existing version directory;
            nothing is written then.
    """
    non_finite = [
        w.path for w in model.weights if not np.isfinite(keras.ops.convert_to_numpy(w)).all()
    ]
    if non_finite:
        raise ValueError(
            f"refusing to export {model.name!r}: {len(non_finite)} weight tensors hold NaN or "
            f"infinite values (first: {non_finite[0]}); the run it comes from diverged"
        )
    image_size = image_size or _training_size(model)
    if image_size is None:
        raise ValueError(
            "image_size is required for a model without a static square input shape, got "
            f"input_shape={model.input_shape}"
        )
    model_name = model_name or model.name
    model_dir = pathlib.Path(base_dir) / model_name
    version = versions.next_version(model_dir) if version is None else version
    if not isinstance(version, int) or version <= 0:
        raise ValueError(f"version must be a positive int, got {version!r}")
    path = model_dir / str(version)
    if path.exists():
        raise ValueError(f"export directory already exists: {str(path)!r}")
    write_saved_model(model, path, image_size, threshold, largest_component)
    return path


def write_saved_model(model, path, image_size, threshold=0.5, largest_component=False):
    """Writes the serving SavedModel of `model` to `path` (no version logic, no checks).

    Args:
        model: Keras model taking float32 `(B, S, S, 3)` images in [0, 1] and returning logits.
        path: the SavedModel directory to create.
        image_size: training size `S`.
        threshold: probability at or above which the `mask` output is 1.
        largest_component: the `mask` outputs keep only the largest lesion, its holes filled.
    """
    model = folding.fold_batch_normalization(model)
    # No `archive.track(model)`: the endpoints' variables are tracked anyway, and tracking the
    # model as well wrote every weight twice (under `variables` and `_all_variables`).
    archive = keras.export.ExportArchive()
    for name, flip_tta in ((SIGNATURE, False), (FLIP_TTA_SIGNATURE, True)):
        archive.add_endpoint(
            name,
            serving_function(model, image_size, threshold, flip_tta, largest_component),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_NAME)],
        )
    archive.write_out(str(path), verbose=False)


def write_models_config(base_dir="saved_models", serving_root=None):
    """Writes `<base_dir>/models.config`, a TF Serving `model_config_list` of exported models.

    Every subdirectory of `base_dir` holding at least one integer-named version with a
    `saved_model.pb` is listed; TF Serving serves its latest version.

    Args:
        base_dir: the directory `export_for_serving` wrote to.
        serving_root: the directory `base_dir` is seen as by the server (e.g. `/models` when it
            is mounted there in a container); `base_dir`'s absolute path when None.

    Returns:
        The path of the config written, as a `pathlib.Path`.
    """
    base_dir = pathlib.Path(base_dir)
    root = serving_root or str(base_dir.resolve())
    names = sorted(
        model_dir.name
        for model_dir in base_dir.glob("*")
        if any(p.parent.name.isdigit() for p in model_dir.glob("*/saved_model.pb"))
    )
    if not names:
        raise ValueError(f"no exported SavedModel versions under {str(base_dir)!r}")
    entries = "".join(
        "  config {\n"
        f'    name: "{name}"\n'
        f'    base_path: "{root.rstrip("/")}/{name}"\n'
        '    model_platform: "tensorflow"\n'
        "  }\n"
        for name in names
    )
    path = base_dir / MODELS_CONFIG
    path.write_text("model_config_list {\n" + entries + "}\n")
    return path
