"""Tests of ph2_tf.serving.export: TF Serving layout, signatures, servability from a fresh
process.
"""

import json
import shutil
import struct
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import SCRIPTS_DIR, run_python, subprocess_env
from encoded_images_test import encode, exif_block, png_chunk
from folding_test import randomise_batch_norm

from ph2_tf.data import preprocessing
from ph2_tf.models import build_model
from ph2_tf.models.heads import lesion_probability
from ph2_tf.serving import export, versions
from ph2_tf.serving.folding import fold_batch_normalization
from ph2_tf.serving.postprocessing import largest_component_filled
from tfds_ph2.ph2.image_reading import read_image

IMAGE_SIZE = 64
REFINE = 1.5
HEIGHT, WIDTH = 561, 767


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny SegNet (unpooling layers, 2-class softmax head) exported to a fresh base dir.

    Its BatchNorm statistics are far from the identity, so that the exported graph, which folds
    them into the convolutions, is compared with the Keras model on something that matters.
    """
    base_dir = tmp_path_factory.mktemp("saved_models")
    model = randomise_batch_norm(
        build_model("segnet", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), width=0.125, num_classes=2)
    )
    path = export.export_for_serving(model, base_dir=base_dir, model_name="segnet")
    return model, base_dir, path


def test_tf_serving_layout_and_models_config(exported):
    _, base_dir, path = exported
    assert path == base_dir / "segnet" / "1"
    assert (path / "saved_model.pb").exists() and (path / "variables").is_dir()
    assert versions.next_version(base_dir / "segnet") == 2
    config = export.write_models_config(base_dir, serving_root="/models").read_text()
    assert config.startswith("model_config_list {")
    assert 'name: "segnet"' in config
    assert 'base_path: "/models/segnet"' in config
    assert 'model_platform: "tensorflow"' in config


def test_saved_model_stores_each_served_weight_once(exported):
    model, _, path = exported
    stored = tf.train.list_variables(str(path / "variables" / "variables"))
    stored_values = sum(int(np.prod(shape)) for name, shape in stored if shape)
    served = fold_batch_normalization(model)  # no BatchNorm variables left to store
    assert stored_values == sum(int(np.prod(w.shape)) for w in served.weights)
    assert stored_values < sum(int(np.prod(w.shape)) for w in model.weights)


def test_export_rejects_existing_version_and_bad_version(exported):
    model, base_dir, _ = exported
    with pytest.raises(ValueError, match="already exists"):
        export.export_for_serving(model, base_dir=base_dir, model_name="segnet", version=1)
    with pytest.raises(ValueError, match="version must be a positive int"):
        export.export_for_serving(model, base_dir=base_dir, model_name="segnet", version=0)


def test_saved_model_cli_lists_the_signature(exported):
    path = exported[2]
    proc = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--all"]
        + ["--dir", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stderr
    signature = proc.stdout.split("signature_def['serving_default']")[1]
    assert "dtype: DT_UINT8" in signature and "shape: (-1, -1, -1, 3)" in signature
    assert "outputs['probabilities']" in signature and "outputs['mask']" in signature
    encoded = proc.stdout.split("signature_def['serving_encoded']")[1].split("signature_def[")[0]
    assert "inputs['images_bytes']" in encoded
    assert "dtype: DT_STRING" in encoded and "shape: (-1)" in encoded
    for output in ("mask_png_bytes", "lesion_fraction", "bounding_box"):
        assert f"outputs['{output}']" in encoded
    assert "outputs['probabilities_png_bytes']" not in encoded
    with_probabilities = proc.stdout.split("signature_def['serving_encoded_probabilities']")[1]
    assert "outputs['probabilities_png_bytes']" in with_probabilities.split("signature_def[")[0]


def test_fresh_process_serves_full_size_images(exported, tmp_path):
    model, _, path = exported
    images = np.random.default_rng(0).integers(0, 256, (1, HEIGHT, WIDTH, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    args = [tmp_path / "images.npy", tmp_path / "outputs.npz", tmp_path / "report.json"]
    # oneDNN's kernels, as the command line runs them, fail on an empty batch unless the graph
    # keeps it away from the model.
    env = subprocess_env(TF_ENABLE_ONEDNN_OPTS="1")
    run_python([SCRIPTS_DIR / "serve_saved_model.py", path, *args], env=env)
    outputs = np.load(tmp_path / "outputs.npz")
    report = json.loads((tmp_path / "report.json").read_text())

    assert not report["ph2_tf_imported"]
    assert outputs["mask"].shape == (1, HEIGHT, WIDTH, 1) and outputs["mask"].dtype == np.uint8
    scaled = preprocessing.model_input(images, IMAGE_SIZE)
    expected = tf.image.resize(lesion_probability(model(scaled)), (HEIGHT, WIDTH)).numpy()
    # Folding BatchNorm into the convolutions changes the float rounding, not the function.
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-4)
    np.testing.assert_array_equal(outputs["mask"], outputs["probabilities"] >= 0.5)
    clear = np.abs(expected - 0.5) > 1e-3  # an untrained model sits near 0.5
    np.testing.assert_array_equal(outputs["mask"][clear], expected[clear] >= 0.5)

    assert report["float32"] is not None and "uint8" in report["float32"]["message"]
    assert report["rank3"] is not None and "4-dimensional" in report["rank3"]["message"]
    assert report["shapes"]["empty"] == {"probabilities": [0, 30, 40, 1], "mask": [0, 30, 40, 1]}
    assert report["shapes"]["1x1"] == {"probabilities": [2, 1, 1, 1], "mask": [2, 1, 1, 1]}


def encoded_cases():
    """Image files of several formats and sizes, each with the pixels `read_image` reads."""
    rgb = np.random.default_rng(4).integers(0, 256, (43, 61, 3), dtype=np.uint8)
    grey = rgb[:41, :57, 0]
    files = {
        "jpeg": encode(rgb, "JPEG", quality=90),
        "jpeg turned": encode(rgb[:, :50], "JPEG", exif=exif_block(6)),
        "png": encode(rgb[:30], "PNG"),
        "png greyscale": encode(grey, "PNG"),
        "png 16-bit": encode(grey.astype(np.uint16) * 257 + 100, "PNG"),
        "png rgba": encode(np.dstack([rgb, rgb[..., :1]]), "PNG"),
        "bmp": encode(rgb[:25, :35], "BMP"),
    }
    cases = {}
    for name, data in files.items():
        cases[f"{name}/file"] = np.frombuffer(data, np.uint8)
        cases[f"{name}/pixels"] = read_image(BytesPath(data))
    return cases


class BytesPath:
    """What `read_image` takes for a path: something with `read_bytes()`."""

    def __init__(self, data):
        self.data = data

    def read_bytes(self):
        return self.data


def bounding_box(mask):
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return [-1, -1, -1, -1]
    return [int(rows[0]), int(columns[0]), int(rows[-1]) + 1, int(columns[-1]) + 1]


@pytest.mark.slow
def test_fresh_process_serves_encoded_images_as_the_default_signature_serves_read_image(
    largest_component_exported, tmp_path
):
    cases = encoded_cases()
    np.savez(tmp_path / "cases.npz", **cases)
    args = [tmp_path / "cases.npz", tmp_path / "outputs.npz", tmp_path / "report.json"]
    env = subprocess_env(TF_ENABLE_ONEDNN_OPTS="1")
    run_python(
        [SCRIPTS_DIR / "serve_encoded_images.py", largest_component_exported[0], *args], env=env
    )
    outputs = np.load(tmp_path / "outputs.npz")
    report = json.loads((tmp_path / "report.json").read_text())

    assert not report["ph2_tf_imported"]
    names = sorted({key.split("/")[0] for key in cases})
    fractions = []
    for name in names:
        default_mask = outputs[f"{name}/default_mask"]
        assert default_mask.shape == cases[f"{name}/pixels"].shape[:2], name
        np.testing.assert_array_equal(outputs[f"{name}/mask"], default_mask * 255, err_msg=name)
        np.testing.assert_array_equal(outputs[f"{name}/batch_mask"], outputs[f"{name}/mask"])
        served = report["cases"][name]
        assert served["lesion_fraction"] == pytest.approx(default_mask.mean(), abs=1e-7)
        assert served["bounding_box"] == bounding_box(default_mask > 0), name
        fractions.append(served["lesion_fraction"])
    assert 0 < min(fractions) and max(fractions) < 1  # masks with lesion and background
    assert outputs["jpeg turned/mask"].shape == (50, 43)  # stored 43 x 50; EXIF 6 turns it
    first = outputs[f"{names[0]}/default_probabilities"]
    np.testing.assert_array_equal(outputs["probabilities"], np.round(first * 65535))

    assert report["empty"] == {
        "mask_png_bytes": [0],
        "lesion_fraction": [0],
        "bounding_box": [0, 4],
    }
    assert "`images_bytes`[1] is not a JPEG, PNG or BMP file" in report["undecodable"]["message"]
    assert "Shape of tensor images_bytes [] is not compatible" in report["scalar"]["message"]


def test_encoded_images_over_max_pixels_are_refused_from_their_header(exported):
    serve = tf.saved_model.load(str(exported[2])).signatures[export.ENCODED_SIGNATURE]
    # A PNG header alone: the limit is checked before anything is decoded.
    header = struct.pack(">IIBBBBB", 1, export.MAX_PIXELS + 1, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        serve(images_bytes=tf.constant([encode(np.zeros((5, 5, 3), np.uint8), "PNG"), png]))
    assert (
        f"`images_bytes`[1] has {export.MAX_PIXELS + 1} x 1 pixels: at most {export.MAX_PIXELS} "
        "pixels (height x width) per image are served"
    ) in info.value.message


def test_signature_rejects_images_without_3_channels(exported):
    loaded = tf.saved_model.load(str(exported[2]))
    serve = loaded.signatures[export.SIGNATURE]
    for channels in (1, 4):
        images = tf.zeros([1, 20, 24, channels], tf.uint8)
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            serve(images=images)
        # The check's own message, with the channel count, not an error from inside the model.
        assert "`images` must be RGB, [N, H, W, 3]" in info.value.message
        assert f"[{channels}]" in info.value.message


def test_flip_tta_signature_averages_the_default_signature_over_flips(exported):
    _, _, path = exported
    loaded = tf.saved_model.load(str(path))
    plain, tta = (loaded.signatures[name] for name in (export.SIGNATURE, export.FLIP_TTA_SIGNATURE))
    images = np.random.default_rng(1).integers(0, 256, (2, 90, 130, 3), dtype=np.uint8)

    def probabilities(pixels):
        return plain(**{export.INPUT_NAME: tf.constant(pixels)})["probabilities"].numpy()

    expected = (
        probabilities(images)
        + probabilities(images[:, :, ::-1])[:, :, ::-1]
        + probabilities(images[:, ::-1])[:, ::-1]
    ) / 3
    outputs = tta(**{export.INPUT_NAME: tf.constant(images)})
    # Flipping the image before or after its resize may round a pixel to the next grey level.
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=2e-3)
    assert np.abs(outputs["probabilities"] - probabilities(images)).max() > 1e-3
    np.testing.assert_array_equal(outputs["mask"], outputs["probabilities"] >= 0.5)


def test_a_flip_tta_export_serves_flips_by_default_and_one_pass_on_request(exported, tmp_path):
    model, _, plain_path = exported
    flips_path = export.export_for_serving(model, tmp_path, "flips", flip_tta=True)
    plain, flips = (tf.saved_model.load(str(p)).signatures for p in (plain_path, flips_path))
    images = tf.constant(np.random.default_rng(5).integers(0, 256, (2, 70, 90, 3), np.uint8))
    for flips_name, plain_name in (
        (export.SIGNATURE, export.FLIP_TTA_SIGNATURE),
        (export.FLIP_TTA_SIGNATURE, export.FLIP_TTA_SIGNATURE),
        (export.SINGLE_PASS_SIGNATURE, export.SIGNATURE),
        (export.SINGLE_PASS_SIGNATURE, export.SINGLE_PASS_SIGNATURE),
    ):
        served, expected = flips[flips_name](images=images), plain[plain_name](images=images)
        np.testing.assert_allclose(served["probabilities"], expected["probabilities"], atol=1e-6)
    default, single = (
        flips[name](images=images) for name in (export.SIGNATURE, "serving_single_pass")
    )
    assert np.abs(default["probabilities"] - single["probabilities"]).max() > 1e-3
    # The encoded signature serves the default computation: the flips.
    png = encode(images.numpy()[0], "PNG")
    encoded = flips[export.ENCODED_SIGNATURE](images_bytes=tf.constant([png]))
    mask = tf.io.decode_png(encoded[export.MASK_PNG][0]).numpy() > 0
    np.testing.assert_array_equal(mask, default["mask"].numpy()[0] > 0)


@pytest.mark.slow
def test_largest_component_export_post_processes_both_signatures_masks(exported, tmp_path):
    model, _, plain_path = exported
    images = np.random.default_rng(2).integers(0, 256, (2, 70, 110, 3), dtype=np.uint8)
    plain = tf.saved_model.load(str(plain_path))
    # A threshold that leaves the untrained model's map in several pieces with holes.
    probabilities = plain.signatures[export.SIGNATURE](images=tf.constant(images))["probabilities"]
    threshold = float(np.quantile(probabilities, 0.6))
    plain_path = export.export_for_serving(model, tmp_path, "plain", threshold=threshold)
    largest_path = export.export_for_serving(
        model, tmp_path, "largest", threshold=threshold, largest_component=True
    )
    plain, largest = (tf.saved_model.load(str(p)) for p in (plain_path, largest_path))
    for name in (export.SIGNATURE, export.SINGLE_PASS_SIGNATURE, export.FLIP_TTA_SIGNATURE):
        expected = plain.signatures[name](images=tf.constant(images))
        outputs = largest.signatures[name](images=tf.constant(images))
        np.testing.assert_array_equal(outputs["probabilities"], expected["probabilities"])
        plain_masks = expected["mask"].numpy()[..., 0] > 0
        masks = outputs["mask"].numpy()[..., 0]
        assert outputs["mask"].dtype == tf.uint8 and masks.shape == plain_masks.shape
        for mask, plain_mask in zip(masks, plain_masks, strict=True):
            np.testing.assert_array_equal(mask > 0, largest_component_filled(plain_mask))
            assert (mask > 0).sum() != plain_mask.sum()  # the post-processing did something


@pytest.fixture(scope="module")
def largest_component_exported(tmp_path_factory):
    """A tiny UNet exported with the largest-component post-processing and the refining
    second pass in its graph, and the model."""
    # Seeded, so that its weights do not depend on which tests ran before in the process: at
    # this seed every encoded test image gets a small lesion, whose refining window is smaller
    # than the image, as the tests using it need.
    keras.utils.set_random_seed(35)
    model = build_model("unet", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), width=0.125)
    base_dir = tmp_path_factory.mktemp("saved_models")
    path = export.export_for_serving(model, base_dir, "unet", largest_component=True, refine=REFINE)
    return path, model


def test_a_refined_export_serves_what_the_refining_serving_function_computes(
    largest_component_exported,
):
    path, model = largest_component_exported
    loaded = tf.saved_model.load(str(path))
    images = np.random.default_rng(4).integers(0, 256, (2, 90, 130, 3), dtype=np.uint8)
    for name, flip_tta in (
        (export.SIGNATURE, False),
        (export.SINGLE_PASS_SIGNATURE, False),
        (export.FLIP_TTA_SIGNATURE, True),
    ):
        serve = export.serving_function(
            model, IMAGE_SIZE, flip_tta=flip_tta, largest_component=True, refine=REFINE
        )
        expected = serve(tf.constant(images))
        outputs = loaded.signatures[name](images=tf.constant(images))
        # The export folds BatchNorm into the convolutions: equal up to float rounding.
        np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], atol=1e-5)
    unrefined = export.serving_function(model, IMAGE_SIZE)(tf.constant(images))
    assert np.abs(outputs["probabilities"] - unrefined["probabilities"]).max() > 1e-3


@pytest.mark.parametrize("largest_component", [False, True])
def test_an_empty_batch_gives_empty_outputs(
    exported, largest_component_exported, largest_component
):
    path = largest_component_exported[0] if largest_component else exported[2]
    loaded = tf.saved_model.load(str(path))
    for name in (export.SIGNATURE, export.FLIP_TTA_SIGNATURE):
        outputs = loaded.signatures[name](images=tf.zeros([0, 30, 40, 3], tf.uint8))
        assert outputs["probabilities"].shape == (0, 30, 40, 1)
        assert outputs["probabilities"].dtype == tf.float32
        assert outputs["mask"].shape == (0, 30, 40, 1) and outputs["mask"].dtype == tf.uint8


def test_one_pixel_images_are_served(largest_component_exported):
    loaded = tf.saved_model.load(str(largest_component_exported[0]))
    images = np.random.default_rng(3).integers(0, 256, (3, 1, 1, 3), dtype=np.uint8)
    for name in (export.SIGNATURE, export.FLIP_TTA_SIGNATURE):
        outputs = loaded.signatures[name](images=tf.constant(images))
        assert outputs["probabilities"].shape == outputs["mask"].shape == (3, 1, 1, 1)
        # One pixel is its own largest component, without holes.
        np.testing.assert_array_equal(outputs["mask"], outputs["probabilities"] >= 0.5)


def test_images_over_max_pixels_are_refused_with_the_limit(exported):
    serve = tf.saved_model.load(str(exported[2])).signatures[export.SIGNATURE]
    limit = f"`images` must have at most {export.MAX_PIXELS} pixels (height x width) per image"
    too_many = [
        [1, 1, export.MAX_PIXELS + 1, 3],
        [0, 50_000, 50_000, 3],  # an empty batch too; height x width does not fit an int32
    ]
    for shape in too_many:
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            serve(images=tf.zeros(shape, tf.uint8))
        assert limit in info.value.message
    at_the_limit = serve(images=tf.zeros([0, 2, export.MAX_PIXELS // 2, 3], tf.uint8))
    assert at_the_limit["mask"].shape == (0, 2, export.MAX_PIXELS // 2, 1)


@pytest.mark.parametrize("threshold", [0.0, 1.0, -1.0, 2.0, float("nan")])
def test_a_threshold_outside_0_1_is_refused(exported, threshold):
    with pytest.raises(ValueError, match="threshold must be strictly between 0 and 1"):
        export.serving_function(exported[0], IMAGE_SIZE, threshold=threshold)


def test_a_stray_staging_folder_is_never_served_and_the_next_export_removes_it(exported, tmp_path):
    model, _, path = exported
    model_dir = tmp_path / "segnet"
    shutil.copytree(path, model_dir / "1")
    # A complete SavedModel, as an export killed before its rename leaves it.
    stray = model_dir / versions.STAGING_DIR
    shutil.copytree(path, stray)
    assert not versions.is_version_name(stray.name)  # TF Serving serves all-digit names only
    assert versions.served_versions(model_dir) == [model_dir / "1"]
    assert versions.resolve(model_dir) == model_dir / "1"
    assert versions.next_version(model_dir) == 2
    assert export.write_models_config(tmp_path).read_text().count("name:") == 1

    assert export.export_for_serving(model, tmp_path, "segnet") == model_dir / "2"
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "2"]
