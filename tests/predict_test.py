"""Tests of `python -m ph2_tf predict` with a tiny untrained SavedModel.

The outputs are checked against the SavedModel's own `serving_default` signature run here, so the
tests hold for whatever the untrained model predicts. Which files a folder yields (PH2 ground-truth
masks are skipped) and how the overlay draws a mask are checked without TensorFlow. `--remote` is
checked against a stand-in for TF Serving's REST API (`tf_serving_stand_in`) serving the same
SavedModel.
"""

import io
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_serving_stand_in
from conftest import REPO_ROOT, run_python, subprocess_env
from PIL import Image
from scipy import ndimage

import tfds_ph2
from ph2_tf import cli
from ph2_tf.cli.environment import ABSL_UNINITIALISED_BANNER
from ph2_tf.models import build_model
from ph2_tf.serving import export
from ph2_tf.serving.postprocessing import largest_component_filled
from ph2_tf.serving.predict import (
    IMAGE_SUFFIXES,
    OUTLINE_COLOUR,
    draw_outline,
    is_ph2_ground_truth,
    outline_width,
    plan_outputs,
)

RNG = np.random.default_rng(0)
HEIGHT, WIDTH = 40, 56
RGB = RNG.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory):
    """An untrained 32x32 UNet (width 1/8) exported in TF Serving layout; its version dir."""
    keras.utils.set_random_seed(0)
    model = build_model("unet", input_shape=(32, 32, 3), width=0.125)
    base_dir = tmp_path_factory.mktemp("saved_models")
    return export.export_for_serving(model, base_dir=base_dir, model_name="unet", image_size=32)


@pytest.fixture(scope="session")
def probabilities(saved_model):
    """The signature's lesion probability map (H, W) of a uint8 RGB image."""
    loaded = tf.saved_model.load(str(saved_model))
    serve = loaded.signatures[export.SIGNATURE]

    def run(image):
        outputs = serve(**{export.INPUT_NAME: tf.constant(image[None])})
        return outputs["probabilities"].numpy()[0, ..., 0]

    return run


def _save(pixels, path, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **kwargs)
    return path


def _read(path):
    return np.asarray(Image.open(path))


def _predict(capsys, *args):
    """Runs `predict` in this process; returns (exit status, stdout, stderr lines)."""
    status = cli.main(["predict", *map(str, args)])
    captured = capsys.readouterr()
    # tqdm redraws its bar with carriage returns; keep the last state of each line.
    return status, captured.out, [line.split("\r")[-1] for line in captured.err.splitlines()]


@pytest.mark.slow  # a predict subprocess: TensorFlow starts again
def test_bad_inputs_are_reported_and_the_rest_is_predicted(saved_model, tmp_path):
    images = tmp_path / "images"
    inputs = [
        _save(RGB, images / "a.png"),
        images / "broken.png",
        _save(RGB, images / "a.jpg"),
        images / "empty.jpg",
        _save(GREY.astype(np.uint16) * 257, images / "gray16.png"),
        _save(GREY, images / "gray8.png"),
        _save(RGB[::-1], images / "later.png"),
    ]
    buffer = io.BytesIO()
    Image.fromarray(RGB).save(buffer, format="PNG")
    inputs[1].write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # Header intact.
    inputs[3].write_bytes(b"")
    out_dir = tmp_path / "out"
    env = subprocess_env()
    del env["TF_CPP_MIN_LOG_LEVEL"]  # The command line's own setting, as a user gets it.

    proc = run_python(
        ["-m", "ph2_tf", "predict", "--saved-model", saved_model.parent, "--output-dir"]
        + [out_dir, "--probabilities", *inputs],
        check=False,
        env=env,
    )

    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    # The first line names the version served; TensorFlow's start-up lines are not shown.
    assert proc.stderr.splitlines()[0] == f"predict: using the SavedModel in {saved_model}"
    assert ABSL_UNINITIALISED_BANNER not in proc.stderr
    assert not [line for line in proc.stderr.splitlines() if line.startswith("I0000 ")]
    assert "cuInit" not in proc.stderr  # subprocess_env hides the GPUs: a certain failure.
    written = ["a.jpg", "a.png", "gray16.png", "gray8.png", "later.png"]
    assert sorted(p.name for p in out_dir.glob("*.mask.png")) == [f"{n}.mask.png" for n in written]
    assert len(list(out_dir.glob("*.overlay.png"))) == 5
    for bad in ("broken.png", "empty.jpg"):
        lines = [line for line in proc.stderr.splitlines() if bad in line]
        assert len(lines) == 1 and "cannot read image" in lines[0], proc.stderr
    assert "file is truncated" in proc.stderr and "the file is empty" in proc.stderr
    assert proc.stderr.rstrip().endswith("predict: 5 written, 2 failed")
    # The 16-bit image is the 8-bit one times 257: scaled back, it is the same image.
    for kind in ("mask", "probabilities"):
        np.testing.assert_array_equal(
            _read(out_dir / f"gray16.png.{kind}.png"), _read(out_dir / f"gray8.png.{kind}.png")
        )
    assert np.unique(_read(out_dir / "gray8.png.probabilities.png")).size > 1


