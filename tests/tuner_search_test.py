"""`tune` (`tuner_search.py`): its command line, its run folder (settings, lock, records), and end
to end a 2-configuration, 1-epoch, 2-seed grid on dummy PH2, interrupted and damaged."""

import csv
import dataclasses
import json
import re
import shutil
import types

import numpy as np
import pytest
from conftest import REPO_ROOT, SCRIPTS_DIR, run_python
from external_test import _write_case

from ph2_tf import cli
from ph2_tf.cli import tune
from ph2_tf.experiments import records, report
from ph2_tf.experiments.study import STUDY_GRID
from ph2_tf.training import runs
from ph2_tf.training.config import TrainConfig
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


def _killed_run(kill_at, argv):
    """Runs `tune` in a child process that SIGKILLs itself at `kill_at` (tuner_killed_run.py)."""
    return run_python([SCRIPTS_DIR / "tuner_killed_run.py", kill_at, *argv], check=False)


def _error_lines(captured):
    return [line for line in captured.err.splitlines() if "error:" in line]


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


@pytest.mark.parametrize(
    "option, value",
    [("--seeds", "0"), ("--epochs", "0"), ("--max-trials", "-1"), ("--seeds", "two")],
)
def test_numeric_options_are_range_checked_where_parsed(option, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tune.main([option, value])
    assert exit_info.value.code == 2
    (line,) = _error_lines(capsys.readouterr())
    assert f"argument {option}: " in line


@pytest.mark.parametrize("name", ["", "..", "a/b"])
def test_a_run_name_that_is_not_a_folder_name_is_refused(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tune.main(["--run-name", name])
    assert exit_info.value.code == 2
    (line,) = _error_lines(capsys.readouterr())
    assert "argument --run-name: " in line and "not a folder name" in line


def _settings(tmp_path, *options):
    args = tune.standalone_parser().parse_args(
        ["--profile", "small", "--results-dir", str(tmp_path), *options]
    )
    return tune.settings_from_args(args)


def test_after_a_smoke_run_the_main_job_gets_a_folder_of_its_own_and_plans_every_trial(tmp_path):
    from ph2_tf.experiments import tuning

    smoke = _settings(tmp_path, "--only", NAMES[0], "--epochs", "1")
    main_job = _settings(tmp_path)
    assert smoke.run_dir.parent == main_job.run_dir.parent == tmp_path
    assert smoke.run_dir != main_job.run_dir
    # Pinned: a change of the name would lose a rerun its folder (and the docs show these).
    assert main_job.run_dir.name == "grid-small-seeds1-82b7cd"
    assert smoke.run_dir.name == "grid-small-seeds1-only1-e1-a1ffdf"
    # The smoke run's record does not count for the main job, which has all 15 to train.
    records.write_record(smoke.record_path(smoke.grid[0], 0), {"name": smoke.grid[0].name})
    assert tuning.pending_configurations(main_job) == STUDY_GRID


def test_every_setting_the_records_depend_on_changes_the_default_run_name(tmp_path):
    variants = [
        [],
        ["--seeds", "2"],
        ["--epochs", "3"],
        ["--only", NAMES[0]],
        ["--only", NAMES[0], NAMES[1]],
        ["--precision", "mixed_bfloat16"],
        ["--no-checkpoints"],
        ["--profile", "full"],  # after --profile small: the last one counts
        ["--mode", "search"],
        ["--mode", "search", "--max-trials", "5"],
    ]
    names = [_settings(tmp_path, *options).run_dir.name for options in variants]
    assert len(set(names)) == len(variants), names
    # Paths, verbosity and the order of --only do not change what is trained.
    assert _settings(tmp_path / "elsewhere", "--only", NAMES[1], NAMES[0]).run_dir.name == names[4]


def test_a_run_folder_refuses_other_settings_in_one_line_and_takes_added_configurations(
    ph2_dummy, tmp_path, capsys
):
    options = [*_argv(tmp_path, ph2_dummy, configurations=CONFIGURATIONS[:1], seeds=1)]
    first = tune.settings_from_args(tune.standalone_parser().parse_args(options))
    first.run_dir.mkdir(parents=True)
    records.write_search_settings(first)
    recorded = (first.run_dir / records.SEARCH_FILE).read_text()

    status = tune.main([*options, "--seeds", "2", "--no-checkpoints"])
    assert status == 2
    (line,) = _error_lines(capsys.readouterr())
    assert line.startswith(f"python tuner_search.py: error: {first.run_dir} holds a run of other")
    assert "seeds [0] -> [0, 1]; checkpoints True -> False" in line
    assert "choose another --run-name" in line
    assert sorted(p.name for p in first.run_dir.iterdir()) == [records.SEARCH_FILE]
    assert (first.run_dir / records.SEARCH_FILE).read_text() == recorded

    # Leaving a configuration out is a difference; adding one is not: it is trained beside.
    narrower = dataclasses.replace(first, grid=STUDY_GRID[1:2])
    assert records.settings_differences(json.loads(recorded), narrower) == [
        "configurations unet-bce-lr0.0001-e1 left out"
    ]
    wider = dataclasses.replace(first, grid=first.grid + STUDY_GRID[1:2])
    assert records.settings_differences(json.loads(recorded), wider) == []


def test_a_second_process_on_the_same_run_is_refused(ph2_dummy, tmp_path, capsys):
    options = _argv(tmp_path, ph2_dummy, configurations=CONFIGURATIONS[:1], seeds=1)
    run_dir = tmp_path / "results" / "tiny"
    run_dir.mkdir(parents=True)
    with runs.locked(run_dir):  # what a first tuner holds while it trains
        assert tune.main(options) == 2
    (line,) = _error_lines(capsys.readouterr())
    assert f"{run_dir} is in use by process " in line and "choose another --run-name" in line
    assert not list(run_dir.iterdir())


def test_report_only_without_records_writes_nothing(ph2_dummy, tmp_path, capsys):
    options = ["--report-only", "--results-dir", str(tmp_path), "--profile", "small"]
    assert tune.main([*options, "--data-dir", ph2_dummy.data_dir]) == 2
    (line,) = _error_lines(capsys.readouterr())
    assert "error: no records of the grid's configurations under" in line
    assert not list(tmp_path.iterdir())


def test_report_only_without_the_data_writes_nothing(tmp_path, capsys):
    shutil.copytree(SMALL_REFERENCE / "records", tmp_path / "run" / "records")
    options = ["--report-only", "--results-dir", str(tmp_path), "--run-name", "run"]
    options += ["--profile", "small", "--seeds", "2", "--data-dir", str(tmp_path / "no_tfds")]
    assert tune.main(options) == 2
    (line,) = _error_lines(capsys.readouterr())
    assert "error: ph2/original is not prepared in " in line and "--data-dir" in line
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["records"]


def test_a_damaged_record_is_one_error_line_naming_it(ph2_dummy, tmp_path, capsys):
    shutil.copytree(SMALL_REFERENCE / "records", tmp_path / "run" / "records")
    damaged = tmp_path / "run" / "records" / f"{NAMES[0]}__seed0.json"
    damaged.write_text(damaged.read_text()[:100])
    options = ["--report-only", "--results-dir", str(tmp_path), "--run-name", "run"]
    options += ["--profile", "small", "--seeds", "2", "--data-dir", ph2_dummy.data_dir]
    assert tune.main(options) == 2
    (line,) = _error_lines(capsys.readouterr())
    assert f"error: {damaged}: not a readable record" in line and "delete it" in line


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
    assert (
        "not published (against served version 1, chosen on ph2_validation: selection gain +0.0000"
        in out
    )
    model_dir = tmp_path / "saved_models" / "ph2_unet"
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "README.md"]  # README: its card
    # Chosen on a selection folder instead, the same model is still not better than itself.
    for index in range(3):
        _write_case(tmp_path / "select", f"ISIC_{index}", size=(40, 30))
    _, status = _run(tmp_path, ph2_dummy, extra=["--selection-set", str(tmp_path / "select")])
    assert status == 0
    out = capsys.readouterr().out
    assert "not published (against served version 1, chosen on select: selection gain" in out
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "README.md"]


