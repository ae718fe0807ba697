"""`python -m ph2_tf train` refuses bad arguments and diverged runs clearly."""

import zipfile

import keras
import numpy as np
import pytest
from conftest import run_python

from ph2_tf import cli
from ph2_tf.models import build_model


@pytest.mark.parametrize(
    "option, value, field",
    [
        ("--lr", "-1", "learning_rate"),
        ("--lr", "0", "learning_rate"),
        ("--epochs", "0", "epochs"),
        ("--batch-size", "0", "batch_size"),
        ("--width", "0", "width"),
        ("--image-size", "0", "image_size"),
        ("--image-size", "100", "image_size"),
        ("--loss", "nonsense", "loss"),
        ("--weight-decay", "-1", "weight_decay"),
    ],
)
def test_invalid_argument_is_one_line_before_anything_is_written(
    option, value, field, tmp_path, capsys
):
    out_dir = tmp_path / "run"
    status = cli.main(["train", option, value, "--out-dir", str(out_dir)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith(f"python -m ph2_tf train: error: {field} must be")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out_dir.exists()  # no config.json, no data touched


@pytest.mark.slow  # a training subprocess
def test_diverging_run_exits_non_zero_without_a_non_finite_model(ph2_dummy, tmp_path):
    out_dir = tmp_path / "run"
    proc = run_python(
        ["-m", "ph2_tf", "train", "--lr", "1e9", "--epochs", "2", "--image-size", "32"]
        + ["--width", "0.125", "--batch-size", "4", "--out-dir", out_dir]
        + ["--data-dir", ph2_dummy.data_dir, "--manual-dir", ph2_dummy.manual_dir],
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "training diverged" in proc.stderr and "Traceback" not in proc.stderr
    for path in out_dir.rglob("*.keras"):
        model = keras.saving.load_model(path, compile=False)
        assert all(np.isfinite(w).all() for w in model.get_weights()), path


@pytest.mark.parametrize("start", ["another architecture", "a damaged file"])
def test_an_init_from_that_cannot_start_the_run_is_one_line_and_writes_nothing(
    start, ph2_dummy, tmp_path, capsys
):
    init_from = tmp_path / "start.keras"
    if start == "another architecture":
        build_model("segnet", input_shape=(32, 32, 3), width=0.125).save(init_from)
        reason = "holds a different model from the configured one"
    else:
        with zipfile.ZipFile(init_from, "w") as archive:  # a zip, as a .keras file is
            archive.writestr("model.weights.h5", b"cut short")
        reason = "not a readable Keras model file"
    out_dir = tmp_path / "run"

    status = cli.main(
        ["train", "--model", "unet", "--epochs", "1", "--image-size", "32", "--width", "0.125"]
        + ["--batch-size", "4", "--init-from", str(init_from), "--out-dir", str(out_dir)]
        + ["--data-dir", ph2_dummy.data_dir, "--manual-dir", ph2_dummy.manual_dir]
        + ["--no-deterministic"]  # op determinism would stay on for the tests after this one
    )

    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("python -m ph2_tf train: error: ") and reason in err
    assert not out_dir.exists()
