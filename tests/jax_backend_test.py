"""Training, tuning and evaluation on Keras' JAX backend, in processes where TensorFlow is absent.

Each JAX run happens in a child process started by `conftest.run_without_tensorflow`, which
fails if TensorFlow is imported; what it produced is then checked here, under TensorFlow.
"""

import csv
import json

import keras
import numpy as np
import pytest
from conftest import run_without_tensorflow

from ph2_tf.data import pipeline
from ph2_tf.serving import export
from ph2_tf.training.config import TrainConfig
from ph2_tf.training.runs import CONFIG_FILE, load_trained, read_log

pytestmark = pytest.mark.slow

pytest.importorskip("jax")

TINY = ["--image-size", "32", "--width", "0.125", "--batch-size", "4"]


@pytest.fixture(scope="module")
def jax_run(ph2_prepared, tmp_path_factory):
    """`python -m ph2_tf train` on JAX for 2 epochs (augmented, with colour constancy and weight
    averaging), plus its predictions on a fixed batch."""
    tmp_path = tmp_path_factory.mktemp("jax_run")
    run_dir = tmp_path / "run"
    run_without_tensorflow(
        ["-m", "ph2_tf", "train", "--epochs", "2", *TINY, "--data-dir", ph2_prepared]
        + ["--augment", "all", "--colour-constancy", "--ema-momentum", "0.9"]
        + ["--out-dir", run_dir]
    )
    predictions = tmp_path / "predictions.npz"
    code = (
        "import sys, keras, numpy as np\n"
        "from ph2_tf import models  # registers the custom layers for loading\n"
        "from ph2_tf.data import arrays\n"
        f"images, masks, ids = arrays.load_arrays('test', 32, data_dir={ph2_prepared!r})\n"
        f"model = keras.saving.load_model({str(run_dir / 'best.keras')!r}, compile=False)\n"
        "uint8 = np.round(images * 255).astype('uint8')  # what a serving client sends\n"
        "logits = keras.ops.convert_to_numpy(model(uint8 / np.float32(255), training=False))\n"
        f"np.savez({str(predictions)!r}, images=images, masks=masks, uint8=uint8,"
        " logits=logits, backend=keras.backend.backend())\n"
    )
    script = tmp_path / "predict_on_jax.py"
    script.write_text(code)
    run_without_tensorflow([script])
    return run_dir, dict(np.load(predictions))


def test_train_on_jax_writes_a_complete_run(jax_run):
    run_dir, predictions = jax_run
    assert str(predictions["backend"]) == "jax"
    history = read_log(run_dir)
    assert history["epoch"] == [0, 1] and all(np.isfinite(history["loss"]))
    cfg = TrainConfig.load(run_dir / CONFIG_FILE)
    assert (cfg.image_size, cfg.augment, cfg.colour_constancy) == (32, "all", True)
    assert cfg.ema_momentum == 0.9
    assert not (run_dir / "tensorboard").exists()  # Keras' callback needs TensorFlow


def test_preprocessing_is_the_same_on_both_backends(jax_run, ph2_prepared):
    _, predictions = jax_run
    images, masks = next(
        iter(pipeline.load_split("test", image_size=32, batch_size=100, data_dir=ph2_prepared))
    )
    # Both resize the full-size `original` images (anti-aliased bilinear, rounded to uint8).
    # JAX and TensorFlow implement the resize separately: a value within float32 rounding of a
    # half level may round the other way, so pixels are at most one level apart, and rarely.
    # (Scaling to [0, 1] may differ by a float32 ulp: XLA multiplies by 1/255.)
    levels_apart = np.round(np.abs(predictions["images"] - images.numpy()) * 255)
    assert levels_apart.max() <= 1
    assert np.mean(levels_apart > 0) < 1e-3
    np.testing.assert_array_equal(predictions["masks"], masks.numpy())


def test_weights_trained_on_jax_export_to_tf_serving(jax_run, tmp_path):
    import tensorflow as tf

    run_dir, predictions = jax_run
    uint8, jax_logits = predictions["uint8"], predictions["logits"]
    model, _ = load_trained(run_dir)
    logits = keras.ops.convert_to_numpy(model(uint8 / np.float32(255), training=False))
    np.testing.assert_allclose(logits, jax_logits, rtol=0, atol=1e-4)

    version = export.export_for_serving(model, base_dir=tmp_path, model_name="jax_unet")
    serve = tf.saved_model.load(str(version)).signatures[export.SIGNATURE]
    served = serve(images=tf.constant(uint8))["probabilities"].numpy()  # 32x32: no resizing
    np.testing.assert_allclose(served, 1 / (1 + np.exp(-jax_logits)), rtol=0, atol=1e-4)


def test_tuner_on_jax_without_tensorflow(ph2_prepared, tmp_path):
    run_without_tensorflow(
        ["tuner_search.py", "--profile", "small", "--seeds", "1", "--epochs", "1"]
        + ["--only", "unet-bce-lr0.0001-e30", "segnet-bce-lr0.001-e15"]
        + ["--data-dir", ph2_prepared, "--results-dir", tmp_path, "--run-name", "X"]
        + ["--no-export"]
    )
    with open(tmp_path / "X" / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["loss"], r["epochs"]) for r in rows] == [
        ("unet", "bce", "1"),
        ("segnet", "bce", "1"),
    ]
    record = json.loads(
        (tmp_path / "X" / "records" / "unet-bce-lr0.0001-e1__seed0.json").read_text()
    )
    assert record["provenance"]["backend"] == "jax"
    assert 0.0 <= record["test_original_resolution"]["jaccard"] <= 1.0
