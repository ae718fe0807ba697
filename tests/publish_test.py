"""Tests of ph2_tf.serving.publish: a served model is replaced only by a better one, measured as
served.
"""

import dataclasses
import json
import pathlib
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO_ROOT, SCRIPTS_DIR, constant_model, run_python
from folding_test import randomise_batch_norm

from ph2_tf import cli
from ph2_tf.models import build_model
from ph2_tf.serving import cards, export, publish, versions
from ph2_tf.training import train
from ph2_tf.training.config import TrainConfig
from ph2_tf.training.runs import BEST_MODEL_FILE, CONFIG_FILE

IMAGE_SIZE = 32


def publish_model(model, name, base_dir, ph2_dummy, lines, force=False):
    return publish.publish(
        model,
        base_dir=base_dir,
        model_name="ph2_unet",
        image_size=IMAGE_SIZE,
        source={"name": name},
        force=force,
        data_dir=ph2_dummy.data_dir,
        manual_dir=ph2_dummy.manual_dir,
        log=lines.append,
    )


@pytest.mark.slow
def test_publishes_only_a_better_model_unless_forced(ph2_dummy, tmp_path):
    base_dir, lines = tmp_path / "saved_models", []
    background, lesion = constant_model(-50.0), constant_model(50.0)

    first = publish_model(background, "background", base_dir, ph2_dummy, lines)
    assert first == base_dir / "ph2_unet" / "1" and "no version served yet" in lines[-1]
    metrics = json.loads((first / publish.METRICS_FILE).read_text())
    assert metrics["source"] == {"name": "background"}
    # Every dummy lesion is non-empty, so an all-background mask has Jaccard 0.
    assert metrics["splits"]["validation"]["metrics"]["jaccard"] == 0.0
    assert metrics["splits"]["test"]["num_images"] > 0
    assert metrics["provenance"]["backend"] == "tensorflow"

    assert publish_model(background, "same again", base_dir, ph2_dummy, lines) is None
    assert (
        "not published (against served version 1, chosen on ph2_validation: selection gain +0.0000"
        in lines[-1]
    )
    assert "**version 1**" in (base_dir / "ph2_unet" / cards.CARD_FILE).read_text()

    second = publish_model(lesion, "lesion", base_dir, ph2_dummy, lines)
    assert second == base_dir / "ph2_unet" / "2" and "published" in lines[-1]
    second_metrics = json.loads((second / publish.METRICS_FILE).read_text())
    assert second_metrics["splits"]["validation"]["metrics"]["jaccard"] > 0.0
    # The decision and its numbers are kept with the version.
    decided = second_metrics["source"]["publishing"]
    gain = decided["gains"]["ph2_validation"]
    assert gain["images"] == second_metrics["splits"]["validation"]["num_images"]
    assert gain["gain"] > 2 * gain["standard_error"] and "PH2 validation" in decided["rule"]

    assert publish_model(background, "worse", base_dir, ph2_dummy, lines) is None
    assert (
        "not published (against served version 2, chosen on ph2_validation: selection gain -"
        in lines[-1]
    )
    # The refusal states every set's gain and standard error, as a publication records them.
    lost = second_metrics["splits"]["validation"]["metrics"]["jaccard"]
    assert f"gains ph2_validation {-lost:+.4f} ± " in lines[-1]
    forced = publish_model(background, "worse, forced", base_dir, ph2_dummy, lines, force=True)
    assert forced == base_dir / "ph2_unet" / "3" and "forced" in lines[-1]

    assert [p.name for p in versions.served_versions(base_dir / "ph2_unet")] == ["1", "2", "3"]
    assert "**version 3**" in (base_dir / "ph2_unet" / cards.CARD_FILE).read_text()
    assert not (base_dir / "ph2_unet" / versions.STAGING_DIR).exists()
    assert 'name: "ph2_unet"' in (base_dir / export.MODELS_CONFIG).read_text()


