"""Command line tests: `--help` of each command, and train -> evaluate -> export -> predict."""

import json
import pathlib
import shutil
import zipfile

import numpy as np
import pytest
from conftest import run_python
from PIL import Image

from ph2_tf import cli
from ph2_tf.cli import evaluate as evaluate_command
from ph2_tf.training.config import TrainConfig

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


def one_error_line(capsys, command):
    """The command's only stderr line, `<prog> <command>: error: ...`, checked to be one line."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    prefix = f"python -m ph2_tf {command}: error: "
    assert err.startswith(prefix), err
    return err.removeprefix(prefix).rstrip("\n")


def usage_error(capsys, *args):
    """Runs a command that argparse must refuse; returns its stderr."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(arg) for arg in args])
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "command, option, value, reason",
    [
        ("export", "--threshold", "2", "not strictly between 0 and 1"),
        ("export", "--threshold", "-1", "not strictly between 0 and 1"),
        ("export", "--threshold", "nan", "not strictly between 0 and 1"),
        ("export", "--refine", "0.9", "not a finite number of at least 1"),
        ("export", "--refine", "inf", "not a finite number of at least 1"),
        ("export", "--refine", "wide", "'wide' is not a number"),
        ("export", "--version", "0", "not an integer >= 1"),
        ("export", "--version", "-3", "not an integer >= 1"),
        ("export", "--version", "2.5", "not an integer"),
        ("export", "--model-name", "../elsewhere", "not a model name"),
        ("export", "--model-name", "/tmp/elsewhere", "not a model name"),
        ("evaluate", "--split", "bogus", "invalid choice: 'bogus'"),
        ("evaluate", "--batch-size", "0", "not an integer >= 1"),
        ("evaluate", "--threshold", "1", "not strictly between 0 and 1"),
        ("card", "--model-name", "..", "not a model name"),
    ],
)
def test_options_are_checked_where_parsed(command, option, value, reason, tmp_path, capsys):
    source = [] if command == "card" else ["--run-dir", tmp_path / "run"]
    err = usage_error(capsys, command, *source, option, value)
    assert f"argument {option}: " in err and reason in err
    assert not any(tmp_path.iterdir())


def test_evaluate_splits_are_the_datasets():
    from tfds_ph2.ph2.ph2_dataset_builder import SPLIT_NAMES

    assert evaluate_command.SPLITS == SPLIT_NAMES


def write_damaged_run(run_dir, damage):
    """A run directory that `export` and `evaluate` cannot use, in one of several ways."""
    run_dir.mkdir()
    if damage == "no best.keras":
        return "no best.keras: train the run first"
    if damage == "empty best.keras":
        (run_dir / "best.keras").write_bytes(b"")
        return "best.keras: not a readable Keras model file"
    with zipfile.ZipFile(run_dir / "best.keras", "w") as archive:  # a zip, not a Keras model
        archive.writestr("notes.txt", "not a model")
    if damage == "not a Keras zip":
        TrainConfig(image_size=32).save(run_dir / "config.json")
        return "best.keras: not a readable Keras model file"
    (run_dir / "config.json").write_text('{"epochs": ')
    return "config.json: not a readable run config"


@pytest.mark.parametrize("command", ["export", "evaluate"])
@pytest.mark.parametrize(
    "damage", ["no best.keras", "empty best.keras", "not a Keras zip", "broken config.json"]
)
def test_an_unusable_run_dir_is_one_line(command, damage, tmp_path, capsys):
    run_dir = tmp_path / "run"
    reason = write_damaged_run(run_dir, damage)
    before = sorted(run_dir.iterdir())
    extra = ["--base-dir", tmp_path / "saved_models"] if command == "export" else []

    status = cli.main([command, "--run-dir", str(run_dir), *map(str, extra)])

    assert status == 2
    assert reason in one_error_line(capsys, command)
    assert sorted(run_dir.iterdir()) == before and not (tmp_path / "saved_models").exists()


def test_a_plain_export_refuses_the_data_options_it_would_ignore(tmp_path, capsys):
    args = ["export", "--run-dir", str(tmp_path), "--data-dir", str(tmp_path)]
    assert cli.main(args) == 2
    assert one_error_line(capsys, "export").startswith("--data-dir is not used by a plain")


RUN_ONLY_OPTIONS = (
    ["--split", "test"],
    ["--threshold", "0.4"],
    ["--batch-size", "4"],
    ["--no-original-resolution"],
)


