"""`tune` (`tuner_search.py`): its command line, and end to end a 2-configuration, 1-epoch, 2-seed
grid on dummy PH2."""

import csv
import dataclasses
import json
import re
import shutil
import types

import numpy as np
import pytest
from conftest import REPO_ROOT, SCRIPTS_DIR, run_python

from ph2_tf import cli
from ph2_tf.cli import tune
from ph2_tf.experiments import report
from ph2_tf.experiments.study import STUDY_GRID
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


def _run(tmp_path, ph2_dummy, extra=(), **kwargs):
    """Runs `tune` on the tiny profile; returns the run directory and the exit status."""
    args = tune.standalone_parser().parse_args([*_argv(tmp_path, ph2_dummy, **kwargs), *extra])
    settings = dataclasses.replace(tune.settings_from_args(args), profile=TINY, verbose=0)
    return settings.run_dir, tune.run_search(args, settings)


NAMES = [config.name for config in STUDY_GRID]
SMALL_REFERENCE = REPO_ROOT / "results" / "reference-grid-small-seeds2"
# What `--help` must not load: TensorFlow alone takes seconds to import.
HEAVY_MODULES = ("tensorflow", "keras", "keras_tuner", "jax")
HELP_IN_A_FRESH_PROCESS = """
import runpy, sys
sys.argv = {argv!r}
try:
    {run}
except SystemExit as exit:
    assert exit.code == 0, exit.code
print("imported:", [name for name in {heavy!r} if name in sys.modules])
"""


@pytest.mark.parametrize(
    "argv, run",
    [
        (["tuner_search.py", "--help"], "runpy.run_path('tuner_search.py', run_name='__main__')"),
        (["ph2-seg", "tune", "--help"], "runpy.run_module('ph2_tf', run_name='__main__')"),
    ],
    ids=["tuner_search.py", "ph2-seg tune"],
)
def test_help_is_quick_shows_each_default_once_and_lists_the_configurations(argv, run):
    code = HELP_IN_A_FRESH_PROCESS.format(argv=argv, run=run, heavy=HEAVY_MODULES)
    out = run_python(["-c", code]).stdout
    assert out.rstrip().endswith("imported: []")
    options = out[out.index("options:") : out.index("configurations of the study's grid")]
    for option in re.split(r"\n  (?=-)", options)[1:]:
        assert option.count("default") <= 1, option
    assert "(default: None)" not in out and "(default: 1)" in out
    listed = out[out.index("configurations of the study's grid") :].split()
    assert all(name in listed for name in NAMES)


@pytest.mark.parametrize(
    "main",
    [tune.main, lambda argv: cli.main(["tune", *argv])],
    ids=["tuner_search.py", "ph2-seg tune"],
)
def test_an_unknown_configuration_is_one_error_line_listing_the_valid_names(main, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--only", "unet-bce-lr0.0001-e30", "unet-bce-lr0.1-e30"])
    assert exit_info.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert "argument --only: invalid choice: 'unet-bce-lr0.1-e30'" in line
    assert all(name in line for name in NAMES)


def test_options_of_the_grid_are_refused_with_the_search(tmp_path, capsys):
    status = tune.main(
        ["--mode", "search", "--epochs", "2", "--results-dir", str(tmp_path), "--no-export"]
    )
    assert status == 2
    assert capsys.readouterr().err.splitlines() == [
        "python tuner_search.py: error: --only and --epochs choose the configurations of "
        "--mode grid"
    ]
    assert not list(tmp_path.iterdir())


def test_epochs_given_to_configurations_that_then_coincide_keeps_one(tmp_path):
    args = tune.standalone_parser().parse_args(
        ["--only", NAMES[0], NAMES[1], "--epochs", "2", "--profile", "small"]
        + ["--results-dir", str(tmp_path)]
    )
    (config,) = tune.settings_from_args(args).grid
    assert config.name == "unet-bce-lr0.0001-e2"


def test_report_only_rebuilds_the_committed_table_from_the_committed_records(
    ph2_dummy, tmp_path, capsys
):
    shutil.copytree(SMALL_REFERENCE / "records", tmp_path / "run" / "records")
    options = ["--report-only", "--results-dir", str(tmp_path), "--run-name", "run"]
    options += ["--data-dir", ph2_dummy.data_dir, "--profile", "small"]

    assert tune.main([*options, "--seeds", "1"]) == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert line.endswith("hold seeds [0, 1]: pass --seeds 2")

    assert tune.main([*options, "--seeds", "2"]) == 0
    run_dir = tmp_path / "run"
    csv_text = (run_dir / "comparison.csv").read_text()
    assert csv_text == (SMALL_REFERENCE / "comparison.csv").read_text()
    tables, plots = capsys.readouterr().out.splitlines()[-3:-1]
    assert tables == f"tables: {run_dir / 'comparison.md'}, {run_dir / 'comparison.csv'}"
    # No models in git, so no masks.png: only the plots drawn are named.
    assert plots == f"plots: {run_dir / 'comparison.png'}, {run_dir / 'curves.png'}"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, ph2_dummy):
    tmp_path = tmp_path_factory.mktemp("tuner")
    run_dir, status = _run(tmp_path, ph2_dummy)
    assert status == 0
    records = {p.name: p.stat().st_mtime_ns for p in (run_dir / "records").glob("*.json")}
    return tmp_path, run_dir, records, (run_dir / "run.log").read_text()