def test_the_selection_folder_is_the_signal_and_ph2_validation_only_guards():
    served = {"ph2_validation": {"a": 0.8, "b": 0.9, "c": 0.7}, "isic": {"x": 0.5, "y": 0.6}}
    # Much better on the selection folder, equal on PH2 validation: published.
    better = {"ph2_validation": dict(served["ph2_validation"]), "isic": {"x": 0.7, "y": 0.81}}
    decision, record = publish.publishing_decision(better, served)
    assert decision.publish and "on isic" in record["rule"]
    assert record["gains"]["isic"]["gain"] == pytest.approx(0.205)
    # The same gain, but PH2 validation loses beyond its noise: refused.
    worse_on_ph2 = {"ph2_validation": {"a": 0.5, "b": 0.6, "c": 0.4}, "isic": better["isic"]}
    decision, _ = publish.publishing_decision(worse_on_ph2, served)
    assert not decision.publish and "PH2 validation gain -0.3000" in decision.reason
    # Without a selection folder, PH2 validation is the signal.
    only_ph2 = {"ph2_validation": served["ph2_validation"]}
    decision, record = publish.publishing_decision(only_ph2, only_ph2)
    assert not decision.publish and "on ph2_validation" in record["rule"]


def test_further_selection_folders_guard_and_only_the_first_is_the_signal():
    served = {
        "ph2_validation": {"a": 0.8, "b": 0.9, "c": 0.7},
        "small_lesions": {"s": 0.5, "t": 0.6, "u": 0.4},
        "isic": {"x": 0.5, "y": 0.6, "z": 0.7},
    }
    better_on_small = {**served, "small_lesions": {"s": 0.7, "t": 0.81, "u": 0.6}}
    decision, record = publish.publishing_decision(better_on_small, served)
    assert decision.publish
    assert (
        "on small_lesions, and gain >= -2 x its standard error on PH2 validation, isic"
        in (record["rule"])
    )
    # The same gain, but the second folder loses beyond its noise: refused.
    worse_on_isic = {**better_on_small, "isic": {"x": 0.3, "y": 0.4, "z": 0.5}}
    decision, _ = publish.publishing_decision(worse_on_isic, served)
    assert not decision.publish and "isic gain -0.2000 is below -2 x SE" in decision.reason
    # A gain on a guard alone is no reason to publish.
    better_on_isic = {**served, "isic": {"x": 0.7, "y": 0.8, "z": 0.9}}
    decision, _ = publish.publishing_decision(better_on_isic, served)
    assert not decision.publish and "selection gain +0.0000 is not above" in decision.reason


def test_two_selection_folders_of_one_name_are_refused_before_reading(tmp_path):
    folders = [tmp_path / "a" / "isic", tmp_path / "b" / "isic"]
    with pytest.raises(ValueError, match=r"b/isic: a set named 'isic' is already in"):
        publish.selection_sets(data_dir=tmp_path / "no_data", selection_dirs=folders)


def test_best_per_model_skips_diverged_seeds():
    def record(name, seed, jaccard):
        model = name.split("-")[0]
        validation = None if jaccard is None else {"jaccard": jaccard}
        return {
            "name": name,
            "seed": seed,
            "configuration": {"model": model},
            "validation": validation,
        }

    records = [
        record("unet-a", 0, 0.8),
        record("unet-a", 1, 0.6),  # mean 0.7
        record("unet-b", 0, 0.75),
        record("unet-b", 1, None),  # diverged: counts as 0, so mean 0.375
        record("segnet-a", 0, None),
    ]
    best = publish.best_per_model(records)
    assert list(best) == ["unet"]
    assert (best["unet"]["name"], best["unet"]["seed"]) == ("unet-a", 0)


def test_export_refuses_non_finite_weights(tmp_path):
    model = constant_model(float("nan"))
    with pytest.raises(ValueError, match="NaN or infinite values"):
        export.export_for_serving(model, base_dir=tmp_path, model_name="broken")
    assert not (tmp_path / "broken").exists()


