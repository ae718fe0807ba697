"""Child process for the training tests: runs `ph2_tf.training.train.train` on a JSON `TrainConfig`.

Usage: python train_run.py CONFIG_JSON WEIGHTS_NPZ [KILL_AFTER_EPOCHS]

Saves the final weights to WEIGHTS_NPZ. With KILL_AFTER_EPOCHS=k, the process SIGKILLs itself
at the end of its k-th epoch (after the epoch's backup and log row are written), like a
preempted job. With the environment variable KILL_IN_WRITE=best:k (or last:k, backup:k) it
SIGKILLs itself in the middle of writing `best.keras` (or `last.keras`, the backup's weights) at
the end of epoch k:
the file's data is written, not yet closed. Under `TF_CONFIG` it is one worker of a multi-worker
run.
"""

import os
import signal
import sys
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np

from ph2_tf.training import train
from ph2_tf.training.config import TrainConfig


class KillAfterEpochs(keras.callbacks.Callback):
    """SIGKILLs the process once `epochs` epochs (counted from 1) have ended."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            os.kill(os.getpid(), signal.SIGKILL)


class KillInsideWrite(keras.callbacks.Callback):
    """From the start of epoch `epoch` (counted from 1), SIGKILLs the process when a file of
    `target` is about to be closed: a zip archive (`.keras`) for "best" or "last" (the one whose
    name has it), the backup's HDF5 weights for "backup"."""

    def __init__(self, target, epoch):
        super().__init__()
        self.epoch = epoch
        if target in ("best", "last"):
            self._patch(
                zipfile.ZipFile,
                lambda f: str(f.filename).endswith(".keras") and target in Path(f.filename).name,
            )
        else:
            self._patch(h5py.File, lambda f: "latest.weights" in str(f.filename))
        self.armed = False

    def _patch(self, cls, is_target):
        close = cls.close

        def close_or_die(file):
            if self.armed and is_target(file):
                print("killed inside the write", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            close(file)

        cls.close = close_or_die

    def on_epoch_begin(self, epoch, logs=None):
        self.armed = epoch + 1 == self.epoch


def main(config_path, weights_path, kill_after=None):
    cfg = TrainConfig.load(config_path)
    extra = [KillAfterEpochs(int(kill_after))] if kill_after else []
    if os.environ.get("KILL_IN_WRITE"):
        target, epoch = os.environ["KILL_IN_WRITE"].split(":")
        extra.append(KillInsideWrite(target, int(epoch)))
    model, _ = train.train(cfg, extra_callbacks=extra)
    np.savez(weights_path, *model.get_weights())


if __name__ == "__main__":
    main(*sys.argv[1:])