@pytest.mark.slow
def test_writes_every_output(finished_run):
    tmp_path, run_dir, records, _ = finished_run
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


@pytest.mark.slow
def test_says_which_trial_runs_and_ends_with_where_the_outputs_are(finished_run):
    _, run_dir, _, log = finished_run
    # Trial N of M counts configurations, in the grid's order.
    trials = re.findall(r"^trial (\d+) of (\d+): (\S+)$", log, flags=re.MULTILINE)
    assert trials == [
        ("1", "2", "unet-bce-lr0.0001-e1"),
        ("2", "2", "segnet-dice-lr0.0001-e1"),
    ]
    tables, plots, wall_time = log.splitlines()[-3:]
    assert tables == f"tables: {run_dir / 'comparison.md'}, {run_dir / 'comparison.csv'}"
    assert plots == "plots: " + ", ".join(
        str(run_dir / name) for name in ("comparison.png", "curves.png", "masks.png")
    )
    assert re.fullmatch(r"total wall time: (\d+ min )?\d+ s", wall_time)


@pytest.mark.slow
def test_no_checkpoints_scores_final_weights_and_writes_no_per_seed_model(tmp_path, ph2_dummy):
    run_dir, status = _run(
        tmp_path,
        ph2_dummy,
        configurations=CONFIGURATIONS[:1],
        seeds=1,
        extra=["--no-checkpoints", "--no-export"],
    )
    assert status == 0
    (record_path,) = (run_dir / "records").glob("*.json")
    assert json.loads(record_path.read_text())["test"]["jaccard"] >= 0
    (seed_dir,) = (run_dir / "runs").glob("*/seed0")
    assert (seed_dir / "log.csv").exists() and (seed_dir / "final.keras").exists()
    assert not (seed_dir / BEST_MODEL_FILE).exists()
    assert not (seed_dir / "backup").exists()


def test_missing_data_ends_the_run_before_any_trial(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PH2_MANUAL_DIR", raising=False)
    (tmp_path / "no_ph2").mkdir()
    nowhere = types.SimpleNamespace(
        data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path / "no_ph2")
    )
    _, status = _run(tmp_path, nowhere)
    assert status == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert line.startswith("python tuner_search.py: error: PH2 data not found")
    assert not list((tmp_path / "results").rglob("*.json"))


@pytest.mark.slow
def test_rerun_skips_finished_trials(finished_run, ph2_dummy, capsys):
    tmp_path, run_dir, records, _ = finished_run
    capsys.readouterr()
    _, status = _run(tmp_path, ph2_dummy)
    assert status == 0
    out = capsys.readouterr().out
    assert ", seed 0 ---" not in out and "trial 1 of 2" not in out  # no training started
    after = {p.name: p.stat().st_mtime_ns for p in (run_dir / "records").glob("*.json")}
    assert after == records  # nothing rewritten
    # Neither is anything exported twice: the same model is not better than itself.
    assert "is not better than served version 1" in out
    model_dir = tmp_path / "saved_models" / "ph2_unet"
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "README.md"]  # README: its card


@pytest.mark.slow
def test_killed_seed_resumes_into_one_consistent_record(ph2_dummy, tmp_path):
    argv = _argv(tmp_path, ph2_dummy, configurations=CONFIGURATIONS[:1], epochs=2, seeds=1)
    killed = run_python([SCRIPTS_DIR / "tuner_killed_run.py", *argv, "--no-export"], check=False)
    assert killed.returncode == -9, killed.stderr
    run_dir, _ = _run(tmp_path, ph2_dummy, configurations=CONFIGURATIONS[:1], epochs=2, seeds=1)

    record = json.loads((run_dir / "records" / "unet-bce-lr0.0001-e2__seed0.json").read_text())
    log = read_log(run_dir / "runs" / "unet-bce-lr0.0001-e2" / "seed0")
    assert log["epoch"] == [0, 1]
    assert record["epochs_run"] == 2
    assert [len(values) for values in record["history"].values()] == [2] * len(record["history"])
    # Both epochs' time, the one before the kill included.
    assert record["train_seconds"] == pytest.approx(sum(log[EPOCH_SECONDS]))
    assert min(log[EPOCH_SECONDS]) > 0
