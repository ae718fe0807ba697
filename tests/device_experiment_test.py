"""Declared experiments on the GPU machine: a call's size, staging, packing, and the runs' way back.

Device time is scarce, so the scripts of `benchmarks/device/` must work on their first call
there. The slow test runs `run_experiment.sh` as the device would (Keras on JAX, each seed its
own process) on the dummy data, unpacks what it returns into a runs root here, and calls it again
from what came back.
"""

import importlib.util
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile

import h5py
import pytest
from conftest import REPO_ROOT, run_without_tensorflow, subprocess_env

DEVICE_DIR = REPO_ROOT / "benchmarks" / "device"


def load_script(name):
    path = DEVICE_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_recipe(path, **stage_changes):
    """A two-stage recipe small enough to train in seconds: a base, then two fine-tunes."""
    train = {"model": "unet", "image_size": 32, "epochs": 2}
    stages = {
        "base": {"profile": "small", "train": train, "seeds": [0]},
        "finetune": {
            "profile": "small",
            "init_from": "base",
            "train": {**train, "augment": "all_artefacts_rulers_hair"},
            "seeds": [1, 2],
        },
    }
    for stage, change in stage_changes.items():
        stages[stage] = change(stages[stage])
    recipe = {
        "name": "device_tiny",
        "stages": stages,
        "soup": {"ingredients": ["base", "finetune"]},
        "export": {"model_name": "ph2_tiny", "threshold": 0.5, "largest_component": True},
    }
    path.write_text(json.dumps(recipe))
    return path


def fake_runs(root, sizes):
    """Run folders of a recipe `r` with files of the given sizes: `{"run/file": bytes}`."""
    for name, size in sizes.items():
        path = root / "r" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))


def test_pack_cuts_the_runs_into_parts_that_join_into_the_tar(tmp_path, monkeypatch):
    run_experiment = load_script("run_experiment")
    monkeypatch.setattr(run_experiment, "PART_BYTES", 20000)
    fake_runs(tmp_path / "work", {"base/best.keras": 30000, "base/log.csv": 100})
    out = tmp_path / "out"
    out.mkdir()
    parts = run_experiment.pack(tmp_path / "work", "r", out, max_parts=3)
    assert [p.name for p in parts] == [f"r.tar.{i:02d}" for i in range(len(parts))]
    assert len(parts) >= 2 and all(p.stat().st_size <= 20000 for p in parts)
    (tmp_path / "joined.tar").write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(tmp_path / "joined.tar") as tar:
        assert sorted(tar.getnames()) == ["r", "r/base", "r/base/best.keras", "r/base/log.csv"]
    assert not (tmp_path / "work" / "r.tar").exists()  # only the parts are left


def test_pack_drops_the_last_models_before_it_goes_over_the_parts_a_call_returns(
    tmp_path, monkeypatch, capsys
):
    run_experiment = load_script("run_experiment")
    monkeypatch.setattr(run_experiment, "PART_BYTES", 31000)  # tars grow by 10 KiB
    fake_runs(tmp_path / "work", {"a/best.keras": 15000, "a/last.keras": 15000})
    parts = run_experiment.pack(tmp_path / "work", "r", tmp_path, max_parts=1)
    assert "packed without last.keras" in capsys.readouterr().out
    with tarfile.open(parts[0]) as tar:
        assert "r/a/best.keras" in tar.getnames() and "r/a/last.keras" not in tar.getnames()

    fake_runs(tmp_path / "big", {"a/best.keras": 40000})
    with pytest.raises(ValueError, match="best.keras files alone take more than 1 parts"):
        run_experiment.pack(tmp_path / "big", "r", tmp_path, max_parts=1)
    assert not (tmp_path / "big" / "r.tar").exists()


def from_version(stage):
    """The stage started from a published version instead of the base."""
    stage = {key: value for key, value in stage.items() if key != "init_from"}
    return {**stage, "init_from_version": "saved_models/ph2_unet/8"}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"finetune": from_version}, "needs TensorFlow to read; train it on a machine with"),
        ({}, "pass --stage base before --stage finetune"),
    ],
)
def test_a_stage_the_device_cannot_train_is_refused_before_anything_trains(
    tmp_path, changes, message
):
    recipe = write_recipe(tmp_path / "recipe.json", **changes)
    proc = run_without_tensorflow(
        [DEVICE_DIR / "run_experiment.py", recipe, "--stage", "finetune",
         "--data-dir", tmp_path, "--out", tmp_path, "--work", tmp_path / "work"],
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "work").exists()


def test_carry_size_counts_the_tree_that_travels(tmp_path):
    carry_size = load_script("carry_size")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / ".gitignore").write_text("/ignored/\n")
    (tmp_path / "tracked").write_bytes(b"x" * 1000)
    subprocess.run([*git, "add", "tracked", ".gitignore"], check=True)
    (tmp_path / "untracked").write_bytes(b"x" * 300)
    (tmp_path / "ignored").mkdir()
    (tmp_path / "ignored" / "data").write_bytes(b"x" * 5000)
    assert carry_size.tree_bytes(tmp_path) == 1000 + 300 + len("/ignored/\n")
    assert carry_size.folder_bytes(tmp_path / "ignored") == 5000


