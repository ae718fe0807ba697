"""Tests of ph2_tf.training.train: strategy choice, MirroredStrategy equivalence, reproducibility,
resume.
"""

import csv
import dataclasses
import importlib.util
import json

import numpy as np
import pytest
from conftest import SCRIPTS_DIR, run_python, subprocess_env

from ph2_tf.training import train
from ph2_tf.training.callbacks import (
    EpochLog,
    TrainingDivergedError,
    ValidateAveragedWeights,
    cosine_learning_rate,
    make_callbacks,
)
from ph2_tf.training.config import TrainConfig
from ph2_tf.training.distribute import check_multi_worker_patch_applies, get_strategy
from ph2_tf.training.profiles import PROFILES
from ph2_tf.training.runs import (
    BEST_MODEL_FILE,
    CONFIG_FILE,
    EPOCH_SECONDS,
    LAST_MODEL_FILE,
    LOG_FILE,
    RunDirError,
    default_out_dir,
    read_log,
)
from tfds_ph2.ph2 import Ph2FileNotFoundError

TINY = dict(model="unet", loss="bce", image_size=32, width=0.125, batch_size=4)


def tiny_config(ph2_dummy, out_dir, **overrides):
    """A `TrainConfig` for the dummy data, small enough for CI."""
    return TrainConfig(
        **{
            **TINY,
            "epochs": 1,
            "data_dir": ph2_dummy.data_dir,
            "manual_dir": ph2_dummy.manual_dir,
            "out_dir": str(out_dir),
            **overrides,
        }
    )


def run_training(cfg, tmp_path, name, kill_after=None, check=True, kill_in_write=None):
    """Runs `tests/scripts/train_run.py` on `cfg`; returns the process and the weights file.

    `kill_in_write="best:2"` (or `"last:3"`, `"backup:2"`) SIGKILLs the child in the middle of
    writing `best.keras` (or `last.keras`, the backup) at the end of epoch 2 (3).
    """
    config_path = tmp_path / f"{name}.json"
    cfg.save(config_path)
    weights_path = tmp_path / f"{name}.npz"
    args = [SCRIPTS_DIR / "train_run.py", config_path, weights_path]
    env = subprocess_env()
    if kill_in_write:
        env["KILL_IN_WRITE"] = kill_in_write
    proc = run_python(args + ([kill_after] if kill_after else []), check=check, env=env)
    return proc, weights_path


