"""The callbacks of a training run: epoch log, divergence stop, checkpoints, weight averaging."""

import contextlib
import csv
import functools
import importlib.util
import math
import pathlib
import shutil
import time
import warnings

import keras
import numpy as np

from ph2_tf import files
from ph2_tf.training.runs import (
    BACKUP_DIR,
    BEST_MODEL_FILE,
    EPOCH_SECONDS,
    LAST_MODEL_FILE,
    LOG_FILE,
    MONITOR,
    RunDirError,
    read_log,
)


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss or non-finite weights; nothing was saved from it."""


class EpochLog(keras.callbacks.Callback):
    """Appends one row per epoch to `log.csv`, with the epoch's wall time; each epoch once.

    On a resumed run, the first epoch it trains tells where the restored state stands: rows of
    that epoch and later (written before a kill that came ahead of the backup) are dropped, so
    the log never repeats an epoch and never holds one that the weights do not include.

    Args:
        out_dir: the run directory; the log is its `log.csv`.
    """

    def __init__(self, out_dir):
        super().__init__()
        self.out_dir = pathlib.Path(out_dir)
        self.path = self.out_dir / LOG_FILE
        self._started = None
        self._trimmed = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._trimmed:
            history = read_log(self.out_dir)
            kept = [i for i, e in enumerate(history.get("epoch", [])) if e < epoch]
            self._write({key: [values[i] for i in kept] for key, values in history.items()})
            self._trimmed = True
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        # Also seen by the callbacks after this one (History, TensorBoard).
        logs[EPOCH_SECONDS] = time.perf_counter() - self._started
        history = read_log(self.out_dir)
        row = {"epoch": epoch, **{key: float(value) for key, value in logs.items()}}
        columns = list(history) or list(row)
        if history and set(columns) != set(row):
            raise ValueError(
                f"{self.path}: epoch {epoch} logs {sorted(row)}, but the log has {sorted(columns)}"
            )
        for key in columns:
            history.setdefault(key, []).append(row[key])
        self._write(history)

    def _write(self, history):
        columns = list(history) or ["epoch"]
        with files.replacing(self.path) as partial, partial.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(zip(*(history.get(c, []) for c in columns), strict=True))


class StopOnNonFinite(keras.callbacks.Callback):
    """Raises `TrainingDivergedError` as soon as the loss or, at an epoch's end, a weight is
    non-finite.

    Placed first among the callbacks, it stops the epoch's end before the backup and the best
    checkpoint are written, so neither ever holds a non-finite model (Keras' `TerminateOnNaN`
    only stops after the epoch, when the checkpoint may already have saved it).
    """

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDivergedError(f"the training loss became {float(loss)} at batch {batch}")

    def on_epoch_end(self, epoch, logs=None):
        bad = [
            w.path
            for w in self.model.weights
            if not np.isfinite(keras.ops.convert_to_numpy(w.value)).all()
        ]
        if bad:
            raise TrainingDivergedError(
                f"after epoch {epoch + 1}, {len(bad)} weight tensors hold non-finite values "
                f"(first: {bad[0]})"
            )
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDivergedError(f"the training loss of epoch {epoch + 1} is {loss}")


@contextlib.contextmanager
def averaged_weights(model):
    """Puts the optimizer's moving average of the weights (`use_ema`) into `model` for a while.

    On exit the raw weights come back bit for bit and the average is untouched. (Keras'
    `SwapEMAWeights` swaps by adding and subtracting on TensorFlow, which rounds the raw weights
    each time it validates, so training would drift from a run without averaging.)

    Args:
        model: a model compiled with an optimizer built with `use_ema=True`.
    """
    variables = model.trainable_variables
    raw = [keras.ops.convert_to_numpy(v.value) for v in variables]
    model.optimizer.finalize_variable_values(variables)
    # On JAX that makes each variable share its average's buffer, which the next jitted step
    # donates (deletes) with the variable: give each a copy of its own.
    for variable in variables:
        variable.assign(np.copy(keras.ops.convert_to_numpy(variable.value)))
    try:
        yield
    finally:
        for variable, value in zip(variables, raw, strict=True):
            variable.assign(value)


class ValidateAveragedWeights(keras.callbacks.Callback):
    """Validates the moving average of the weights instead of the raw weights."""

    def __init__(self):
        super().__init__()
        self._swapped = contextlib.ExitStack()

    def on_test_begin(self, logs=None):
        self._swapped.enter_context(averaged_weights(self.model))

    def on_test_end(self, logs=None):
        self._swapped.close()


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model to `path` whenever `monitor` beats its best value, atomically.

    The model is written under a temporary name and moved over `path` in one step, so a kill or
    a full disk in the middle of a save leaves the previous best intact (Keras'
    `ModelCheckpoint` writes in place). With `averaged`, the saved weights are the optimizer's
    moving average, which validation scored; training goes on with the raw weights.

    On a resumed run, the best value to beat is read from the run's log when the first epoch
    begins, after `EpochLog` (placed before this callback) has dropped the rows of epochs the
    restored state does not include: an epoch whose model may never have been saved does not
    count.

    Args:
        path: the `.keras` file; the run's `log.csv` is beside it.
        monitor: the log entry to maximise.
        averaged: save the moving average of the weights (`use_ema`).
    """

    def __init__(self, path, monitor, averaged=False):
        super().__init__()
        self.path = pathlib.Path(path)
        self.monitor = monitor
        self.averaged = averaged
        self.best = None
        self._started = False

    def on_epoch_begin(self, epoch, logs=None):
        if not self._started:
            self.best = max(read_log(self.path.parent).get(self.monitor, []), default=None)
            self._started = True

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        if self.best is not None and value <= self.best:
            return
        self.best = float(value)
        _save(self.model, self.path, self.averaged)