@pytest.mark.parametrize("option", RUN_ONLY_OPTIONS)
def test_evaluate_saved_model_refuses_the_options_of_a_run(option, tmp_path, capsys):
    assert cli.main(["evaluate", "--saved-model", str(tmp_path), *option]) == 2
    assert one_error_line(capsys, "evaluate").startswith(
        f"{option[0]} is not used with --saved-model"
    )


def test_evaluate_run_dir_refuses_update_metrics(tmp_path, capsys):
    assert cli.main(["evaluate", "--run-dir", str(tmp_path), "--update-metrics"]) == 2
    assert (
        one_error_line(capsys, "evaluate") == "--update-metrics is not used with --run-dir; drop it"
    )


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A tiny UNet published as `ph2_unet/1` with a metrics.json that records only its source."""
    from conftest import constant_model

    from ph2_tf.serving import export

    base_dir = tmp_path_factory.mktemp("saved_models")
    version_dir = export.export_for_serving(constant_model(50.0), base_dir, "ph2_unet")
    (version_dir / "metrics.json").write_text(json.dumps({"source": {"name": "lesion"}}))
    return version_dir


def test_evaluate_saved_model_writes_output_and_updates_metrics_only_when_asked(
    published, ph2_dummy, tmp_path, capsys
):
    from ph2_tf.serving import cards

    model_dir = tmp_path / "ph2_unet"
    version_dir = model_dir / "1"
    shutil.copytree(published, version_dir)
    cards.write_card(model_dir)
    card = (model_dir / cards.CARD_FILE).read_text()
    data = ["--data-dir", ph2_dummy.data_dir]
    output = tmp_path / "scores" / "ph2_unet.json"

    # A model directory stands for its highest version.
    status = cli.main(["evaluate", "--saved-model", str(model_dir), "--output", str(output), *data])
    assert status == 0

    printed = json.loads(capsys.readouterr().out)
    assert json.loads(output.read_text()) == printed
    assert printed["source"] == {"name": "lesion"}
    assert set(printed["splits"]) == {"validation", "test"}
    assert printed["splits"]["test"]["num_images"] > 0
    assert json.loads((version_dir / "metrics.json").read_text()) == {"source": {"name": "lesion"}}
    assert (model_dir / cards.CARD_FILE).read_text() == card

    assert cli.main(["evaluate", "--saved-model", str(version_dir), "--update-metrics", *data]) == 0

    updated = json.loads((version_dir / "metrics.json").read_text())
    assert updated["source"] == {"name": "lesion"} and updated["splits"] == printed["splits"]
    new_card = (model_dir / cards.CARD_FILE).read_text()
    assert "| PH² test | serving_default |" in new_card and "| PH² test |" not in card


def test_evaluate_saved_model_without_its_signature_or_damaged_is_one_line(
    published, tmp_path, capsys
):
    import keras
    import tensorflow as tf
    from conftest import constant_model

    model = constant_model(0.0)
    logits = tf.function(model, input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
    no_signature = tmp_path / "no_signature"
    tf.saved_model.save(model, str(no_signature), signatures={"logits": logits})
    other_input = tmp_path / "other_input"  # Keras makes its first endpoint serving_default
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("logits", model, input_signature=logits.input_signature)
    archive.write_out(str(other_input), verbose=False)
    damaged = tmp_path / "damaged"
    shutil.copytree(published, damaged)
    (damaged / "saved_model.pb").write_bytes(b"not a SavedModel")

    for saved_model, reason in (
        (no_signature, f"the SavedModel {no_signature} has no 'serving_default' signature"),
        (other_input, "the 'serving_default' signature of the SavedModel "
         f"{other_input} does not take uint8 `images` (its inputs: args_0)"),
        (damaged, f"cannot load the SavedModel {damaged}: "),
    ):  # fmt: skip
        assert cli.main(["evaluate", "--saved-model", str(saved_model)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert err[0].startswith("evaluate: measuring the SavedModel in") and len(err) == 2
        assert err[1].startswith(f"python -m ph2_tf evaluate: error: {reason}")


@pytest.mark.parametrize("option", ["--data-dir", "--manual-dir"])
def test_prepare_refuses_a_directory_argument_that_is_a_file(option, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    assert cli.main(["prepare", option, str(a_file)]) == 2
    assert one_error_line(capsys, "prepare") == f"{option} {a_file} exists and is not a directory"