def test_the_first_line_names_the_version_served(saved_model, tmp_path, capsys, monkeypatch):
    model_dir = tmp_path / "unet"
    for version in ("2", "10"):  # 10 is the latest, though it sorts first as text
        shutil.copytree(saved_model, model_dir / version)
    (model_dir / "11").mkdir()  # no SavedModel in it: not a version
    monkeypatch.chdir(tmp_path)

    status, _, err = _predict(
        capsys, "--saved-model", "unet", "--output-dir", "out", _save(RGB, tmp_path / "a.png")
    )

    assert status == 0, err
    assert err[0] == f"predict: using the SavedModel in {model_dir / '10'}"  # absolute


def test_exif_rotated_jpeg_is_predicted_as_displayed(saved_model, probabilities, tmp_path, capsys):
    # Orientation 6: the viewer turns the stored pixels 90 degrees clockwise.
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = _save(np.ascontiguousarray(np.rot90(RGB)), tmp_path / "photo.jpg", exif=exif)
    displayed = np.rot90(np.asarray(Image.open(photo).convert("RGB")), -1)
    assert displayed.shape == (HEIGHT, WIDTH, 3)

    status, _, _ = _predict(
        capsys, "--saved-model", saved_model, "--output-dir", tmp_path, "--probabilities", photo
    )

    assert status == 0
    assert _read(tmp_path / "photo.jpg.mask.png").shape == (HEIGHT, WIDTH)
    expected = np.round(probabilities(np.ascontiguousarray(displayed)) * 65535)
    np.testing.assert_allclose(_read(tmp_path / "photo.jpg.probabilities.png"), expected, atol=1)


def test_folder_input_mirrors_its_tree(saved_model, tmp_path, capsys):
    folder = tmp_path / "in"
    for name in ("a.png", "sub/b.JPG", "sub/deeper/c.tif", "sub/d.bmp"):
        _save(RGB, folder / name)
    (folder / "notes.txt").write_text("not an image")
    _save(RGB, folder / "old.png.mask.png")  # An earlier run's output: not an input.
    out_dir = tmp_path / "out"

    status, out, err = _predict(
        capsys, "--saved-model", saved_model, "--output-dir", out_dir, folder
    )

    assert status == 0, err
    assert sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*.mask.png")) == [
        "a.png.mask.png",
        "sub/b.JPG.mask.png",
        "sub/d.bmp.mask.png",
        "sub/deeper/c.tif.mask.png",
    ]
    assert (out_dir / "sub" / "deeper" / "c.tif.overlay.png").is_file()
    assert len(out.splitlines()) == 4 and err[-1] == "predict: 4 written, 0 failed"


