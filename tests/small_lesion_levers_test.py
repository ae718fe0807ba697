"""Tests of ph2_tf.experiments.small_lesion_levers: each lever from one first pass, the rebuilt
model at another size, and its arguments."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from ph2_tf.data.external import Case
from ph2_tf.experiments import small_lesion_levers as levers
from ph2_tf.models import build_model
from ph2_tf.serving import export, publish, refinement
from ph2_tf.training.config import TrainConfig


def contrast(image):
    """A stand-in model whose output depends on the window it is given: brightness against the
    image's mean brightness."""
    brightness = image.astype(np.float32).mean(axis=-1) / 255.0
    return np.clip(brightness - brightness.mean() + 0.45, 0.0, 1.0)


def spot_image(side, frame=(60, 80)):
    """Dark skin with one bright square spot of `side` pixels."""
    image = np.full((*frame, 3), 10, np.uint8)
    image[20 : 20 + side, 30 : 30 + side] = 230
    return image


def test_every_lever_comes_from_the_same_first_pass():
    def larger(image):
        return np.full(image.shape[:2], 0.25, np.float32)

    for side, small in ((5, True), (30, False)):  # 0.5 % and 19 % of the frame
        image = spot_image(side)
        probabilities = levers.lever_probabilities(contrast, larger, image)
        expected_levers = [
            "served",
            *(f"refine_{c:g}{s}" for c in levers.CONTEXTS for s in ("", "_small")),
            f"input_{levers.LARGER_INPUT}",
            "multi_scale",
        ]
        assert list(probabilities) == expected_levers
        first_pass = contrast(image)
        np.testing.assert_array_equal(probabilities["served"], first_pass)
        for context in levers.CONTEXTS:
            refined = refinement.refine(contrast, context)(image)
            np.testing.assert_array_equal(probabilities[f"refine_{context:g}"], refined)
            gated = probabilities[f"refine_{context:g}_small"]
            np.testing.assert_array_equal(gated, refined if small else first_pass)
        assert not np.array_equal(probabilities["refine_1.5"], first_pass)  # it refined
        np.testing.assert_allclose(probabilities["multi_scale"], (first_pass + 0.25) / 2)


def test_lever_jaccards_scores_each_lever_on_the_kept_component():
    image = spot_image(6)
    truth = np.zeros(image.shape[:2], bool)
    truth[20:26, 30:36] = True
    jaccards = levers.lever_jaccards(contrast, contrast, [Case("spot", image, truth)])
    assert jaccards["served"] == {"spot": 1.0}  # the stand-in finds the spot exactly
    assert set(jaccards) == set(levers.lever_probabilities(contrast, contrast, image))


def published_tiny_unet(tmp_path):
    """A tiny UNet exported with the `metrics.json` source that `load_published_model` reads."""
    config = TrainConfig(image_size=32, width=0.125)
    model = build_model("unet", (32, 32, 3), width=0.125)
    for weight in model.weights:  # weights unlike the initial ones
        weight.assign(np.random.default_rng(0).normal(size=weight.shape).astype("float32") * 0.1)
    path = export.export_for_serving(model, tmp_path, "ph2_unet")
    (path / publish.METRICS_FILE).write_text(
        json.dumps({"source": {"config": dataclasses.asdict(config)}})
    )
    return path, model


def run_on_a_published_tiny_unet(runner, ph2_dummy, tmp_path):
    """Runs a selection-set runner's `main` on `published_tiny_unet`, with the dummy PH2 data and
    three small ISIC-layout pairs as ISIC-select.

    Returns:
        `(version directory, Keras model, the per_image.json record it wrote, its output.txt)`.
    """
    from external_test import _write_case

    version, model = published_tiny_unet(tmp_path / "saved_models")
    select = tmp_path / "select"
    for index in range(3):
        _write_case(select, f"ISIC_{index}", size=(40 + index, 30))
    output = tmp_path / "out"
    data = ["--data-dir", ph2_dummy.data_dir, "--isic-select", str(select)]
    runner.main([str(version), *data, "--output-dir", str(output)])
    record = json.loads((output / "per_image.json").read_text())
    return version, model, record, (output / "output.txt").read_text()


def test_the_model_rebuilt_at_another_size_has_the_published_weights(tmp_path):
    path, original = published_tiny_unet(tmp_path)
    at_training_size, training_size = levers.model_at_size(path)
    larger, _ = levers.model_at_size(path, 64)
    assert training_size == 32 and larger.input_shape == (None, 64, 64, 3)
    weights = {w.path: keras.ops.convert_to_numpy(w) for w in at_training_size.weights}
    assert {w.path for w in larger.weights} == set(weights)
    for weight in larger.weights:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), weights[weight.path])
    image = np.random.default_rng(1).uniform(size=(1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(at_training_size(image), original(image), atol=1e-4)


def test_bad_arguments_are_refused_naming_them(tmp_path, capsys):
    with pytest.raises(SystemExit):
        levers.main([str(tmp_path), "--data-dir", str(tmp_path)])
    assert f"{tmp_path} is not a published version (no metrics.json)" in capsys.readouterr().err