@pytest.mark.slow
def test_export_if_better_publishes_a_run_only_when_it_beats_the_served_version(
    ph2_dummy, tmp_path, capsys
):
    base_dir = tmp_path / "saved_models"

    def export_run(logit, name, *flags):
        run_dir = tmp_path / name
        run_dir.mkdir()
        constant_model(logit).save(run_dir / BEST_MODEL_FILE)
        TrainConfig(image_size=IMAGE_SIZE, data_dir=str(ph2_dummy.data_dir)).save(
            run_dir / CONFIG_FILE
        )
        status = cli.main(
            ["export", "--run-dir", str(run_dir), "--model-name", "ph2_unet"]
            + ["--base-dir", str(base_dir), "--if-better", *flags]
        )
        assert status in (0, None)
        output = capsys.readouterr().out.splitlines()
        return output[-2], json.loads(output[-1])["saved_model"]

    assert export_run(-50.0, "background")[1] == str(base_dir / "ph2_unet" / "1")
    assert export_run(50.0, "lesion")[1] == str(base_dir / "ph2_unet" / "2")
    refusal, published = export_run(-50.0, "worse")
    assert published is None
    metrics = json.loads((base_dir / "ph2_unet" / "2" / publish.METRICS_FILE).read_text())
    assert metrics["source"]["name"] == "lesion"
    assert metrics["source"]["config"]["image_size"] == IMAGE_SIZE
    assert versions.served_versions(base_dir / "ph2_unet")[-1].name == "2"

    # The refusal names the override, and this command has it.
    assert refusal.endswith("publish anyway with --force-export)")
    assert export_run(-50.0, "worse, forced", "--force-export")[1] == str(
        base_dir / "ph2_unet" / "3"
    )
    forced = json.loads((base_dir / "ph2_unet" / "3" / publish.METRICS_FILE).read_text())
    assert forced["source"]["name"] == "worse, forced"
    assert forced["source"]["publishing"]["forced"] is True
    assert "not above" in forced["source"]["publishing"]["decision"]
    assert "forced" not in metrics["source"]["publishing"]


def test_export_if_better_refuses_a_version(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    constant_model(1.0).save(run_dir / BEST_MODEL_FILE)
    TrainConfig(image_size=IMAGE_SIZE).save(run_dir / CONFIG_FILE)
    status = cli.main(["export", "--run-dir", str(run_dir), "--if-better", "--version", "3"])
    assert status == 2
    assert "--if-better picks the version itself; drop --version 3" in capsys.readouterr().err

    status = cli.main(["export", "--run-dir", str(run_dir), "--force-export"])
    assert status == 2
    assert "--force-export overrides --if-better's refusal; add --if-better" in (
        capsys.readouterr().err
    )


@pytest.mark.slow
def test_export_from_saved_model_serves_the_same_model_as_a_new_version(
    ph2_dummy, tmp_path, capsys
):
    base_dir, run_dir = tmp_path / "saved_models", tmp_path / "run"
    run_dir.mkdir()
    model = build_model("segnet", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), width=0.125)
    randomise_batch_norm(model).save(run_dir / BEST_MODEL_FILE)
    TrainConfig(
        model="segnet", image_size=IMAGE_SIZE, width=0.125, data_dir=str(ph2_dummy.data_dir)
    ).save(run_dir / CONFIG_FILE)
    common = ["--base-dir", str(base_dir), "--model-name", "ph2_segnet"]
    assert cli.main(["export", "--run-dir", str(run_dir), "--if-better", *common]) in (0, None)
    first = base_dir / "ph2_segnet" / "1"

    status = cli.main(["export", "--from-saved-model", str(first), *common])

    assert status == 0
    second = pathlib.Path(json.loads(capsys.readouterr().out.splitlines()[-1])["saved_model"])
    assert second == base_dir / "ph2_segnet" / "2"
    old, new = (json.loads((v / publish.METRICS_FILE).read_text()) for v in (first, second))
    assert new["source"]["exported_again_from"] == str(first)
    assert new["source"]["config"] == old["source"]["config"]
    assert new["splits"]["test"]["metrics"] == pytest.approx(old["splits"]["test"]["metrics"])
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (1, 70, 90, 3), np.uint8))
    first_out, second_out = (
        tf.saved_model.load(str(v)).signatures[export.SIGNATURE](images=images)
        for v in (first, second)
    )
    np.testing.assert_allclose(second_out["probabilities"], first_out["probabilities"], atol=1e-6)


