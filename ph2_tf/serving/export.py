"""SavedModel export in TF Serving layout, and the TF Serving `models.config`.

Layout: `<base_dir>/<model_name>/<version>/saved_model.pb` (+ `variables/`), as TF Serving expects
under a model's base path. The `serving_default` signature takes uint8 images `[N, H, W, 3]` of
any size, resizes and scales them inside the graph with `ph2_tf.data.preprocessing`, as training
does, and returns, at the input's size:

- `probabilities`: float32 `[N, H, W, 1]` lesion probability;
- `mask`: uint8 `[N, H, W, 1]`, 1 where the probability is at least the threshold.

Two more signatures have the same inputs and outputs, so that a client can choose the speed:

- `serving_flip_tta` averages the probabilities of the image and its left-right and up-down flips
  in every pass (test-time augmentation: one model call on a batch three times as large), at
  two to three times the latency;
- `serving_single_pass` does not.

`serving_default` is one of the two: the single pass, unless exported with `flip_tta=True`
(`export --flip-tta`), as the versions chosen with flips on other clinics' images are
(`results/flip-tta-choice/`).

Two more signatures take the image files themselves, so that a client sends the compressed file
rather than a JSON number per pixel and channel (`results/serving-payloads/`):

- `serving_encoded`: `images_bytes`, a string `[N]` of JPEG, PNG or BMP files, of any sizes,
  decoded in the graph with the rules of `predict`'s reader
  (`ph2_tf.serving.encoded_images`: EXIF orientation applied, greyscale repeated, 16-bit scaled,
  alpha dropped; other files refused with a message naming the image and the reason). Each image
  goes through `serving_default`'s computation alone, and comes back as `mask_png_bytes` (the
  `mask` as an 8-bit PNG at the image's size, 0 or 255), `lesion_fraction` and `bounding_box`;
- `serving_encoded_probabilities`: the same and `probabilities_png_bytes`, the probabilities as a
  16-bit PNG, round(p * 65535). A separate signature, since that PNG makes the answer far
  larger and takes time to encode.

The names ending in `_bytes` follow TF Serving's REST convention: such inputs are sent, and such
outputs returned, as `{"b64": "<base64>"}`.

Exported with `largest_component=True` (`export --largest-component`), every signature's `mask`
keeps only the largest lesion and fills its holes, inside the graph
(`ph2_tf.serving.postprocessing.largest_component_filled_graph`); `probabilities` stay the model's.

The exported graph computes the model in inference mode with each BatchNormalization folded
into the convolution before it (`ph2_tf.serving.folding`): the same function up to float rounding,
with fewer passes over the feature maps.

An empty batch `[0, H, W, 3]` gives empty outputs `[0, H, W, 1]` without calling the model (whose
convolutions, with oneDNN's kernels, fail on zero images), and an empty `images_bytes` empty
outputs. Images of any size from 1x1 up to `MAX_PIXELS` pixels each are served; larger ones are
refused before any work ("at most ... pixels"), since the graph holds several full-size copies of
each image and TF Serving would otherwise run out of memory on one oversized request. Another
dtype is rejected by the signature ("expected to be a uint8 tensor"), another rank by the graph
("input must be 4-dimensional"), a last dimension other than 3 by a check before the model ("must
be RGB"), all as `InvalidArgumentError`; encoded images over `MAX_PIXELS` are refused from their
header, before they are decoded.

Loading needs only TensorFlow (`tf.saved_model.load`), not this package.
"""

import pathlib

import keras
import numpy as np
import tensorflow as tf

from ph2_tf import files
from ph2_tf.data import preprocessing
from ph2_tf.models.heads import lesion_probability
from ph2_tf.serving import encoded_images, folding, refinement, versions
from ph2_tf.serving.components import COMPONENT_RULES
from ph2_tf.serving.postprocessing import component_filled_graph