def bash(script, cwd, **env):
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, env={**os.environ, **env},
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_a_folder_staged_by_one_call_is_found_by_the_next(tmp_path):
    stage_dir = tmp_path / "staged"
    data = tmp_path / "elsewhere" / ".device_data"
    (data / "ph2").mkdir(parents=True)
    (data / "SOURCE_COMMIT").write_text("abc123 0\n")
    proc = bash(f"bash {DEVICE_DIR / 'stage.sh'} {data}", tmp_path, STAGE_DIR=str(stage_dir))
    assert proc.returncode == 0, proc.stderr
    assert (stage_dir / ".device_data" / "SOURCE_COMMIT").read_text() == "abc123 0\n"

    # From a tree that did not carry it, the run scripts find it there, and the commit in it.
    look = (
        f". {DEVICE_DIR / 'environment.sh'}; SKIP_INSTALL=1 device_environment && "
        'echo "$DATA_DIR $PH2_GIT_COMMIT $KERAS_BACKEND"'
    )
    proc = bash(look, tmp_path, STAGE_DIR=str(stage_dir), DATA_DIR="", PH2_GIT_COMMIT="")
    assert proc.stdout.split() == [f"{stage_dir}/.device_data", "abc123", "jax"]
    (tmp_path / ".device_data").mkdir()  # carried by this call: it wins
    proc = bash(look, tmp_path, STAGE_DIR=str(stage_dir), DATA_DIR="", PH2_GIT_COMMIT="")
    assert proc.stdout.split()[0] == ".device_data"

    # Neither carried nor staged: one line that says what to do, and a failure.
    (tmp_path / "empty").mkdir()
    proc = bash(look, tmp_path / "empty", STAGE_DIR=str(tmp_path / "none"), DATA_DIR="")
    assert proc.returncode == 1 and "stage it first" in proc.stdout
    proc = bash(f"bash {DEVICE_DIR / 'stage.sh'} {tmp_path / 'missing'}", tmp_path)
    assert proc.returncode == 2 and "name it in the call's carry" in proc.stderr


def _run_experiment(tmp_path, data_dir, recipe, call, status=0, **extra):
    out = tmp_path / f"out{call}"
    out.mkdir()
    env = subprocess_env(
        OUT=str(out),
        SKIP_INSTALL="1",
        DATA_DIR=data_dir,
        EXPERIMENT=str(recipe),
        STAGES="base finetune",
        EXPERIMENT_WORK=str(tmp_path / f"work{call}"),
        RESUME_DIR=str(tmp_path / "none"),
        HOME=str(tmp_path),  # JAX's compilation cache goes under it
        PYTHON=sys.executable,
    )
    env.update(extra)
    proc = subprocess.run(
        ["bash", str(DEVICE_DIR / "run_experiment.sh")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert (out / "experiment.log").read_text() == proc.stdout
    return out, proc.stdout


def _unpack(out, runs_root):
    joined = runs_root.parent / "joined.tar"
    joined.write_bytes(b"".join(p.read_bytes() for p in sorted(out.glob("*.tar.*"))))
    with tarfile.open(joined) as tar:
        names = tar.getnames()
        tar.extractall(runs_root, filter="data")
    return names


@pytest.mark.slow
def test_an_experiment_trains_on_the_device_and_its_runs_are_judged_here(ph2_prepared, tmp_path):
    pytest.importorskip("jax")
    from ph2_tf.training import recipes

    recipe_path = write_recipe(tmp_path / "recipe.json")
    out, log = _run_experiment(tmp_path, ph2_prepared, recipe_path, 1)
    assert "resumed: 0 finished runs" in log and "experiment: exit status 0" in log
    assert log.count(": finished, 2 of 2 epochs") == 3
    names = _unpack(out, tmp_path / "runs")
    for run in ("base", "finetune-seed1", "finetune-seed2"):
        for member in ("config.json", "log.csv", "best.keras", "last.keras", "train.out"):
            assert f"device_tiny/{run}/{member}" in names
        provenance = json.loads(
            (tmp_path / "runs/device_tiny" / run / "provenance.json").read_text()
        )
        assert provenance["backend"] == "jax"
    assert not any("backup" in n or "tensorboard" in n for n in names)

    # Here, where the runs are judged, every stage counts as trained (the fine-tunes started from
    # the base beside them), and the models came without the optimizer's state but load.
    recipe = recipes.load(recipe_path)
    for stage in ("base", "finetune"):
        recipes.require_trained(recipe, stage, tmp_path / "runs")
    from ph2_tf.training.runs import load_keras_model

    for name in ("best.keras", "last.keras"):
        model_file = tmp_path / "runs" / "device_tiny" / "finetune-seed2" / name
        with zipfile.ZipFile(model_file) as archive:
            weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")))
            assert "optimizer" not in weights and "layers" in weights
        assert load_keras_model(model_file).count_params() > 0

    # A fresh machine, given what came back, trains nothing again.
    again, log = _run_experiment(tmp_path, ph2_prepared, recipe_path, 2, RESUME_DIR=str(out))
    assert "resumed: 3 finished runs" in log and log.count("trained in an earlier call") == 3

    # A call that runs out of time returns the logs of the runs it stopped, and no models.
    stopped, log = _run_experiment(
        tmp_path, ph2_prepared, recipe_path, 3, status=3, EXPERIMENT_TIMEOUT="1"
    )
    assert "stopped at the time limit" in log
    assert "not trained: finetune, since base did not finish" in log
    assert "experiment: exit status 3" in log
    names = _unpack(stopped, tmp_path / "stopped")
    assert "device_tiny/base/train.out" in names
    assert not any(n.endswith(".keras") or "backup" in n for n in names)
