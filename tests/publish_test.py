"""Tests of ph2_tf.publish: a served model is replaced only by a better one, measured as served."""

import json

import numpy as np
import pytest

from ph2_tf import cli, export, publish, train, versions
from ph2_tf.models import build_model

IMAGE_SIZE = 32


def constant_model(logit):
    """A tiny UNet whose every pixel gets `logit`: all lesion (> 0) or all background (< 0)."""
    model = build_model("unet", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), width=0.125)
    head = model.layers[-1]
    kernel, bias = head.get_weights()
    head.set_weights([np.zeros_like(kernel), np.full_like(bias, logit)])
    return model


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
    assert "is not better than served version 1" in lines[-1]

    second = publish_model(lesion, "lesion", base_dir, ph2_dummy, lines)
    assert second == base_dir / "ph2_unet" / "2" and "published" in lines[-1]
    lesion_jaccard = json.loads((second / publish.METRICS_FILE).read_text())["splits"]
    assert lesion_jaccard["validation"]["metrics"]["jaccard"] > 0.0

    assert publish_model(background, "worse", base_dir, ph2_dummy, lines) is None
    assert "not better than served version 2" in lines[-1]
    forced = publish_model(background, "worse, forced", base_dir, ph2_dummy, lines, force=True)
    assert forced == base_dir / "ph2_unet" / "3" and "forced" in lines[-1]

    assert [p.name for p in versions.served_versions(base_dir / "ph2_unet")] == ["1", "2", "3"]
    assert not (base_dir / "ph2_unet" / ".candidate").exists()
    assert 'name: "ph2_unet"' in (base_dir / export.MODELS_CONFIG).read_text()


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


def test_export_if_better_publishes_a_run_only_when_it_beats_the_served_version(
    ph2_dummy, tmp_path, capsys
):
    base_dir = tmp_path / "saved_models"

    def export_run(logit, name):
        run_dir = tmp_path / name
        run_dir.mkdir()
        constant_model(logit).save(run_dir / train.BEST_MODEL_FILE)
        train.TrainConfig(image_size=IMAGE_SIZE, data_dir=str(ph2_dummy.data_dir)).save(
            run_dir / train.CONFIG_FILE
        )
        status = cli.main(
            ["export", "--run-dir", str(run_dir), "--model-name", "ph2_unet"]
            + ["--base-dir", str(base_dir), "--if-better"]
        )
        assert status in (0, None)
        return json.loads(capsys.readouterr().out.splitlines()[-1])["saved_model"]

    assert export_run(-50.0, "background") == str(base_dir / "ph2_unet" / "1")
    assert export_run(50.0, "lesion") == str(base_dir / "ph2_unet" / "2")
    assert export_run(-50.0, "worse") is None
    metrics = json.loads((base_dir / "ph2_unet" / "2" / publish.METRICS_FILE).read_text())
    assert metrics["source"]["name"] == "lesion"
    assert metrics["source"]["config"]["image_size"] == IMAGE_SIZE
    assert versions.served_versions(base_dir / "ph2_unet")[-1].name == "2"


def test_export_if_better_refuses_a_version(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    constant_model(1.0).save(run_dir / train.BEST_MODEL_FILE)
    train.TrainConfig(image_size=IMAGE_SIZE).save(run_dir / train.CONFIG_FILE)
    status = cli.main(["export", "--run-dir", str(run_dir), "--if-better", "--version", "3"])
    assert status == 2
    assert "--if-better picks the version itself; drop --version 3" in capsys.readouterr().err