def test_a_selection_set_without_images_is_refused_before_anything_runs(
    ph2_dummy, tmp_path, capsys
):
    run_dir, status = _run(tmp_path, ph2_dummy, extra=["--selection-set", str(tmp_path / "no")])
    assert status == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(f"--selection-set {tmp_path / 'no'}: no images/ folder there")
    )
    assert not run_dir.exists()


@pytest.mark.slow
def test_killed_seed_resumes_into_one_consistent_record(ph2_dummy, tmp_path):
    argv = _argv(tmp_path, ph2_dummy, configurations=CONFIGURATIONS[:1], epochs=2, seeds=1)
    killed = _killed_run("first-epoch", [*argv, "--no-export"])
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


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill_at, trained_again",
    [("first-epoch", True), ("scoring", False)],
    ids=["before-its-final-weights-are-saved", "while-it-is-scored"],
)
def test_a_seed_killed_after_its_last_epoch_is_trained_again_or_scored(
    kill_at, trained_again, ph2_dummy, tmp_path, capsys
):
    # Without checkpoints, a run is finished once its last epoch is logged: `train` refuses
    # to train it again, and the tuner must still give the seed its record.
    kwargs = dict(configurations=CONFIGURATIONS[:1], epochs=1, seeds=1)
    options = ["--no-checkpoints", "--no-export"]
    killed = _killed_run(kill_at, [*_argv(tmp_path, ph2_dummy, **kwargs), *options])
    assert killed.returncode == -9, killed.stderr
    seed_dir = tmp_path / "results" / "tiny" / "runs" / "unet-bce-lr0.0001-e1" / "seed0"
    assert runs.run_state(TrainConfig.load(seed_dir / runs.CONFIG_FILE)) == "finished"
    assert (seed_dir / records.FINAL_MODEL_FILE).exists() != trained_again
    log_before = (seed_dir / runs.LOG_FILE).read_text()
    capsys.readouterr()

    run_dir, status = _run(tmp_path, ph2_dummy, extra=options, **kwargs)
    assert status == 0
    record = json.loads((run_dir / "records" / "unet-bce-lr0.0001-e1__seed0.json").read_text())
    assert record["epochs_run"] == 1 and 0 <= record["test"]["jaccard"] <= 1
    assert read_log(seed_dir)["epoch"] == [0]
    scored = "scoring its saved final weights" in capsys.readouterr().out
    assert scored != trained_again
    assert ((seed_dir / runs.LOG_FILE).read_text() == log_before) != trained_again