def test_load_published_model_rebuilds_a_version_exported_before_folding(tmp_path):
    # Versions published before the serving graph folded BatchNorm (ph2_segnet/1 to 7, in git
    # history) store the BatchNorm layers' variables: written here as they were.
    config = TrainConfig(model="segnet", image_size=IMAGE_SIZE, width=0.125)
    unfolded = randomise_batch_norm(train.build_configured_model(config))
    version_dir = tmp_path / "ph2_segnet" / "7"
    archive = keras.export.ExportArchive()
    archive.add_endpoint(
        export.SIGNATURE,
        export.serving_function(unfolded, IMAGE_SIZE),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=export.INPUT_NAME)],
    )
    archive.write_out(str(version_dir), verbose=False)
    metrics = {"source": {"config": dataclasses.asdict(config)}}
    (version_dir / publish.METRICS_FILE).write_text(json.dumps(metrics))

    model, source = publish.load_published_model(version_dir)
    assert source["config"]["model"] == "segnet"
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 25
    images = tf.constant(np.random.default_rng(1).integers(0, 256, (1, 300, 400, 3), np.uint8))
    served = tf.saved_model.load(str(version_dir)).signatures[export.SIGNATURE](images=images)
    rebuilt = export.serving_function(model, source["config"]["image_size"])(images)
    # Run eagerly here and as a graph there, BatchNorm unfolded: the float rounding differs.
    np.testing.assert_allclose(rebuilt["probabilities"], served["probabilities"], atol=1e-5)


def test_load_published_model_rebuilds_the_served_segnet():
    # The served version, its BatchNorm folded.
    version_dir = versions.served_versions(REPO_ROOT / "saved_models" / "ph2_segnet")[-1]
    model, source = publish.load_published_model(version_dir)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    images = tf.constant(np.random.default_rng(1).integers(0, 256, (1, 300, 400, 3), np.uint8))
    served = tf.saved_model.load(str(version_dir)).signatures[export.SIGNATURE](images=images)
    # The served graph's options: its threshold, which also locates the lesion for the refining
    # pass, the refinement, and since version 14 the flips.
    options = publish.serving_options(version_dir)
    rebuilt = export.serving_function(model, source["config"]["image_size"], **options)(images)
    np.testing.assert_allclose(rebuilt["probabilities"], served["probabilities"], atol=1e-6)


def test_export_from_saved_model_refuses_a_version_without_its_training_config(tmp_path, capsys):
    version_dir = tmp_path / "saved_models" / "ph2_unet" / "1"
    export.write_saved_model(constant_model(1.0), version_dir, IMAGE_SIZE)
    status = cli.main(["export", "--from-saved-model", str(version_dir)])
    assert status == 2
    assert "does not record the training config (source.config)" in capsys.readouterr().err
    assert not (tmp_path / "saved_models" / "ph2_unet" / "2").exists()
    status = cli.main(["export", "--from-saved-model", str(version_dir), "--if-better"])
    assert status == 2
    assert "does not record the training config (source.config)" in capsys.readouterr().err
    assert not (tmp_path / "saved_models" / "ph2_unet" / versions.STAGING_DIR).exists()