SIGNATURE = "serving_default"
FLIP_TTA_SIGNATURE = "serving_flip_tta"
SINGLE_PASS_SIGNATURE = "serving_single_pass"
INPUT_NAME = "images"
ENCODED_SIGNATURE = "serving_encoded"
ENCODED_PROBABILITIES_SIGNATURE = "serving_encoded_probabilities"
# Names ending in `_bytes`: TF Serving's REST API reads such inputs from, and writes such outputs
# as, {"b64": "<base64>"} objects.
ENCODED_INPUT_NAME = "images_bytes"
MASK_PNG = "mask_png_bytes"
PROBABILITIES_PNG = "probabilities_png_bytes"
LESION_FRACTION = "lesion_fraction"
BOUNDING_BOX = "bounding_box"
# zlib level of the 16-bit probability PNGs: the fastest level, since the probabilities compress
# little at any level and the default level made encoding cost more than the model
# (results/serving-payloads/).
PROBABILITIES_PNG_COMPRESSION = 1
MODELS_CONFIG = "models.config"
# Most pixels (height x width) one image may have: 2**25, e.g. 8192 x 4096, more than common
# camera sensors give. The graph holds several full-size arrays per image (the image as float32
# for resizing, the probabilities, the masks, the post-processing's labels).
MAX_PIXELS = 2**25


class SavedModelError(ValueError):
    """An exported SavedModel that cannot be used: missing, damaged, or without a signature."""


def load_saved_model(version_dir, signature=SIGNATURE):
    """Loads an exported SavedModel and checks that it has `signature`, as `export` writes it.

    Args:
        version_dir: a SavedModel directory.
        signature: the signature the caller will run.

    Returns:
        The loaded object; keep it referenced while its signatures run, since it owns their
        variables.

    Raises:
        SavedModelError: a missing, damaged or incomplete SavedModel, or one without
            `signature` taking uint8 `images`; one line naming the folder.
    """
    from google.protobuf.message import DecodeError

    try:
        loaded = tf.saved_model.load(str(version_dir))
    except (OSError, ValueError, LookupError, DecodeError, tf.errors.OpError) as error:
        # Damaged files fail anywhere from parsing saved_model.pb to reading the variables.
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SavedModelError(f"cannot load the SavedModel {version_dir}: {first_line}") from None
    if signature not in loaded.signatures:
        exported_before = (
            " (exported before it existed)"
            if signature in (FLIP_TTA_SIGNATURE, SINGLE_PASS_SIGNATURE)
            else ""
        )
        raise SavedModelError(
            f"the SavedModel {version_dir} has no {signature!r} signature{exported_before}"
        )
    inputs = loaded.signatures[signature].structured_input_signature[1]
    if getattr(inputs.get(INPUT_NAME), "dtype", None) != tf.uint8:
        raise SavedModelError(
            f"the {signature!r} signature of the SavedModel {version_dir} does not take uint8 "
            f"`{INPUT_NAME}` (its inputs: {', '.join(sorted(inputs)) or 'none'}): not exported "
            "by `export`"
        )
    return loaded


def check_component_rule(component_rule):
    """Refuses a component rule that is not one of `COMPONENT_RULES`."""
    if component_rule not in COMPONENT_RULES:
        raise ValueError(f"component_rule must be one of {COMPONENT_RULES}, got {component_rule!r}")


def _training_size(model):
    """Square training size read from a model's static input shape, or None."""
    _, height, width, _ = model.input_shape
    return height if height is not None and height == width else None