@pytest.mark.slow
def test_a_seed_that_fails_is_reported_and_trained_by_the_next_run(ph2_dummy, tmp_path, capsys):
    kwargs = dict(configurations=CONFIGURATIONS[:1], epochs=2, seeds=2)
    killed = _killed_run("first-epoch", [*_argv(tmp_path, ph2_dummy, **kwargs), "--no-export"])
    assert killed.returncode == -9, killed.stderr
    run_dir = tmp_path / "results" / "tiny"
    seed0 = run_dir / "runs" / "unet-bce-lr0.0001-e2" / "seed0"
    backup = [path for path in (seed0 / runs.BACKUP_DIR).rglob("*") if path.is_file()]
    assert backup
    for path in backup:
        path.write_bytes(b"damaged")
    capsys.readouterr()

    _, status = _run(tmp_path, ph2_dummy, **kwargs)
    assert status == 1
    captured = capsys.readouterr()
    (line,) = _error_lines(captured)
    assert line.startswith(
        "python tuner_search.py: error: unet-bce-lr0.0001-e2 seed 0 failed: RunDirError: "
    )
    assert "run the same command again" in line and f"first removing {seed0} " in line
    # The other seed trained; the table says its row has one of the two seeds asked.
    assert [p.name for p in (run_dir / "records").iterdir()] == ["unet-bce-lr0.0001-e2__seed1.json"]
    table = (run_dir / "comparison.md").read_text()
    assert "Fewer seeds than the 2 asked" in table and "unet-bce-lr0.0001-e2 (1 of 2)" in table
    assert "nothing published: the run is not complete" in captured.out
    assert not (tmp_path / "saved_models").exists()

    shutil.rmtree(seed0)  # what the error line says to do when the seed's files are damaged
    _, status = _run(tmp_path, ph2_dummy, extra=["--no-export"], **kwargs)
    assert status == 0
    assert len(list((run_dir / "records").iterdir())) == 2
    assert "Fewer seeds" not in (run_dir / "comparison.md").read_text()
    assert "| unet | 2 | AdamW | bce | 0.0001 | 2 |" in (run_dir / "comparison.md").read_text()