def logged_epochs(out_dir):
    """Epoch numbers (0-based) in a run's CSV log."""
    with (out_dir / LOG_FILE).open(newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_get_strategy_without_gpu_or_tf_config_is_default(monkeypatch):
    import tensorflow as tf

    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf.config.list_logical_devices("GPU"):
        pytest.skip("checks the CPU-only choice")
    strategy = get_strategy()
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1


def test_config_round_trip(tmp_path):
    cfg = TrainConfig(
        model="segnet", loss="dice", augment="all", colour_constancy=True, out_dir=str(tmp_path)
    )
    cfg.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json") == cfg


def test_config_of_a_finished_run_loads_after_its_init_from_is_deleted(tmp_path):
    start = tmp_path / "start.keras"
    start.write_bytes(b"")  # the config checks only that the file exists
    TrainConfig(out_dir=str(tmp_path), init_from=str(start)).save(tmp_path / "config.json")
    start.unlink()
    assert TrainConfig.load(tmp_path / "config.json").init_from == str(start)
    with pytest.raises(
        ValueError, match="init_from must be None, an existing .keras file or a published"
    ):
        TrainConfig(init_from=str(start))


@pytest.mark.parametrize(("written", "loaded"), [(True, "all"), (False, "none")])
def test_config_written_with_augment_on_or_off_loads_as_a_preset(tmp_path, written, loaded):
    path = tmp_path / "config.json"
    fields = dataclasses.asdict(TrainConfig(out_dir=str(tmp_path)))
    path.write_text(json.dumps({**fields, "augment": written}))
    assert TrainConfig.load(path).augment == loaded


def test_config_refuses_unknown_augmentation():
    with pytest.raises(ValueError, match="augment must be one of .*'all'.*, received 'strong'"):
        TrainConfig(augment="strong")


@pytest.mark.filterwarnings("ignore:tensorboard is not installed")
def test_make_callbacks_lists_the_required_callbacks(tmp_path):
    callbacks = make_callbacks(TrainConfig(), tmp_path / "run")
    names = [type(c).__name__ for c in callbacks]
    # The non-finite check must run before anything of an epoch is written, and the best model
    # before the backup (a kill between them then retrains the epoch).
    assert names[:5] == [
        "StopOnNonFinite",
        "EpochLog",
        "BestCheckpoint",
        "LastCheckpoint",
        "AtomicBackupAndRestore",
    ]
    assert ("TensorBoard" in names) == (importlib.util.find_spec("tensorboard") is not None)
    checkpoint = callbacks[names.index("BestCheckpoint")]
    assert checkpoint.monitor == "val_jaccard"
    assert not checkpoint.averaged


def test_make_callbacks_with_weight_averaging_validates_and_saves_the_average(tmp_path):
    callbacks = make_callbacks(TrainConfig(ema_momentum=0.99), tmp_path / "run")
    names = [type(c).__name__ for c in callbacks]
    assert names[2:5] == ["BestCheckpoint", "LastCheckpoint", "AtomicBackupAndRestore"]
    assert callbacks[2].averaged and callbacks[3].averaged
    assert "ValidateAveragedWeights" in names


@pytest.mark.filterwarnings("ignore:tensorboard is not installed")
def test_make_callbacks_without_checkpoints_writes_no_model(tmp_path):
    callbacks = make_callbacks(TrainConfig(checkpoints=False), tmp_path / "run")
    names = [type(c).__name__ for c in callbacks]
    assert names[:2] == ["StopOnNonFinite", "EpochLog"]
    assert not {"AtomicBackupAndRestore", "BestCheckpoint", "LastCheckpoint"} & set(names)


def test_config_refuses_non_bool_checkpoints():
    with pytest.raises(ValueError, match="checkpoints must be True or False, received 'no'"):
        TrainConfig(checkpoints="no")


def test_default_config_is_the_small_profile():
    small = PROFILES["small"]
    cfg = TrainConfig()
    assert (cfg.image_size, cfg.width, cfg.batch_size) == (
        small.image_size,
        small.width,
        small.batch_size,
    )


@pytest.mark.parametrize(
    "field, value",
    [
        ("model", "resnet"),
        ("loss", "nonsense"),
        ("learning_rate", -1.0),
        ("learning_rate", 0.0),
        ("learning_rate", float("nan")),
        ("epochs", 0),
        ("image_size", 0),
        ("image_size", 48),
        ("width", 0.0),
        ("batch_size", 0),
        ("weight_decay", -0.1),
        ("seed", -1),
        ("ema_momentum", 0.0),
        ("ema_momentum", 1.0),
        ("ema_momentum", "0.99"),
        ("lr_schedule", "linear"),
    ],
)
def test_config_refuses_invalid_values(field, value):
    with pytest.raises(ValueError, match=f"^{field} must be"):
        TrainConfig(**{field: value})


def test_config_refuses_xla_with_op_determinism_on_tensorflow():
    # Keras would silently train without XLA: say so instead.
    with pytest.raises(ValueError, match="^jit_compile must be False or None while deterministic"):
        TrainConfig(jit_compile=True)
    assert TrainConfig(jit_compile=True, deterministic=False).jit_compile is True


def test_config_written_with_the_old_xla_default_loads_as_auto(tmp_path):
    fields = json.loads(json.dumps(TrainConfig().__dict__))
    (tmp_path / "config.json").write_text(json.dumps({**fields, "jit_compile": True}))
    assert TrainConfig.load(tmp_path / "config.json").jit_compile is None


def saved_tiny_model(tmp_path, seed, **overrides):
    """Builds a tiny model from `seed`, moves its BatchNorm statistics, saves it as `.keras`."""
    train.set_seeds(seed)
    model = train.build_and_compile(TrainConfig(**{**TINY, **overrides}))
    for weight in model.non_trainable_weights:  # not left at their initial zeros and ones
        weight.assign(np.full(weight.shape, 0.5, dtype="float32"))
    path = tmp_path / f"seed{seed}.keras"
    model.save(path)
    return model, path


def test_init_from_starts_with_the_saved_weights(tmp_path):
    saved, path = saved_tiny_model(tmp_path, seed=1)
    train.set_seeds(2)
    fresh = train.build_and_compile(TrainConfig(**TINY))
    train.set_seeds(2)
    warm = train.build_and_compile(TrainConfig(**TINY, init_from=str(path)))
    assert len(warm.weights) == len(saved.weights)
    for w_warm, w_saved in zip(warm.weights, saved.weights, strict=True):
        np.testing.assert_array_equal(w_warm.numpy(), w_saved.numpy(), err_msg=w_warm.path)
    assert not all(
        np.array_equal(w_fresh.numpy(), w_saved.numpy())
        for w_fresh, w_saved in zip(fresh.weights, saved.weights, strict=True)
    )


def test_init_from_refuses_another_model(tmp_path):
    _, path = saved_tiny_model(tmp_path, seed=1, width=0.25)
    with pytest.raises(ValueError, match=r"init_from '.*seed1\.keras' holds a different model"):
        train.build_and_compile(TrainConfig(**TINY, init_from=str(path)))


@pytest.mark.parametrize("name", ["missing.keras", "weights.npz"])
def test_config_refuses_init_from_that_is_not_a_keras_file(tmp_path, name):
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(
        ValueError, match="^init_from must be None, an existing .keras file or a published"
    ):
        TrainConfig(init_from=str(tmp_path / name))


@pytest.mark.slow
def test_first_fit_traces_the_training_step_once():
    import keras

    cfg = TrainConfig(**{**TINY, "loss": "cross_entropy"})  # 2-class head, 1-channel masks
    model = train.build_and_compile(cfg)
    traces = []
    step = model.train_step
    model.train_step = lambda data: traces.append(data) or step(data)
    rng = np.random.default_rng(0)
    images = rng.random((8, 32, 32, 3), dtype="float32")
    masks = (rng.random((8, 32, 32, 1)) < 0.5).astype("float32")
    history = model.fit(images, masks, batch_size=4, epochs=1, verbose=0)
    assert len(traces) == 1  # Keras creates no variable inside the trace, so no second trace
    assert np.isfinite(history.history["loss"][0])
    assert all(isinstance(v, keras.Variable) for v in model.optimizer.variables)


def test_multi_worker_patch_matches_the_installed_keras():
    # Fails on a Keras upgrade: recheck the private-API workaround, then widen the range.
    check_multi_worker_patch_applies()
    with pytest.raises(RuntimeError, match="installed: 3.99.0"):
        check_multi_worker_patch_applies("3.99.0")


def test_epoch_log_drops_rows_the_restored_state_does_not_include(tmp_path):
    epoch_log = EpochLog(tmp_path)
    for epoch in range(3):
        epoch_log.on_epoch_begin(epoch)
        epoch_log.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1)})
    assert read_log(tmp_path)["epoch"] == [0, 1, 2]

    # A restart whose backup holds epochs 0..1 (killed after epoch 2's row, before its backup).
    resumed = EpochLog(tmp_path)
    resumed.on_epoch_begin(2)
    resumed.on_epoch_end(2, {"loss": 0.25})
    history = read_log(tmp_path)
    assert history["epoch"] == [0, 1, 2]
    assert history["loss"] == [1.0, 0.5, 0.25]
    assert all(seconds >= 0 for seconds in history[EPOCH_SECONDS])