def serving_function(
    model,
    image_size,
    threshold=0.5,
    flip_tta=False,
    largest_component=False,
    refine=None,
    component_rule="largest",
):
    """The serving computation: uint8 images of any size -> probabilities and mask at that size.

    Args:
        model: Keras model taking float32 `(B, S, S, 3)` images in [0, 1] and returning logits.
        image_size: training size `S` the images are resized to before the model.
        threshold: probability at or above which a pixel is lesion.
        flip_tta: average the probabilities of the model input and of its left-right and
            up-down flips, each flipped back (bilinear resizing commutes with both the flips
            and the mean, so this equals averaging at the image's size).
        largest_component: keep only one 8-connected lesion of the mask, `component_rule`'s
            (by default the largest), its holes filled.
        refine: None, or the context of a second pass on a window around the lesion the first
            pass finds (`ph2_tf.serving.refinement`), which replaces the probabilities there.
        component_rule: which component is the lesion, where one is kept (the mask with
            `largest_component`, the located lesion with `refine`): a name of
            `ph2_tf.serving.components.COMPONENT_RULES`, the largest or the most confident.

    Returns:
        A function of a uint8 `[N, H, W, 3]` tensor returning `{'probabilities', 'mask'}`.

    Raises:
        ValueError: a threshold not strictly between 0 and 1, whose mask would be always empty
            or always full, or an unknown component rule.
    """
    if not 0.0 < threshold < 1.0:  # also refuses NaN
        raise ValueError(f"threshold must be strictly between 0 and 1, got {threshold!r}")
    if refine is not None:
        refinement.check_context(refine)
    check_component_rule(component_rule)

    def keep(mask, probabilities):
        return component_filled_graph(mask, probabilities, component_rule)

    def probabilities_of(images):
        inputs = preprocessing.model_input(images, image_size)
        if flip_tta:
            flipped = tf.concat([inputs, inputs[:, :, ::-1], inputs[:, ::-1]], axis=0)
            plain, left_right, up_down = tf.split(
                lesion_probability(model(flipped, training=False)), 3, axis=0
            )
            probability = (plain + left_right[:, :, ::-1] + up_down[:, ::-1]) / 3
        else:
            probability = lesion_probability(model(inputs, training=False))
        return tf.image.resize(probability, tf.shape(images)[1:3], method="bilinear")

    def serve(images):
        shape = tf.shape(images)
        # The signature's [None, None, None, 3] is not enforced on a call through the loaded
        # SavedModel: without this, 1 or 4 channels fail deep inside the first convolution.
        checks = [
            tf.debugging.assert_equal(
                shape[-1],
                3,
                message=f"`{INPUT_NAME}` must be RGB, [N, H, W, 3]: its last dimension is not 3",
            ),
            tf.debugging.assert_less_equal(
                tf.cast(shape[1], tf.int64) * tf.cast(shape[2], tf.int64),
                tf.constant(MAX_PIXELS, tf.int64),
                message=f"`{INPUT_NAME}` must have at most {MAX_PIXELS} pixels (height x width) "
                "per image: resize larger images first",
            ),
        ]
        with tf.control_dependencies(checks):  # before any work on the image
            images = tf.identity(images)

        empty = tf.zeros(tf.concat([shape[:3], [1]], axis=0), tf.float32)
        if refine is None:
            # oneDNN's convolutions fail on an empty batch: the model is not called on one.
            probabilities = tf.cond(shape[0] > 0, lambda: probabilities_of(images), lambda: empty)
            mask = probabilities >= threshold
            if largest_component:
                mask = keep(mask, probabilities)
            return {"probabilities": probabilities, "mask": tf.cast(mask, tf.uint8)}

        def refined_probabilities():
            first = probabilities_of(images)
            lesions = keep(first >= threshold, first)
            refined = refinement.refine_graph(
                images, first, probabilities_of, refine, threshold, lesions=lesions
            )
            return refined, lesions, tf.reduce_any(tf.not_equal(refined, first))

        probabilities, first_lesions, second_pass_ran = tf.cond(
            shape[0] > 0,
            refined_probabilities,
            lambda: (empty, tf.zeros_like(empty, tf.bool), tf.constant(False)),
        )
        mask = probabilities >= threshold
        if largest_component:
            # Where no second pass changed anything, the mask is the first pass's, whose kept
            # component locating the lesion found: labelling it again would cost as much.
            mask = tf.cond(
                second_pass_ran,
                lambda: keep(mask, probabilities),
                lambda: first_lesions,
            )
        return {"probabilities": probabilities, "mask": tf.cast(mask, tf.uint8)}

    return serve


