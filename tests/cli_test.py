"""Command line tests: `--help` of each command, and train -> evaluate -> export -> predict."""

import json
import pathlib

import numpy as np
import pytest
from conftest import run_python
from PIL import Image

from ph2_tf import cli

COMMANDS = ("train", "evaluate", "predict", "export")


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"python -m ph2_tf {command}" in capsys.readouterr().out


def test_unknown_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["fly"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'fly'" in capsys.readouterr().err


@pytest.mark.slow
def test_train_evaluate_export_predict(ph2_dummy, tmp_path):
    run_dir, base_dir, out_dir = tmp_path / "run", tmp_path / "saved_models", tmp_path / "out"
    run_python(
        ["-m", "ph2_tf", "train", "--model", "unet", "--epochs", "1", "--image-size", "32"]
        + ["--width", "0.125", "--batch-size", "4", "--out-dir", run_dir]
        + ["--data-dir", ph2_dummy.data_dir, "--manual-dir", ph2_dummy.manual_dir]
    )
    assert (run_dir / "best.keras").exists() and (run_dir / "log.csv").exists()

    run_python(["-m", "ph2_tf", "evaluate", "--run-dir", run_dir, "--split", "test"])
    metrics = json.loads((run_dir / "metrics_test.json").read_text())
    assert metrics["split"] == "test" and metrics["num_images"] > 0
    for resolution in ("training_resolution", "original_resolution"):
        assert 0.0 <= metrics[resolution]["jaccard"] <= 1.0

    run_python(["-m", "ph2_tf", "export", "--run-dir", run_dir, "--base-dir", base_dir])
    assert (base_dir / "unet" / "1" / "saved_model.pb").exists()
    assert 'name: "unet"' in (base_dir / "models.config").read_text()

    source = next(pathlib.Path(ph2_dummy.manual_dir).rglob("*_Dermoscopic_Image/*.bmp"))
    image = np.asarray(Image.open(source).convert("RGB"))
    inputs = [source]
    for suffix in (".png", ".jpg"):
        inputs.append(tmp_path / f"lesion{suffix}")
        Image.fromarray(image).save(inputs[-1])
    run_python(
        ["-m", "ph2_tf", "predict", "--saved-model", base_dir / "unet", "--output-dir"]
        + [out_dir, *inputs]
    )
    # lesion.png and lesion.jpg keep their suffixes, so neither overwrites the other's outputs.
    assert len(list(out_dir.glob("*.mask.png"))) == len(inputs)
    for path in inputs:
        mask = np.asarray(Image.open(out_dir / f"{path.name}.mask.png"))
        overlay = np.asarray(Image.open(out_dir / f"{path.name}.overlay.png"))
        assert mask.shape == image.shape[:2] and set(np.unique(mask)) <= {0, 255}
        assert overlay.shape == image.shape
