"""A run directory belongs to one run: its state, its identity, its lock and atomic writes."""

import dataclasses
import os
import signal
import subprocess
import sys

import pytest

from ph2_tf import files
from ph2_tf.training import runs
from ph2_tf.training.config import TrainConfig


def run_until_killed(code, *args):
    """Runs Python `code` with `args` in a child process that must SIGKILL itself."""
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], check=False)
    assert result.returncode == -signal.SIGKILL


def tiny_config(tmp_path, **overrides):
    return TrainConfig(out_dir=str(tmp_path / "run"), epochs=2, **overrides)


def test_run_state_follows_the_files_a_run_writes(tmp_path):
    cfg = tiny_config(tmp_path)
    run_dir = tmp_path / "run"
    assert runs.run_state(cfg) == "new"
    run_dir.mkdir()
    cfg.save(run_dir / runs.CONFIG_FILE)
    assert runs.run_state(cfg) == "partial"
    (run_dir / runs.LOG_FILE).write_text("epoch,val_jaccard\n0,0.5\n1,0.6\n")
    (run_dir / runs.BACKUP_DIR).mkdir()
    assert runs.run_state(cfg) == "partial"  # fit did not reach its end: the backup is still there
    (run_dir / runs.BACKUP_DIR).rmdir()
    assert runs.run_state(cfg) == "partial"  # no best.keras yet
    (run_dir / runs.BEST_MODEL_FILE).write_bytes(b"PK")
    assert runs.run_state(cfg) == "finished"
    without_checkpoints = dataclasses.replace(cfg, checkpoints=False)
    without_checkpoints.save(run_dir / runs.CONFIG_FILE)
    (run_dir / runs.BEST_MODEL_FILE).unlink()
    assert runs.run_state(without_checkpoints) == "finished"


def test_another_config_is_refused_naming_the_fields_that_differ(tmp_path):
    cfg = tiny_config(tmp_path)
    (tmp_path / "run").mkdir()
    cfg.save(tmp_path / "run" / runs.CONFIG_FILE)
    other = dataclasses.replace(cfg, model="segnet", learning_rate=1e-3)
    with pytest.raises(runs.RunDirError) as info:
        runs.run_state(other)
    message = str(info.value)
    assert "model 'unet' -> 'segnet'" in message and "learning_rate 0.0001 -> 0.001" in message
    assert "--overwrite" in message and "\n" not in message
    # Where the data is read from does not make another run.
    assert runs.run_state(dataclasses.replace(cfg, data_dir=str(tmp_path / "elsewhere"))) == (
        "partial"
    )


def test_default_out_dir_differs_for_every_setting_that_changes_the_result(tmp_path):
    cfg = tiny_config(tmp_path)
    changes = dict(
        model="segnet",
        loss="dice",
        learning_rate=3e-4,
        epochs=3,
        seed=1,
        image_size=128,
        width=0.25,
        batch_size=4,
        augment="all",
        colour_constancy=True,
        ema_momentum=0.99,
        weight_decay=0.0,
        precision="mixed_bfloat16",
    )
    names = {runs.default_out_dir(cfg)}
    for field, value in changes.items():
        names.add(runs.default_out_dir(dataclasses.replace(cfg, **{field: value})))
    assert len(names) == len(changes) + 1
    assert runs.default_out_dir(cfg) == runs.default_out_dir(
        dataclasses.replace(cfg, data_dir="/data", out_dir="/somewhere")
    )
    assert runs.default_out_dir(cfg).startswith("runs/unet-bce-lr0.0001-e2-seed0-96px-w0.125-")


def test_a_locked_run_directory_is_refused_and_released(tmp_path):
    with runs.locked(tmp_path):
        assert (tmp_path / runs.LOCK_FILE).read_text() == str(os.getpid())
        with pytest.raises(runs.RunDirError, match=f"in use by process {os.getpid()}"):
            with runs.locked(tmp_path):
                pass
    assert not (tmp_path / runs.LOCK_FILE).exists()
    with runs.locked(tmp_path):  # free again
        pass