def _ph2_case(folder, case_id):
    """A PH2 case as the archive lays it out: image, lesion mask and one colour-class mask."""
    image = _save(RGB, folder / case_id / f"{case_id}_Dermoscopic_Image" / f"{case_id}.png")
    lesion = _save(GREY, folder / case_id / f"{case_id}_lesion" / f"{case_id}_lesion.bmp")
    _save(GREY, folder / case_id / f"{case_id}_roi" / f"{case_id}_R1_Label4.bmp")
    return image, lesion


def test_ph2_ground_truth_masks_are_skipped_in_folders_but_read_when_named(
    saved_model, tmp_path, capsys
):
    cases = tmp_path / "cases"
    _, lesion = _ph2_case(cases, "IMD001")
    # A `_lesion` folder that is not its case's ground truth is searched as usual.
    _save(RGB, cases / "clinic" / "mole_lesion" / "photo.png")
    out_dir = tmp_path / "out"

    status, out, err = _predict(
        capsys, "--saved-model", saved_model, "--output-dir", out_dir, cases, lesion,
        lesion.parent,
    )  # fmt: skip

    assert status == 1, err
    assert sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*.mask.png")) == [
        "IMD001/IMD001_Dermoscopic_Image/IMD001.png.mask.png",
        "IMD001_lesion.bmp.mask.png",  # named explicitly
        "clinic/mole_lesion/photo.png.mask.png",
    ]
    assert len(out.splitlines()) == 3
    assert f"predict: {lesion.parent}: no {', '.join(IMAGE_SUFFIXES)} files in this folder " \
        "other than PH2 ground-truth masks" in err  # fmt: skip
    assert "predict: skipped 3 PH2 ground-truth masks (in <case>_lesion and <case>_roi " \
        "folders); name a file to predict it" in err  # fmt: skip
    assert err[-1] == "predict: 3 written, 1 failed"


@pytest.mark.parametrize(
    "path, expected",
    [
        ("IMD001/IMD001_lesion/IMD001_lesion.bmp", True),
        ("IMD001/IMD001_roi/IMD001_R2_Label3.bmp", True),
        ("IMD001/IMD001_Dermoscopic_Image/IMD001.bmp", False),
        ("IMD001/IMD002_lesion/IMD002_lesion.bmp", False),  # another case's folder name
        ("IMD001/IMD001_lesion/copies/IMD001_lesion.bmp", False),  # not directly inside
        ("IMD001_lesion/IMD001_lesion.bmp", False),  # no case folder above it
        ("IMD001/IMD001_roi/../IMD001_lesion/IMD001_lesion.bmp", True),
    ],
)
def test_ph2_ground_truth_rule(path, expected, tmp_path):
    assert is_ph2_ground_truth(tmp_path / path) is expected


def test_ph2_ground_truth_rule_on_a_relative_path(tmp_path, monkeypatch):
    (tmp_path / "IMD001" / "IMD001_lesion").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "IMD001" / "IMD001_lesion")
    assert is_ph2_ground_truth("IMD001_lesion.bmp")
    assert is_ph2_ground_truth("../IMD001_roi/IMD001_R1_Label4.bmp")
    assert not is_ph2_ground_truth("../IMD001_Dermoscopic_Image/IMD001.bmp")


@pytest.mark.parametrize("archive", ["dummy", "real"])
def test_a_ph2_archive_folder_plans_its_dermoscopic_images_only(archive, tmp_path):
    if archive == "dummy":
        root = tfds_ph2.ph2.DUMMY_DATA_DIR
    elif os.environ.get("PH2_MANUAL_DIR"):
        root = os.environ["PH2_MANUAL_DIR"]
    else:
        pytest.skip("PH2_MANUAL_DIR is not set")
    images = sorted(pathlib.Path(root).rglob("*_Dermoscopic_Image/IMD*.*"))
    masks = sorted(pathlib.Path(root).rglob("*_lesion/*.bmp"))
    masks += sorted(pathlib.Path(root).rglob("*_roi/*.bmp"))
    assert images and len(masks) > len(images)  # every case has a lesion mask; some have ROIs

    plan, failures, skipped = plan_outputs([root], tmp_path)

    assert [source for source, _ in plan] == images and not failures
    assert sorted(skipped) == sorted(masks)


