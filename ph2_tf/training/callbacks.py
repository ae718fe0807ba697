"""The callbacks of a training run: epoch log, divergence stop, checkpoints, weight averaging."""

import contextlib
import csv
import importlib.util
import math
import pathlib
import time
import warnings

import keras
import numpy as np

from ph2_tf.training.runs import BEST_MODEL_FILE, EPOCH_SECONDS, LOG_FILE, MONITOR, read_log


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
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(zip(*(history.get(c, []) for c in columns), strict=True))
        tmp.replace(self.path)  # never a half-written log


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


class AveragedWeightsCheckpoint(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint` that saves the moving average of the weights, which validation scored.

    Only the checkpoint holds the average: training and `BackupAndRestore` keep the raw weights,
    and the optimizer its average, so a resumed run goes on where it stopped.
    """

    def on_epoch_end(self, epoch, logs=None):
        with averaged_weights(self.model):
            super().on_epoch_end(epoch, logs)


def _best_logged(out_dir, monitor):
    """Best (max) value of `monitor` in an existing run log, or None."""
    return max(read_log(out_dir).get(monitor, []), default=None)


def make_callbacks(cfg, out_dir):
    """Callbacks of a training run.

    Order matters: the non-finite check comes first, so that a diverged epoch writes nothing;
    the log row is written before the backup, and a kill between the two is repaired on resume
    by `EpochLog` (the epoch is trained again and logged once).

    Args:
        cfg: the run's `TrainConfig` (`checkpoints` decides on `best.keras` and `backup/`).
        out_dir: directory receiving `best.keras` (best `val_jaccard`), `backup/`
            (`BackupAndRestore`: a killed run resumes at its next epoch), `log.csv` (`EpochLog`),
            and `tensorboard/` (only on the TensorFlow backend, whose summary ops Keras' callback
            uses, and when the `tensorboard` package is installed: TensorFlow >= 2.20 no longer
            installs it). With `cfg.ema_momentum`, validation and `best.keras` use the averaged
            weights (`ValidateAveragedWeights`, `AveragedWeightsCheckpoint`).

    Returns:
        A list of Keras callbacks.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    callbacks = [StopOnNonFinite(), EpochLog(out_dir)]
    averaged = cfg.ema_momentum is not None
    if cfg.checkpoints:
        checkpoint = AveragedWeightsCheckpoint if averaged else keras.callbacks.ModelCheckpoint
        callbacks += [
            keras.callbacks.BackupAndRestore(backup_dir=str(out_dir / "backup")),
            checkpoint(
                str(out_dir / BEST_MODEL_FILE),
                monitor=MONITOR,
                mode="max",
                save_best_only=True,
                # On resume, only an epoch better than those already logged replaces it.
                initial_value_threshold=_best_logged(out_dir, MONITOR),
            ),
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