def test_a_killed_holder_leaves_no_lock_behind(tmp_path):
    holder = (
        "import os, signal, sys\n"
        "from ph2_tf.training import runs\n"
        "with runs.locked(sys.argv[1]):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    run_until_killed(holder, tmp_path)
    assert (tmp_path / runs.LOCK_FILE).exists()  # the file stays, but nobody holds it
    with runs.locked(tmp_path):
        pass


def test_clear_removes_only_what_train_writes(tmp_path):
    for name in (runs.CONFIG_FILE, runs.LOG_FILE, runs.BEST_MODEL_FILE, "notes.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / runs.BACKUP_DIR).mkdir()
    runs.clear(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_load_trained_names_a_missing_or_damaged_model(tmp_path):
    with pytest.raises(runs.RunDirError, match=f"{tmp_path}: no best.keras"):
        runs.load_trained(tmp_path)
    (tmp_path / runs.BEST_MODEL_FILE).write_bytes(b"")
    with pytest.raises(runs.RunDirError, match="not a readable Keras model file"):
        runs.load_trained(tmp_path)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    path = tmp_path / "metrics.json"
    files.write_json(path, {"jaccard": 0.5})
    with pytest.raises(RuntimeError):
        with files.replacing(path) as partial:
            partial.write_text('{"jacc')
            raise RuntimeError("disk full")
    assert path.read_text() == '{\n  "jaccard": 0.5\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_kill_in_the_middle_of_a_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "config.json"
    files.write_text(path, "old\n")
    writer = (
        "import os, signal, sys\n"
        "from ph2_tf import files\n"
        "with files.replacing(sys.argv[1]) as partial, open(partial, 'w') as f:\n"
        "    f.write('new, half')\n"
        "    f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    run_until_killed(writer, path)
    assert path.read_text() == "old\n"
    files.write_text(path, "new\n")  # the stray partial file is simply written over
    assert path.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_init_from_is_one_identity_however_its_path_is_spelled(tmp_path, monkeypatch):
    for name in ("a.keras", "b.keras"):
        (tmp_path / name).write_bytes(b"PK")
    cfg = tiny_config(tmp_path, init_from=str(tmp_path / "a.keras"))
    (tmp_path / "run").mkdir()
    cfg.save(tmp_path / "run" / runs.CONFIG_FILE)
    monkeypatch.chdir(tmp_path)
    assert runs.run_state(dataclasses.replace(cfg, init_from="a.keras")) == "partial"
    with pytest.raises(runs.RunDirError, match="init_from"):
        runs.run_state(dataclasses.replace(cfg, init_from=str(tmp_path / "b.keras")))


def test_a_moved_runs_root_keeps_a_later_stage_the_same_run(tmp_path):
    """A stage that starts from the run beside it is the same run wherever the root now is
    (a root copied elsewhere, or trained on the GPU machine and unpacked here)."""
    trained = tmp_path / "device" / "recipe"
    for stage in ("base", "other"):
        (trained / stage).mkdir(parents=True)
        (trained / stage / "best.keras").write_bytes(b"PK")
    cfg = TrainConfig(
        out_dir=str(trained / "finetune"), epochs=2, init_from=str(trained / "base" / "best.keras")
    )
    (trained / "finetune").mkdir()
    cfg.save(trained / "finetune" / runs.CONFIG_FILE)
    here = tmp_path / "runs" / "recipe"
    here.parent.mkdir()
    trained.rename(here)
    moved = dataclasses.replace(
        cfg, out_dir=str(here / "finetune"), init_from=str(here / "base" / "best.keras")
    )
    assert runs.run_state(moved) == "partial"
    elsewhere = dataclasses.replace(moved, init_from=str(here / "other" / "best.keras"))
    with pytest.raises(runs.RunDirError, match="init_from"):
        runs.run_state(elsewhere)


def test_best_checkpoint_beats_only_the_epochs_the_restored_state_includes(tmp_path):
    import keras

    from ph2_tf.training.callbacks import BestCheckpoint

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    # A resumed run: EpochLog has already dropped the rows of the epochs to train again.
    (tmp_path / runs.LOG_FILE).write_text("epoch,val_jaccard\n0,0.5\n")
    checkpoint = BestCheckpoint(tmp_path / runs.BEST_MODEL_FILE, "val_jaccard")
    checkpoint.set_model(model)
    checkpoint.on_epoch_begin(1)
    assert checkpoint.best == 0.5
    checkpoint.on_epoch_end(1, {"val_jaccard": 0.4})
    assert not (tmp_path / runs.BEST_MODEL_FILE).exists()
    checkpoint.on_epoch_end(1, {"val_jaccard": 0.6})
    keras.models.load_model(tmp_path / runs.BEST_MODEL_FILE)
    checkpoint.on_epoch_end(2, {"val_jaccard": float("nan")})  # never replaces a saved model
    assert checkpoint.best == 0.6