def test_outline_is_drawn_on_the_mask_edge_only():
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[10:30, 10:46] = True
    interior = np.zeros_like(mask)
    interior[13:27, 13:43] = True  # 3 pixels in from each side: the outline width here
    assert outline_width(RGB.shape) == 3

    drawn = draw_outline(RGB, mask)

    outline = mask & ~interior
    assert (drawn[outline] == OUTLINE_COLOUR).all()
    np.testing.assert_array_equal(drawn[~outline], RGB[~outline])  # lesion and skin unchanged


def test_outline_is_not_drawn_along_the_image_edge():
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[:, :20] = True  # a lesion running off the top, bottom and left of the image
    drawn = draw_outline(RGB, mask)
    coloured = (drawn != RGB).any(axis=-1)
    expected = np.zeros_like(mask)
    expected[:, 17:20] = True
    np.testing.assert_array_equal(coloured, expected)


@pytest.mark.parametrize("fill", [False, True])
def test_an_empty_or_full_mask_leaves_the_image_unchanged(fill):
    drawn = draw_outline(RGB, np.full((HEIGHT, WIDTH), fill))
    np.testing.assert_array_equal(drawn, RGB)


def test_outline_width_grows_with_large_images():
    assert outline_width((576, 767, 3)) == 3
    assert outline_width((4000, 6000, 3)) == 12


def test_probabilities_and_threshold(saved_model, probabilities, tmp_path, capsys):
    path = _save(RGB, tmp_path / "a.png")
    expected = probabilities(RGB)
    threshold = float(np.median(expected))  # Half the pixels on each side.
    assert 0.0 < threshold < 1.0

    status, _, err = _predict(
        capsys,
        "--saved-model",
        saved_model,
        "--output-dir",
        tmp_path / "out",
        "--probabilities",
        "--threshold",
        repr(threshold),
        path,
    )

    assert status == 0, err
    stored = Image.open(tmp_path / "out" / "a.png.probabilities.png")
    assert stored.mode == "I;16"
    np.testing.assert_allclose(np.asarray(stored), np.round(expected * 65535), atol=1)
    mask = _read(tmp_path / "out" / "a.png.mask.png")
    clear = np.abs(expected - threshold) > 1e-6
    np.testing.assert_array_equal(mask[clear], np.where(expected >= threshold, 255, 0)[clear])
    assert 0 < (mask == 255).mean() < 1
    overlay = _read(tmp_path / "out" / "a.png.overlay.png")
    np.testing.assert_array_equal(overlay, draw_outline(RGB, mask > 0))


