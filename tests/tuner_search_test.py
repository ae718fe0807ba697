"""End to end: a 2-configuration, 1-epoch, 2-seed grid of `tuner_search.py` on dummy PH2."""

import csv
import dataclasses
import json
import types

import numpy as np
import pytest
from conftest import SCRIPTS_DIR, run_python

import tuner_search
from ph2_tf.experiments import report
from ph2_tf.training.profiles import Profile
from ph2_tf.training.runs import BEST_MODEL_FILE, EPOCH_SECONDS, read_log

CONFIGURATIONS = ["unet-bce-lr0.0001-e30", "segnet-dice-lr0.0001-e10"]
TINY = Profile(image_size=32, width=0.125, batch_size=2)


def _argv(tmp_path, ph2_dummy, configurations=CONFIGURATIONS, epochs=1, seeds=2):
    return [
        "--only",
        *configurations,
        "--epochs",
        str(epochs),
        "--run-name",
        "tiny",
        "--seeds",
        str(seeds),
        "--results-dir",
        str(tmp_path / "results"),
        "--saved-models-dir",
        str(tmp_path / "saved_models"),
        "--data-dir",
        ph2_dummy.data_dir,
        "--manual-dir",
        ph2_dummy.manual_dir,
    ]


def _run(tmp_path, ph2_dummy, **kwargs):
    args = tuner_search.parse_args(_argv(tmp_path, ph2_dummy, **kwargs))
    settings = dataclasses.replace(tuner_search.settings_from_args(args), profile=TINY, verbose=0)
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    tuner_search.run(args, settings)
    return settings.run_dir


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, ph2_dummy):
    tmp_path = tmp_path_factory.mktemp("tuner")
    run_dir = _run(tmp_path, ph2_dummy)
    records = {p.name: p.stat().st_mtime_ns for p in (run_dir / "records").glob("*.json")}
    return tmp_path, run_dir, records