@pytest.mark.slow
def test_diverging_run_raises_and_saves_no_non_finite_model(ph2_dummy, tmp_path):
    import keras

    out_dir = tmp_path / "run"
    cfg = tiny_config(ph2_dummy, out_dir, learning_rate=1e9, epochs=3)
    with pytest.raises(TrainingDivergedError, match="non-finite|loss became"):
        train.train(cfg, verbose=0)
    for path in out_dir.rglob("*.keras"):
        model = keras.saving.load_model(path, compile=False)
        assert all(np.isfinite(w).all() for w in model.get_weights()), path


@pytest.mark.slow
def test_mirrored_step_matches_single_device(tmp_path):
    result_path = tmp_path / "mirrored.json"
    run_python([SCRIPTS_DIR / "mirrored_step.py", result_path])
    result = json.loads(result_path.read_text())
    assert result["replicas"] == 2
    for case in ("adamw", "sgd", "adamw_ema"):
        step = result[case]
        assert step["loss_mirrored"] == pytest.approx(step["loss_single"], rel=1e-5)
        assert step["max_weight_change"] > 1e-4  # the steps did move the weights
        assert step["max_weight_diff"] < 1e-3 * step["max_weight_change"]
    # The moving average under MirroredStrategy: the same as on one device, not the last
    # weights, and the raw weights swapped back exactly after validation's swap.
    averaged = result["adamw_ema"]
    assert averaged["max_average_from_weights"] > 1e-5
    assert averaged["max_average_diff"] < 1e-3 * averaged["max_average_from_weights"]
    assert averaged["restored_exactly"] == {"single": True, "mirrored": True}