class LastCheckpoint(keras.callbacks.Callback):
    """Saves the model to `path` at the end of the run's last epoch, atomically.

    Weights fixed before training, not chosen on a validation score: what a uniform soup of
    several seeds should average (`ph2_tf.experiments.soup`). A run killed before its last
    epoch's backup trains that epoch again and writes this file again.

    Args:
        path: the `.keras` file.
        epochs: the run's number of epochs.
        averaged: save the moving average of the weights (`use_ema`).
    """

    def __init__(self, path, epochs, averaged=False):
        super().__init__()
        self.path = pathlib.Path(path)
        self.epochs = epochs
        self.averaged = averaged

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            _save(self.model, self.path, self.averaged)


def _save(model, path, averaged):
    """`model.save(path)` under a temporary name moved over `path` in one step."""
    weights = averaged_weights(model) if averaged else contextlib.nullcontext()
    with weights, files.replacing(path) as partial:
        model.save(partial)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose backup is replaced as a whole, never half-written.

    Keras writes the weights and the epoch counter in place, so a kill during the write leaves
    a truncated file that every later resume fails on. Here each backup is written to a staging
    folder that then takes the backup's place by two renames; a kill between them is repaired
    when training starts again. A backup that still cannot be read (damaged from outside) is
    reported by name and kept.
    """

    def __init__(self, backup_dir):
        super().__init__(backup_dir=str(backup_dir))
        self._backup = pathlib.Path(backup_dir)
        self._staging = self._backup.with_name(self._backup.name + ".partial")
        self._previous = self._backup.with_name(self._backup.name + ".previous")

    def on_train_begin(self, logs=None):
        if not self._backup.exists() and self._previous.exists():
            self._previous.replace(self._backup)  # killed between the two renames
        shutil.rmtree(self._staging, ignore_errors=True)
        shutil.rmtree(self._previous, ignore_errors=True)
        try:
            super().on_train_begin(logs)
        except (OSError, ValueError) as e:
            raise RunDirError(
                f"{self._backup}: the backup to resume from cannot be read ({e}); it is kept: "
                "remove it to train this run again from the start (--overwrite)"
            ) from None

    def _save_model(self):
        shutil.rmtree(self._staging, ignore_errors=True)
        self._staging.mkdir(parents=True)
        self.model.save_weights(self._staging / pathlib.Path(self._weights_path).name)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        files.write_json(self._staging / pathlib.Path(self._training_metadata_path).name, metadata)
        if self._backup.exists():
            self._backup.replace(self._previous)
        self._staging.replace(self._backup)
        shutil.rmtree(self._previous, ignore_errors=True)


def cosine_learning_rate(epoch, current=None, *, base, epochs):
    """The learning rate of epoch `epoch` (from 0) of `epochs` under `lr_schedule='cosine'`:
    `base` at the first epoch, half a cosine down towards 0 at the end. It depends on the epoch
    alone, so a resumed run takes up the schedule where it stopped. `current`, the rate Keras
    passes in, is unused."""
    return base * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def make_callbacks(cfg, out_dir):
    """Callbacks of a training run.

    Order matters: the non-finite check comes first, so that a diverged epoch writes nothing;
    the log row, then the models, then the backup are written, and a kill between any two
    is repaired on resume: the epoch is trained again and logged once (`EpochLog`).

    Args:
        cfg: the run's `TrainConfig` (`checkpoints` decides on `best.keras`, `last.keras` and
            `backup/`).
        out_dir: directory receiving `best.keras` (best `val_jaccard`, `BestCheckpoint`),
            `last.keras` (the last epoch's, `LastCheckpoint`),
            `backup/` (`AtomicBackupAndRestore`: a killed run resumes at its next epoch),
            `log.csv` (`EpochLog`),
            and `tensorboard/` (only on the TensorFlow backend, whose summary ops Keras' callback
            uses, and when the `tensorboard` package is installed: TensorFlow >= 2.20 no longer
            installs it). With `cfg.ema_momentum`, validation and both models use the averaged
            weights (`ValidateAveragedWeights`, `averaged=True`). With
            `cfg.lr_schedule == 'cosine'`, Keras' `LearningRateScheduler` sets each epoch's
            rate (`cosine_learning_rate`), and `log.csv` records it as `learning_rate`.

    Returns:
        A list of Keras callbacks.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    callbacks = [StopOnNonFinite(), EpochLog(out_dir)]
    if cfg.lr_schedule == "cosine":
        # First, so that the epoch's learning rate is in the logs the log row is written from.
        schedule = functools.partial(
            cosine_learning_rate, base=cfg.learning_rate, epochs=cfg.epochs
        )
        callbacks.insert(0, keras.callbacks.LearningRateScheduler(schedule))
    averaged = cfg.ema_momentum is not None
    if cfg.checkpoints:
        # The models before the backup: a kill between them retrains the epoch, whereas the
        # other order could log an epoch whose model was never saved.
        callbacks += [
            BestCheckpoint(out_dir / BEST_MODEL_FILE, MONITOR, averaged=averaged),
            LastCheckpoint(out_dir / LAST_MODEL_FILE, cfg.epochs, averaged=averaged),
            AtomicBackupAndRestore(out_dir / BACKUP_DIR),
        ]
    if averaged:
        callbacks.append(ValidateAveragedWeights())
    # Keras' TensorBoard callback writes through tf.summary, so only on TensorFlow.
    if keras.backend.backend() == "tensorflow":
        if importlib.util.find_spec("tensorboard") is None:
            warnings.warn("tensorboard is not installed: no TensorBoard logs", stacklevel=2)
        else:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(out_dir / "tensorboard")))
    return callbacks