def encoded_serving_function(serve, with_probabilities=False):
    """The serving computation on encoded images, around `serve` (a `serving_function`).

    Each image of the batch is decoded in the graph with `read_image`'s rules
    (`ph2_tf.serving.encoded_images`) and served by `serve` alone, so images of different sizes
    share a batch and each mask is the one `serve` gives for the decoded image.

    Args:
        serve: a function of uint8 `[N, H, W, 3]` returning `{'probabilities', 'mask'}`.
        with_probabilities: also return the probabilities as 16-bit PNGs, round(p * 65535), as
            `predict --probabilities` writes them.

    Returns:
        A function of a string tensor `[N]` of JPEG, PNG or BMP files returning, per image:
        `mask_png_bytes` (string, an 8-bit greyscale PNG at the image's size, 255 on the lesion),
        `lesion_fraction` (float32, the lesion's share of the pixels), `bounding_box` (int32
        `[4]`: first row, first column, and one past the last row and column of the lesion;
        -1s when there is none) and, if asked, `probabilities_png_bytes`.
    """

    # map_fn would rewrite its function with autograph, for nothing: it holds no Python control
    # flow on tensors.
    @tf.autograph.experimental.do_not_convert
    def serve_one(index_and_file):
        index, file = index_and_file
        name = tf.strings.format(f"`{ENCODED_INPUT_NAME}`[{{}}]", index)
        image = encoded_images.decode_image(file, name, MAX_PIXELS)
        outputs = serve(image[None])
        mask = outputs["mask"][0]
        lesion = mask[..., 0] > 0
        lesion_pixels = tf.reduce_sum(tf.cast(lesion, tf.float64))
        served = {
            MASK_PNG: tf.io.encode_png(mask * 255),
            LESION_FRACTION: tf.cast(
                lesion_pixels / tf.cast(tf.size(lesion), tf.float64), tf.float32
            ),
            BOUNDING_BOX: _bounding_box(lesion),
        }
        if with_probabilities:
            levels = tf.cast(tf.round(outputs["probabilities"][0] * 65535), tf.uint16)
            served[PROBABILITIES_PNG] = tf.io.encode_png(
                levels, compression=PROBABILITIES_PNG_COMPRESSION
            )
        return served

    output_signature = {
        MASK_PNG: tf.TensorSpec([], tf.string),
        LESION_FRACTION: tf.TensorSpec([], tf.float32),
        BOUNDING_BOX: tf.TensorSpec([4], tf.int32),
    }
    if with_probabilities:
        output_signature[PROBABILITIES_PNG] = tf.TensorSpec([], tf.string)

    def serve_encoded(images_bytes):
        # The signature's [None] is not enforced on a call through the loaded SavedModel, and an
        # assertion on the rank would be folded away with the signature's static shape:
        # EnsureShape checks the tensor fed ("Shape of tensor images_bytes [] is not compatible").
        images_bytes = tf.ensure_shape(images_bytes, [None])
        indices = tf.range(tf.size(images_bytes, out_type=tf.int64))
        return tf.map_fn(serve_one, (indices, images_bytes), fn_output_signature=output_signature)

    return serve_encoded


def _bounding_box(lesion):
    """`[first row, first column, last row + 1, last column + 1]` of the True pixels of a
    2-D boolean tensor, as int32; -1s when there is none."""
    rows = tf.where(tf.reduce_any(lesion, axis=1))[:, 0]
    columns = tf.where(tf.reduce_any(lesion, axis=0))[:, 0]
    return tf.cond(
        tf.size(rows) > 0,
        lambda: tf.cast(tf.stack([rows[0], columns[0], rows[-1] + 1, columns[-1] + 1]), tf.int32),
        lambda: tf.fill([4], -1),
    )