@pytest.mark.parametrize(
    "threshold, reason",
    [("0", "not strictly between 0 and 1"), ("1.5", "not strictly between"), ("half", "number")],
)
def test_threshold_outside_0_1_is_a_usage_error(threshold, reason, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(
            ["predict", "--saved-model", str(tmp_path), "--output-dir", str(tmp_path)]
            + ["--threshold", threshold, "a.png"]
        )
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --threshold:" in err and reason in err


def test_unreadable_inputs_and_name_clashes_are_one_line_each(saved_model, tmp_path, capsys):
    good = _save(RGB, tmp_path / "one" / "a.png")
    clash = _save(RGB, tmp_path / "two" / "a.png")  # Same output name as `good`.
    text = tmp_path / "text.png"
    text.write_text("not an image")
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    bad = [clash, text, tmp_path / "missing.png", empty_folder]

    status, _, err = _predict(
        capsys, "--saved-model", saved_model, "--output-dir", tmp_path / "out", good, good, *bad
    )

    assert status == 1
    assert (tmp_path / "out" / "a.png.mask.png").is_file()
    for path in bad:
        assert len([line for line in err if str(path) in line]) == 1, (path, err)
    assert "would overwrite those of" in "\n".join(err)
    assert err[-1] == "predict: 1 written, 4 failed"


def test_output_dir_that_is_a_file(saved_model, tmp_path, capsys):
    (tmp_path / "out").write_text("a file")
    status, _, err = _predict(
        capsys, "--saved-model", saved_model, "--output-dir", tmp_path / "out", "a.png"
    )
    assert status == 2
    assert err == [
        f"python -m ph2_tf predict: error: --output-dir {tmp_path / 'out'} exists and "
        "is not a directory"
    ]


def test_saved_model_path_without_a_saved_model(tmp_path, capsys):
    status, _, err = _predict(
        capsys, "--saved-model", tmp_path, "--output-dir", tmp_path / "out", "a.png"
    )
    assert status == 2 and len(err) == 1
    assert err[0].startswith("python -m ph2_tf predict: error: no SavedModel in")
    assert not (tmp_path / "out").exists()


def test_flip_tta_uses_the_tta_signature(saved_model, probabilities, tmp_path, capsys):
    path = _save(RGB, tmp_path / "a.png")
    serve = tf.saved_model.load(str(saved_model)).signatures[export.FLIP_TTA_SIGNATURE]
    expected = serve(**{export.INPUT_NAME: tf.constant(RGB[None])})["probabilities"].numpy()
    status, _, err = _predict(
        capsys, "--saved-model", saved_model, "--output-dir", tmp_path, "--flip-tta",
        "--probabilities", path,
    )  # fmt: skip
    assert status == 0, err
    stored = np.asarray(Image.open(tmp_path / "a.png.probabilities.png"))
    np.testing.assert_allclose(stored, np.round(expected[0, ..., 0] * 65535), atol=1)
    assert np.abs(stored / 65535 - probabilities(RGB)).max() > 1e-3  # not the plain signature


def test_single_pass_uses_one_pass_where_the_default_averages_flips(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    model = build_model("unet", input_shape=(32, 32, 3), width=0.125)
    flips = export.export_for_serving(model, tmp_path / "models", "unet", flip_tta=True)
    signatures = tf.saved_model.load(str(flips)).signatures
    expected = {
        name: signatures[name](**{export.INPUT_NAME: tf.constant(RGB[None])})["probabilities"]
        for name in (export.SIGNATURE, export.SINGLE_PASS_SIGNATURE)
    }
    path = _save(RGB, tmp_path / "a.png")
    for flags, name in (([], export.SIGNATURE), (["--single-pass"], export.SINGLE_PASS_SIGNATURE)):
        output = tmp_path / name
        status, _, err = _predict(
            capsys, "--saved-model", flips, "--output-dir", output, *flags, "--probabilities", path
        )
        assert status == 0, err
        stored = np.asarray(Image.open(output / "a.png.probabilities.png"))
        np.testing.assert_allclose(stored, np.round(expected[name][0, ..., 0] * 65535), atol=1)
    difference = expected[export.SIGNATURE] - expected[export.SINGLE_PASS_SIGNATURE]
    assert np.abs(difference).max() > 1e-3  # the default is not the single pass
    with pytest.raises(SystemExit):
        _predict(capsys, "--saved-model", flips, "--flip-tta", "--single-pass", path)
    assert "--single-pass: not allowed with argument --flip-tta" in capsys.readouterr().err


def export_with_serving_default_only(version_dir):
    """A tiny SavedModel with `serving_default` alone, as early versions were exported."""
    model = build_model("unet", input_shape=(32, 32, 3), width=0.125)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        export.SIGNATURE,
        export.serving_function(model, 32),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=export.INPUT_NAME)],
    )
    archive.write_out(str(version_dir), verbose=False)


def test_flip_tta_on_a_saved_model_without_it_is_one_error(tmp_path, capsys):
    export_with_serving_default_only(tmp_path / "unet" / "1")  # as version 1 was exported
    status, _, err = _predict(
        capsys, "--saved-model", tmp_path / "unet", "--output-dir", tmp_path / "out",
        "--flip-tta", _save(RGB, tmp_path / "a.png"),
    )  # fmt: skip
    assert status == 2 and len(err) == 2
    assert err[0] == f"predict: using the SavedModel in {tmp_path / 'unet' / '1'}"
    assert "has no 'serving_flip_tta' signature (exported before it existed)" in err[1]