def test_writes_every_output(finished_run):
    tmp_path, run_dir, records = finished_run
    for name in ["comparison.md", "comparison.csv", "curves.png", "masks.png", "comparison.png"]:
        assert (run_dir / name).stat().st_size > 0, name
    # --epochs 1 overrides the configurations' epochs, and so their names.
    assert sorted(records) == [
        f"{name}__seed{seed}.json"
        for name in ["segnet-dice-lr0.0001-e1", "unet-bce-lr0.0001-e1"]
        for seed in (0, 1)
    ]
    assert list(run_dir.glob("runs/*/seed0/tensorboard/**/events.out.tfevents.*"))

    with open(run_dir / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == report.CSV_COLUMNS
    assert [(r["model"], r["loss"], r["epochs"], r["seeds"]) for r in rows] == [
        ("unet", "bce", "1", "2"),
        ("segnet", "dice", "1", "2"),
    ]
    for row in rows:
        assert row["optimizer"] == "AdamW"
        for column in ["pixel_accuracy_mean", "jaccard_mean", "dice_mean"]:
            assert 0.0 <= float(row[column]) <= 1.0
        name = f"{row['model']}-{row['loss']}-lr0.0001-e1"
        seeds = [
            json.loads((run_dir / "records" / f"{name}__seed{s}.json").read_text()) for s in (0, 1)
        ]
        jaccards = [r["test"]["jaccard"] for r in seeds]
        assert float(row["jaccard_mean"]) == pytest.approx(np.mean(jaccards))
        assert float(row["jaccard_std"]) == pytest.approx(np.std(jaccards, ddof=1))
        for record in seeds:
            assert record["epochs_run"] == 1 and len(record["history"]["loss"]) == 1
            info = record["provenance"]
            assert info["backend"] == "tensorflow" and info["precision"] == "float32"
            assert len(info["git"]["commit"]) == 40 and info["packages"]["keras"]

    table = (run_dir / "comparison.md").read_text()
    assert 'pixel accuracy (the study\'s "IoU" metric)' in table and " ± " in table
    assert "sample standard deviation" in table and "Produced by: backend tensorflow" in table
    # With --epochs 1 neither configuration is one of the study's: no study score beside it.
    assert "did not train" not in table and table.count("| — |") == 2
    assert "| unet | 1 | AdamW | bce | 0.0001 | 2 |" in table  # 2 seeds
    assert "No record yet" not in table

    for model in ["ph2_unet", "ph2_segnet"]:
        version = tmp_path / "saved_models" / model / "1"
        assert (version / "saved_model.pb").exists()
        metrics = json.loads((version / "metrics.json").read_text())
        for split in ("validation", "test"):
            measured = metrics["splits"][split]
            assert measured["resolution"] == "original" and measured["num_images"] > 0
            assert set(measured["metrics"]) >= {"jaccard", "dice", "pixel_accuracy"}
        assert metrics["source"]["name"].startswith(model.removeprefix("ph2_"))
    config = (tmp_path / "saved_models" / "models.config").read_text()
    assert 'name: "ph2_unet"' in config and 'name: "ph2_segnet"' in config


def test_no_checkpoints_scores_final_weights_and_writes_no_per_seed_model(tmp_path, ph2_dummy):
    args = tuner_search.parse_args(
        _argv(tmp_path, ph2_dummy, configurations=CONFIGURATIONS[:1], seeds=1)
        + ["--no-checkpoints", "--no-export"]
    )
    settings = dataclasses.replace(tuner_search.settings_from_args(args), profile=TINY, verbose=0)
    assert not settings.checkpoints
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    tuner_search.run(args, settings)
    (record_path,) = (settings.run_dir / "records").glob("*.json")
    assert json.loads(record_path.read_text())["test"]["jaccard"] >= 0
    (seed_dir,) = (settings.run_dir / "runs").glob("*/seed0")
    assert (seed_dir / "log.csv").exists() and (seed_dir / "final.keras").exists()
    assert not (seed_dir / BEST_MODEL_FILE).exists()
    assert not (seed_dir / "backup").exists()


def test_missing_data_ends_the_run_before_any_trial(tmp_path, monkeypatch):
    monkeypatch.delenv("PH2_MANUAL_DIR", raising=False)
    (tmp_path / "no_ph2").mkdir()
    nowhere = types.SimpleNamespace(
        data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path / "no_ph2")
    )
    with pytest.raises(SystemExit) as info:
        _run(tmp_path, nowhere)
    assert str(info.value).startswith("tuner_search.py: error: PH2 data not found")
    assert not list((tmp_path / "results").rglob("*.json"))


def test_rerun_skips_finished_trials(finished_run, ph2_dummy, capsys):
    tmp_path, run_dir, records = finished_run
    capsys.readouterr()
    _run(tmp_path, ph2_dummy)
    out = capsys.readouterr().out
    assert ", seed 0 ---" not in out  # no training started
    after = {p.name: p.stat().st_mtime_ns for p in (run_dir / "records").glob("*.json")}
    assert after == records  # nothing rewritten
    # Neither is anything exported twice: the same model is not better than itself.
    assert "is not better than served version 1" in out
    assert sorted(p.name for p in (tmp_path / "saved_models" / "ph2_unet").iterdir()) == ["1"]


def test_killed_seed_resumes_into_one_consistent_record(ph2_dummy, tmp_path):
    argv = _argv(tmp_path, ph2_dummy, configurations=CONFIGURATIONS[:1], epochs=2, seeds=1)
    killed = run_python([SCRIPTS_DIR / "tuner_killed_run.py", *argv, "--no-export"], check=False)
    assert killed.returncode == -9, killed.stderr
    run_dir = _run(tmp_path, ph2_dummy, configurations=CONFIGURATIONS[:1], epochs=2, seeds=1)

    record = json.loads((run_dir / "records" / "unet-bce-lr0.0001-e2__seed0.json").read_text())
    log = read_log(run_dir / "runs" / "unet-bce-lr0.0001-e2" / "seed0")
    assert log["epoch"] == [0, 1]
    assert record["epochs_run"] == 2
    assert [len(values) for values in record["history"].values()] == [2] * len(record["history"])
    # Both epochs' time, the one before the kill included.
    assert record["train_seconds"] == pytest.approx(sum(log[EPOCH_SECONDS]))
    assert min(log[EPOCH_SECONDS]) > 0