@pytest.mark.slow
def test_cpu_training_is_reproducible(ph2_dummy, tmp_path):
    weights = []
    for name in ("first", "second"):
        cfg = tiny_config(ph2_dummy, tmp_path / name, augment="all")
        weights_path = run_training(cfg, tmp_path, name)[1]
        weights.append(np.load(weights_path))
    first, second = weights
    assert first.files == second.files
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key])


def test_cosine_schedule_falls_by_half_a_cosine_from_the_base_rate():
    # Independently: the rate at fraction e/E of the run, from cos(0) = 1 to cos(pi) = -1.
    epochs, base = 4, 1e-3
    expected = base * (1 + np.cos(np.pi * np.arange(epochs) / epochs)) / 2
    rates = [cosine_learning_rate(e, None, base=base, epochs=epochs) for e in range(epochs)]
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    assert rates[0] == base and rates[2] == pytest.approx(base / 2)


def test_a_default_schedule_keeps_the_default_run_folder_of_earlier_runs(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path))
    # The name a default config's run had before lr_schedule existed.
    assert default_out_dir(cfg) == "runs/unet-bce-lr0.0001-e50-seed0-96px-w0.125-none-38d7ae"
    assert default_out_dir(dataclasses.replace(cfg, lr_schedule="cosine")) != default_out_dir(cfg)


@pytest.mark.slow
def test_a_cosine_run_resumed_after_a_kill_takes_up_its_schedule(ph2_dummy, tmp_path):
    out_dir = tmp_path / "run"
    cfg = tiny_config(ph2_dummy, out_dir, epochs=3, lr_schedule="cosine", learning_rate=1e-3)
    killed, _ = run_training(cfg, tmp_path, "killed", kill_after=2, check=False)
    assert killed.returncode == -9, killed.stderr
    run_training(cfg, tmp_path, "resumed")
    rates = read_log(out_dir)["learning_rate"]
    expected = [cosine_learning_rate(e, None, base=1e-3, epochs=3) for e in range(3)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)


@pytest.mark.slow
def test_killed_run_resumes_at_next_epoch(ph2_dummy, tmp_path):
    out_dir = tmp_path / "run"
    cfg = tiny_config(ph2_dummy, out_dir, epochs=3)
    killed, _ = run_training(cfg, tmp_path, "killed", kill_after=2, check=False)
    assert killed.returncode == -9, killed.stderr
    assert logged_epochs(out_dir) == [0, 1]
    assert (out_dir / "backup").is_dir()

    resumed, _ = run_training(cfg, tmp_path, "resumed")
    assert logged_epochs(out_dir) == [0, 1, 2]
    assert "Epoch 3/3" in resumed.stdout
    assert "Epoch 1/3" not in resumed.stdout and "Epoch 2/3" not in resumed.stdout
    assert not (out_dir / "backup").exists()  # removed once training completes
    assert (out_dir / BEST_MODEL_FILE).exists()
    assert TrainConfig.load(out_dir / CONFIG_FILE) == cfg

    # Against the same run without interruption: the epochs before the kill are identical, and
    # the history is whole. After the resume the numbers differ a little (documented in
    # README): the restarted input pipeline begins its seeded shuffle sequence again, so
    # epoch 3 sees epoch 1's order.
    uninterrupted_dir = tmp_path / "uninterrupted"
    run_training(tiny_config(ph2_dummy, uninterrupted_dir, epochs=3), tmp_path, "whole")
    resumed_log, whole_log = read_log(out_dir), read_log(uninterrupted_dir)
    assert resumed_log.keys() == whole_log.keys()
    for key in resumed_log:
        if key != EPOCH_SECONDS:
            assert resumed_log[key][:2] == whole_log[key][:2], key
    assert len(resumed_log["loss"]) == len(whole_log["loss"]) == 3