def test_largest_component_keeps_one_filled_lesion(saved_model, probabilities, tmp_path, capsys):
    path = _save(RGB, tmp_path / "a.png")
    expected = probabilities(RGB)
    # A threshold that leaves the untrained model's noisy map in several pieces.
    threshold = float(np.quantile(expected, 0.7))
    args = ["--saved-model", saved_model, "--threshold", repr(threshold), path]
    status, _, err = _predict(capsys, "--output-dir", tmp_path / "plain", *args)
    assert status == 0, err
    status, _, err = _predict(
        capsys, "--output-dir", tmp_path / "largest", "--largest-component", *args
    )
    assert status == 0, err

    plain = _read(tmp_path / "plain" / "a.png.mask.png") > 0
    largest = _read(tmp_path / "largest" / "a.png.mask.png") > 0
    assert ndimage.label(plain, np.ones((3, 3)))[1] > 1  # the case is not trivial
    labels, count = ndimage.label(largest, np.ones((3, 3)))
    assert count == 1
    assert not ndimage.binary_fill_holes(largest)[~largest].any()  # no holes left
    # The kept lesion is the plain mask's largest piece, plus only its holes.
    plain_labels = ndimage.label(plain, np.ones((3, 3)))[0]
    biggest = np.argmax(np.bincount(plain_labels.ravel())[1:]) + 1
    np.testing.assert_array_equal(largest & plain, plain_labels == biggest)


@pytest.mark.slow  # exports a second SavedModel
def test_threshold_redoes_the_post_processing_the_model_was_exported_with(
    probabilities, tmp_path, capsys
):
    keras.utils.set_random_seed(0)  # the `saved_model` fixture's model, exported with it
    model = build_model("unet", input_shape=(32, 32, 3), width=0.125)
    version_dir = export.export_for_serving(
        model, tmp_path / "saved_models", "unet", image_size=32, largest_component=True
    )
    (version_dir / "metrics.json").write_text(
        json.dumps({"source": {"serving": {"threshold": 0.5, "largest_component": True}}})
    )
    path = _save(RGB, tmp_path / "a.png")
    threshold = float(np.quantile(probabilities(RGB), 0.7))
    plain = probabilities(RGB) >= threshold
    assert ndimage.label(plain, np.ones((3, 3)))[1] > 1  # the case is not trivial
    args = ["--saved-model", version_dir, "--output-dir", tmp_path / "out", path]
    status, _, err = _predict(capsys, "--threshold", repr(threshold), *args)
    assert status == 0, err
    mask = _read(tmp_path / "out" / "a.png.mask.png") > 0
    np.testing.assert_array_equal(mask, largest_component_filled(plain))


@pytest.mark.parametrize("damage", ["saved_model.pb", "variables"])
def test_a_damaged_saved_model_is_one_error(saved_model, damage, tmp_path, capsys):
    version_dir = tmp_path / "unet" / "1"
    shutil.copytree(saved_model, version_dir)
    if damage == "saved_model.pb":
        (version_dir / "saved_model.pb").write_bytes(b"not a SavedModel")
    else:  # cut short, as by a full disk
        for path in (version_dir / "variables").glob("variables.data-*"):
            path.write_bytes(path.read_bytes()[:100])

    status, _, err = _predict(
        capsys, "--saved-model", version_dir, "--output-dir", tmp_path / "out",
        _save(RGB, tmp_path / "a.png"),
    )  # fmt: skip

    assert status == 2 and len(err) == 2, err
    error = f"python -m ph2_tf predict: error: cannot load the SavedModel {version_dir}: "
    assert err[1].startswith(error)
    assert not (tmp_path / "out").exists()