def export_for_serving(
    model,
    base_dir="saved_models",
    model_name=None,
    version=None,
    image_size=None,
    threshold=0.5,
    largest_component=False,
    refine=None,
    component_rule="largest",
    flip_tta=False,
):
    """Writes a SavedModel with the `serving_default`, `serving_single_pass`, `serving_flip_tta`,
    `serving_encoded` and `serving_encoded_probabilities` signatures in TF Serving layout.

    Args:
        model: Keras model taking float32 `(B, S, S, 3)` images in [0, 1] and returning logits
            (either head: 1-channel sigmoid or 2-channel softmax).
        base_dir: TF Serving model root; the SavedModel goes to `<base_dir>/<model_name>/<version>`.
        model_name: TF Serving model name; `model.name` when None.
        version: positive integer version; the next free one when None.
        image_size: training size `S`; read from the model's static input shape when None.
        threshold: probability at or above which the `mask` output is 1.
        largest_component: the `mask` outputs keep only the largest lesion, its holes filled.
        refine: None, or the context of the refining second pass (`ph2_tf.serving.refinement`).
        component_rule: which component is the lesion where one is kept (`serving_function`).
        flip_tta: `serving_default` and the encoded signatures average the image and its two
            flips, as `serving_flip_tta` does; else they make one pass, as `serving_single_pass`.

    Returns:
        The version directory written, as a `pathlib.Path`.

    Raises:
        ValueError: non-finite weights, no known image size, or a bad threshold; nothing is
            written then.
        versions.PublishingError: a version that is not a positive int or already exists, or
            another process publishing a version of this model; nothing is written then.
    """
    model_dir = pathlib.Path(base_dir) / (model_name or model.name)
    versions.require_free(model_dir, version)
    check_finite(model)
    image_size = image_size or _training_size(model)
    if image_size is None:
        raise ValueError(
            "image_size is required for a model without a static square input shape, got "
            f"input_shape={model.input_shape}"
        )
    with versions.staging(model_dir) as staged:
        write_saved_model(
            model,
            staged,
            image_size,
            threshold,
            largest_component,
            refine,
            component_rule,
            flip_tta,
        )
        return versions.promote(staged, version)


def check_finite(model):
    """Refuses a model with NaN or infinite weights, which no export should serve.

    Raises:
        ValueError: naming the first such weight.
    """
    non_finite = [
        w.path for w in model.weights if not np.isfinite(keras.ops.convert_to_numpy(w)).all()
    ]
    if non_finite:
        raise ValueError(
            f"refusing to export {model.name!r}: {len(non_finite)} weight tensors hold NaN or "
            f"infinite values (first: {non_finite[0]}); the run it comes from diverged"
        )


def write_saved_model(
    model,
    path,
    image_size,
    threshold=0.5,
    largest_component=False,
    refine=None,
    component_rule="largest",
    flip_tta=False,
):
    """Writes the serving SavedModel of `model`, with its five signatures, to `path` (no version
    logic, no checks).

    Args:
        model: Keras model taking float32 `(B, S, S, 3)` images in [0, 1] and returning logits.
        path: the SavedModel directory to create.
        image_size: training size `S`.
        threshold: probability at or above which the `mask` output is 1.
        largest_component: the `mask` outputs keep only the largest lesion, its holes filled.
        refine: None, or the context of the refining second pass (`ph2_tf.serving.refinement`).
        component_rule: which component is the lesion where one is kept (`serving_function`).
        flip_tta: the default and encoded signatures average the image and its two flips.
    """
    model = folding.fold_batch_normalization(model)
    options = dict(
        threshold=threshold,
        largest_component=largest_component,
        refine=refine,
        component_rule=component_rule,
    )
    # No `archive.track(model)`: the endpoints' variables are tracked anyway, and tracking the
    # model as well wrote every weight twice (under `variables` and `_all_variables`).
    archive = keras.export.ExportArchive()
    for name, flips in (
        (SIGNATURE, flip_tta),
        (SINGLE_PASS_SIGNATURE, False),
        (FLIP_TTA_SIGNATURE, True),
    ):
        archive.add_endpoint(
            name,
            serving_function(model, image_size, flip_tta=flips, **options),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_NAME)],
        )
    # One image at a time, traced once and called by both encoded signatures.
    one_image = tf.function(
        serving_function(model, image_size, flip_tta=flip_tta, **options),
        input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8)],
        autograph=False,
    )
    for name, with_probabilities in (
        (ENCODED_SIGNATURE, False),
        (ENCODED_PROBABILITIES_SIGNATURE, True),
    ):
        archive.add_endpoint(
            name,
            encoded_serving_function(one_image, with_probabilities),
            input_signature=[tf.TensorSpec([None], tf.string, name=ENCODED_INPUT_NAME)],
        )
    archive.write_out(str(path), verbose=False)


def write_models_config(base_dir="saved_models", serving_root=None):
    """Writes `<base_dir>/models.config`, a TF Serving `model_config_list` of exported models,
    atomically: the server never reads half of it.

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
        model_dir.name for model_dir in base_dir.glob("*") if versions.served_versions(model_dir)
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
    files.write_text(path, "model_config_list {\n" + entries + "}\n")
    return path