@pytest.mark.slow
@pytest.mark.parametrize(("target", "epoch"), [("best", 2), ("last", 3), ("backup", 2)])
def test_a_kill_inside_a_checkpoint_write_loses_nothing(ph2_dummy, tmp_path, target, epoch):
    import keras

    out_dir = tmp_path / "run"
    cfg = tiny_config(ph2_dummy, out_dir, epochs=3)
    killed, _ = run_training(
        cfg, tmp_path, "killed", check=False, kill_in_write=f"{target}:{epoch}"
    )
    assert killed.returncode == -9, killed.stderr
    assert "killed inside the write" in killed.stdout
    # What a reader finds is whole: the best model of the epochs finished, the backup of the
    # last epoch whose write completed; the interrupted write is only a stray partial file.
    keras.models.load_model(out_dir / BEST_MODEL_FILE, compile=False)
    assert (out_dir / "backup").is_dir()
    assert (out_dir / LAST_MODEL_FILE).exists() == (target != "last" and epoch == 3)

    resumed, _ = run_training(cfg, tmp_path, "resumed")
    assert logged_epochs(out_dir) == [0, 1, 2]
    assert "Epoch 1/3" not in resumed.stdout  # resumed, not restarted
    keras.models.load_model(out_dir / BEST_MODEL_FILE, compile=False)
    keras.models.load_model(out_dir / LAST_MODEL_FILE, compile=False)
    assert not (out_dir / "backup").exists()
    leftovers = {p.name for p in out_dir.iterdir()} - {
        BEST_MODEL_FILE,
        LAST_MODEL_FILE,
        CONFIG_FILE,
        LOG_FILE,
        "tensorboard",
    }
    assert not leftovers


@pytest.mark.slow
def test_a_run_directory_refuses_a_finished_run_and_another_config(ph2_dummy, tmp_path):
    out_dir = tmp_path / "run"
    cfg = tiny_config(ph2_dummy, out_dir)
    train.train(cfg, verbose=0)
    with pytest.raises(RunDirError, match="holds this run, finished"):
        train.train(cfg, verbose=0)
    with pytest.raises(RunDirError, match="holds another run .model 'unet' -> 'segnet'"):
        train.train(dataclasses.replace(cfg, model="segnet"), verbose=0)
    assert TrainConfig.load(out_dir / CONFIG_FILE) == cfg  # refused before anything was written
    _, history = train.train(dataclasses.replace(cfg, seed=1), overwrite=True, verbose=0)
    assert TrainConfig.load(out_dir / CONFIG_FILE).seed == 1
    assert history["epoch"] == [0]


def test_a_run_without_data_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("PH2_MANUAL_DIR", raising=False)  # the builder's fallback
    out_dir = tmp_path / "run"
    cfg = TrainConfig(
        **TINY, data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path), out_dir=str(out_dir)
    )
    with pytest.raises(Ph2FileNotFoundError):
        train.train(cfg, verbose=0)
    assert not out_dir.exists()


@pytest.mark.slow
def test_weight_averaging_changes_what_is_validated_and_saved_not_the_training(ph2_dummy, tmp_path):
    import keras

    from ph2_tf.data import pipeline
    from ph2_tf.training.losses import get_loss

    # Batches of 2: three steps per epoch, so the average differs from the last weights; three
    # epochs, so validation runs between epochs.
    runs = {}
    for name, momentum in (("plain", None), ("averaged", 0.5)):
        cfg = tiny_config(ph2_dummy, tmp_path / name, epochs=3, batch_size=2, ema_momentum=momentum)
        weights = np.load(run_training(cfg, tmp_path, name)[1])
        runs[name] = (cfg, read_log(tmp_path / name), weights)
    (_, plain_log, plain_weights), (cfg, averaged_log, averaged_weights) = runs.values()

    # Validating and saving the average leaves the raw weights exactly as they were: the
    # training loss is the same, epoch after epoch.
    assert averaged_log["loss"] == plain_log["loss"]
    assert averaged_log["val_loss"] != plain_log["val_loss"]
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(averaged_weights.values(), plain_weights.values(), strict=True)
    )

    # best.keras holds the averaged weights that validation scored at the best epoch.
    best = keras.models.load_model(tmp_path / "averaged" / BEST_MODEL_FILE, compile=False)
    best.compile(loss=get_loss(cfg.loss))
    validation = pipeline.load_split(
        "validation",
        image_size=cfg.image_size,
        batch_size=cfg.batch_size,
        data_dir=cfg.data_dir,
        manual_dir=cfg.manual_dir,
    )
    best_epoch = int(np.argmax(averaged_log["val_jaccard"]))
    np.testing.assert_allclose(
        best.evaluate(validation, verbose=0), averaged_log["val_loss"][best_epoch], rtol=1e-5
    )
    # last.keras holds the weights the run ended with (the average, with averaging), whatever
    # epoch validation preferred.
    for name, (_, _, weights) in runs.items():
        last = keras.models.load_model(tmp_path / name / LAST_MODEL_FILE, compile=False)
        ended_with = [weights[f"arr_{i}"] for i in range(len(weights.files))]
        for saved, returned in zip(last.get_weights(), ended_with, strict=True):
            np.testing.assert_array_equal(saved, returned)