def test_outputs_stay_under_the_output_dir_whatever_the_inputs_paths(
    saved_model, tmp_path, capsys, monkeypatch
):
    _save(RGB, tmp_path / "elsewhere" / "a.png")
    _save(RGB, tmp_path / "elsewhere" / "deeper" / "b.png")
    _save(RGB, tmp_path / "work" / "c.png")
    monkeypatch.chdir(tmp_path / "work")
    inputs = [
        "../elsewhere/a.png",  # a relative file outside the working directory
        tmp_path / "elsewhere" / "deeper",  # an absolute folder
        "../work/../elsewhere/deeper/..",  # a folder spelled with `..`
        (tmp_path / "work" / "c.png").absolute(),  # an absolute file
    ]

    status, _, err = _predict(capsys, "--saved-model", saved_model, "--output-dir", "out", *inputs)

    assert status == 0, err
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.mask.png"))
    assert written == [
        "work/out/a.png.mask.png",
        "work/out/b.png.mask.png",
        "work/out/c.png.mask.png",
        "work/out/deeper/b.png.mask.png",
    ]


def test_an_image_over_the_signatures_pixel_limit_is_one_line(saved_model, tmp_path, capsys):
    wide = _save(np.zeros((1, export.MAX_PIXELS + 1, 3), np.uint8), tmp_path / "wide.png")
    status, _, err = _predict(
        capsys, "--saved-model", saved_model, "--output-dir", tmp_path / "out", wide,
        _save(RGB, tmp_path / "a.png"),
    )  # fmt: skip
    assert status == 1
    assert (
        f"predict: prediction failed for {wide}: `images` must have at most {export.MAX_PIXELS} "
        "pixels (height x width) per image: resize larger images first"
    ) in err
    assert err[-1] == "predict: 1 written, 1 failed"


@pytest.fixture(scope="module")
def served(saved_model):
    """The `saved_model` fixture behind a stand-in for TF Serving's REST API; its predict URL."""
    with tf_serving_stand_in.serving(saved_model, "unet", saved_model.name) as root:
        yield f"{root}/v1/models/unet:predict"


def _exif_rotated_jpeg(path):
    exif = Image.Exif()
    exif[0x0112] = 6  # turned 90 degrees clockwise for display
    return _save(np.ascontiguousarray(np.rot90(RGB)), path, exif=exif)


def test_remote_writes_what_the_saved_model_writes(saved_model, served, tmp_path, capsys):
    inputs = [
        _save(RGB, tmp_path / "a.png"),
        _exif_rotated_jpeg(tmp_path / "b.jpg"),
        _save(GREY, tmp_path / "c.bmp"),
        _save(GREY.astype(np.uint16) * 257, tmp_path / "d.png"),
    ]
    common = ["--probabilities", "--largest-component", *inputs]

    status, out, err = _predict(
        capsys, "--remote", served, "--output-dir", tmp_path / "remote", *common
    )
    assert status == 0, err
    assert err[0] == f"predict: using unet version 1 served at {served}"
    assert err[-1] == "predict: 4 written, 0 failed"
    remote_lines = out.replace(str(tmp_path / "remote"), "OUT")
    status, out, err = _predict(
        capsys, "--saved-model", saved_model, "--output-dir", tmp_path / "local", *common
    )
    assert status == 0, err
    assert remote_lines == out.replace(str(tmp_path / "local"), "OUT")  # same lesion shares

    written = sorted(p.name for p in (tmp_path / "remote").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "local").iterdir())
    assert len(written) == 12
    for name in written:
        np.testing.assert_array_equal(
            _read(tmp_path / "remote" / name), _read(tmp_path / "local" / name), err_msg=name
        )
    assert _read(tmp_path / "remote" / "b.jpg.mask.png").shape == (HEIGHT, WIDTH)