@pytest.mark.slow
def test_export_from_saved_model_if_better_publishes_a_better_serving_graph(
    ph2_dummy, tmp_path, capsys
):
    base_dir, run_dir = tmp_path / "saved_models", tmp_path / "run"
    run_dir.mkdir()
    constant_model(0.0).save(run_dir / BEST_MODEL_FILE)  # probability 0.5 everywhere
    TrainConfig(image_size=IMAGE_SIZE, data_dir=str(ph2_dummy.data_dir)).save(run_dir / CONFIG_FILE)
    common = ["--base-dir", str(base_dir), "--model-name", "ph2_unet", "--if-better"]

    def export_json(*args):
        assert cli.main(["export", *args, *common]) in (0, None)
        return json.loads(capsys.readouterr().out.splitlines()[-1])["saved_model"]

    # Served with threshold 0.6, the model finds no lesion: validation Jaccard 0.
    first = export_json("--run-dir", str(run_dir), "--threshold", "0.6")
    assert first == str(base_dir / "ph2_unet" / "1")
    again = ["--from-saved-model", first, "--threshold", "0.5", "--largest-component"]
    second = export_json(*again)
    assert second == str(base_dir / "ph2_unet" / "2")
    source = json.loads((pathlib.Path(second) / publish.METRICS_FILE).read_text())["source"]
    assert source["exported_again_from"] == first
    assert source["serving"] == {"threshold": 0.5, "largest_component": True, "refine": None}
    assert publish.serving_options(second) == source["serving"]
    assert publish.serving_options(first) == {
        "threshold": 0.6,
        "largest_component": False,
        "refine": None,
    }
    assert export_json("--from-saved-model", second, "--largest-component") is None  # a tie
    assert versions.served_versions(base_dir / "ph2_unet")[-1].name == "2"


def constant_run(run_dir, logit, data_dir):
    """A run directory whose best.keras is `constant_model(logit)`."""
    run_dir.mkdir()
    constant_model(logit).save(run_dir / BEST_MODEL_FILE)
    TrainConfig(image_size=IMAGE_SIZE, data_dir=str(data_dir)).save(run_dir / CONFIG_FILE)
    return run_dir


@pytest.mark.slow  # a child process that exports and measures
def test_a_publish_killed_in_the_middle_keeps_the_served_version_and_a_rerun_publishes(
    ph2_dummy, tmp_path, capsys
):
    base_dir = tmp_path / "saved_models"
    model_dir = base_dir / "ph2_unet"
    common = ["--model-name", "ph2_unet", "--base-dir", str(base_dir), "--if-better"]
    background = constant_run(tmp_path / "background", -50.0, ph2_dummy.data_dir)
    assert cli.main(["export", "--run-dir", str(background), *common]) == 0
    served_files = [model_dir / cards.CARD_FILE, base_dir / export.MODELS_CONFIG]
    before = {path: path.read_text() for path in served_files}
    lesion = constant_run(tmp_path / "lesion", 50.0, ph2_dummy.data_dir)

    child = run_python(
        [SCRIPTS_DIR / "killed_while_measuring.py", "export", "--run-dir", lesion, *common],
        check=False,
    )

    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    # Killed while the chosen candidate was being assembled: staged, never served.
    staged = model_dir / versions.STAGING_DIR
    assert (staged / "saved_model.pb").exists() and not (staged / publish.METRICS_FILE).exists()
    assert versions.served_versions(model_dir) == [model_dir / "1"]
    assert versions.resolve(model_dir) == model_dir / "1"
    assert {path: path.read_text() for path in served_files} == before

    assert cli.main(["export", "--run-dir", str(lesion), *common]) == 0

    published = json.loads(capsys.readouterr().out.splitlines()[-1])["saved_model"]
    assert published == str(model_dir / "2")
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "2", cards.CARD_FILE]
    metrics = json.loads((model_dir / "2" / publish.METRICS_FILE).read_text())
    assert metrics["source"]["name"] == "lesion" and set(metrics["splits"]) == {
        "validation",
        "test",
    }
    assert "**version 2**" in (model_dir / cards.CARD_FILE).read_text()