@pytest.mark.slow
def test_validation_sees_the_moving_average_and_training_gets_its_weights_back_exactly():
    train.set_seeds(0)
    momentum = 0.5
    model = train.build_and_compile(TrainConfig(**TINY, ema_momentum=momentum))
    rng = np.random.default_rng(0)
    images = rng.random((2, 32, 32, 3), dtype="float32")
    masks = (rng.random((2, 32, 32, 1)) > 0.5).astype("float32")
    steps = []
    for _ in range(3):
        model.train_on_batch(images, masks)
        steps.append([v.numpy() for v in model.trainable_variables])
    expected = steps[0]  # the first step starts the average
    for weights in steps[1:]:
        expected = [
            momentum * a + (1 - momentum) * w for a, w in zip(expected, weights, strict=True)
        ]

    callback = ValidateAveragedWeights()
    callback.set_model(model)
    callback.on_test_begin()
    for variable, average in zip(model.trainable_variables, expected, strict=True):
        np.testing.assert_allclose(variable.numpy(), average, rtol=1e-5, atol=1e-7)
    callback.on_test_end()
    for variable, raw in zip(model.trainable_variables, steps[-1], strict=True):
        np.testing.assert_array_equal(variable.numpy(), raw, err_msg=variable.path)


# 64: a run that goes on at another size than the version was trained at.
@pytest.mark.parametrize("run_size", [32, 64])
def test_init_from_a_published_segnet_unfolds_its_batch_norm(run_size, ph2_dummy, tmp_path):
    from folding_test import randomise_batch_norm

    from ph2_tf.serving import export, publish

    config = TrainConfig(**{**TINY, "model": "segnet"}, data_dir=ph2_dummy.data_dir)
    train.set_seeds(1)
    trained = randomise_batch_norm(train.build_configured_model(config))
    version_dir = tmp_path / "ph2_segnet" / "1"
    export.write_saved_model(trained, version_dir, TINY["image_size"])  # folds the BatchNorm
    source = {"config": dataclasses.asdict(config)}
    (version_dir / publish.METRICS_FILE).write_text(json.dumps({"source": source}))

    train.set_seeds(2)
    run_config = dataclasses.replace(config, image_size=run_size, init_from=str(version_dir))
    warm = train.build_and_compile(run_config)

    assert warm.input_shape[1] == run_size
    assert len(warm.weights) == len(trained.weights)  # BatchNorm back, to train
    at_published_size = train.build_configured_model(config)
    at_published_size.set_weights(warm.get_weights())
    images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(at_published_size(images), trained(images), rtol=1e-4, atol=1e-4)


def test_init_from_a_published_version_of_another_model_is_refused(tmp_path):
    from ph2_tf.serving import export, publish

    other = TrainConfig(**{**TINY, "width": 0.25})
    version_dir = tmp_path / "ph2_unet" / "1"
    export.write_saved_model(train.build_configured_model(other), version_dir, 32)
    source = {"config": dataclasses.asdict(other)}
    (version_dir / publish.METRICS_FILE).write_text(json.dumps({"source": source}))
    with pytest.raises(RunDirError, match=r"init_from '.*1' holds a different model"):
        train.build_and_compile(TrainConfig(**TINY, init_from=str(version_dir)))


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"extra_folds": 3, "extra_held_out_fold": 0}, "^extra_folds must be None, or an integer"),
        ({"extra_train_dir": "d", "extra_folds": 1, "extra_held_out_fold": 0}, "^extra_folds"),
        ({"extra_train_dir": "d", "extra_folds": 3}, "^extra_held_out_fold must be an integer"),
        ({"extra_train_dir": "d", "extra_folds": 3, "extra_held_out_fold": 3}, "^extra_held_out"),
        ({"extra_train_dir": "d", "extra_held_out_fold": 0}, "^extra_held_out_fold"),
    ],
)
def test_config_refuses_inconsistent_extra_training_folds(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields)