def test_remote_reports_each_image_the_server_refuses(served, tmp_path, capsys):
    tiff = _save(RGB, tmp_path / "a.tif")
    png = _save(RGB, tmp_path / "b.png")

    status, _, err = _predict(capsys, "--remote", served, "--output-dir", tmp_path, tiff, png)

    assert status == 1
    assert (
        f"predict: prediction failed for {tiff}: `images_bytes`[0] is not a JPEG, PNG or BMP "
        "file: convert other formats (TIFF, GIF, WebP, ...) to PNG"
    ) in err
    assert (tmp_path / "b.png.mask.png").is_file() and not (tmp_path / "a.tif.mask.png").exists()
    assert err[-1] == "predict: 1 written, 1 failed"


def _closed_port():
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


@pytest.mark.parametrize(
    "url, flags, error",
    [
        ("http://localhost:8501/v1/models/unet", [], "not TF Serving's REST predict URL"),
        ("SERVED", ["--threshold", "0.3"], "--threshold needs --saved-model"),
        ("SERVED", ["--flip-tta"], "--flip-tta needs --saved-model"),
        ("SERVED", ["--single-pass"], "--single-pass needs --saved-model"),
        ("SERVED/versions/2:predict", [], "Servable not found"),
        ("http://127.0.0.1:PORT/v1/models/unet:predict", [], "cannot reach http://127.0.0.1:"),
    ],
)
def test_remote_that_cannot_run_is_one_error(served, url, flags, error, tmp_path, capsys):
    url = url.replace("SERVED/", served.removesuffix(":predict") + "/").replace("SERVED", served)
    url = url.replace("PORT", str(_closed_port()))
    status, _, err = _predict(
        capsys, "--remote", url, *flags, "--output-dir", tmp_path / "out", "a.png"
    )
    assert status == 2 and len(err) == 1, err
    assert err[0].startswith("python -m ph2_tf predict: error: ") and error in err[0]
    assert not (tmp_path / "out").exists()


def test_remote_model_without_the_encoded_signature_is_one_error(tmp_path, capsys):
    export_with_serving_default_only(tmp_path / "unet" / "5")  # as version 5 was exported
    with tf_serving_stand_in.serving(tmp_path / "unet" / "5", "unet", 5) as root:
        url = f"{root}/v1/models/unet:predict"
        status, _, err = _predict(capsys, "--remote", url, "--output-dir", tmp_path, "a.png")
    assert status == 2 and len(err) == 1
    assert err[0].endswith(
        f"unet version 5 served at {url} has no 'serving_encoded' signature (exported before it "
        "existed): serve a version exported since"
    )


def _documented(kind, marker):
    """The code block of docs/serving.md in language `kind` that holds `marker`."""
    text = (REPO_ROOT / "docs" / "serving.md").read_text()
    (block,) = [
        b for k, b in re.findall(r"```(\w+)\n(.*?)```", text, re.S) if k == kind and marker in b
    ]
    return block.replace("http://localhost:8501/v1/models/ph2_unet:predict", "URL")


def test_the_documented_rest_clients_get_the_mask(saved_model, served, tmp_path, monkeypatch):
    photo = _exif_rotated_jpeg(tmp_path / "lesion.jpg")
    serve = tf.saved_model.load(str(saved_model)).signatures[export.ENCODED_SIGNATURE]
    expected = serve(images_bytes=tf.constant([photo.read_bytes()]))
    monkeypatch.chdir(tmp_path)

    # The snippets as the docs give them (requests comes with TensorFlow), on the stand-in's URL.
    snippet = _documented("python", "import requests").replace("URL", served)
    printed = []
    exec(snippet, {"print": lambda *values: printed.append(values)})
    ((fraction, box, shape),) = printed
    assert fraction == pytest.approx(float(expected["lesion_fraction"][0]))
    assert box == expected["bounding_box"][0].numpy().tolist() and shape == (HEIGHT, WIDTH)

    if shutil.which("curl") and shutil.which("base64"):
        script = _documented("sh", "curl -s -X POST").replace("URL", served)
        script = script.replace("python -c", f"{sys.executable} -c")
        subprocess.run(["bash", "-c", script], check=True, timeout=120)
        mask_png = expected["mask_png_bytes"][0].numpy()
        assert (tmp_path / "lesion.jpg.mask.png").read_bytes() == mask_png
