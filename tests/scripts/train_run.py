"""Child process for the training tests: runs `ph2_tf.training.train.train` on a JSON `TrainConfig`.

Usage: python train_run.py CONFIG_JSON WEIGHTS_NPZ [KILL_AFTER_EPOCHS]

Saves the final weights to WEIGHTS_NPZ. With KILL_AFTER_EPOCHS=k, the process SIGKILLs itself
at the end of its k-th epoch (after the epoch's backup and log row are written), like a
preempted job. Under `TF_CONFIG` it is one worker of a multi-worker run.
"""

import os
import signal
import sys

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


def main(config_path, weights_path, kill_after=None):
    cfg = TrainConfig.load(config_path)
    extra = [KillAfterEpochs(int(kill_after))] if kill_after else []
    model, _ = train.train(cfg, extra_callbacks=extra)
    np.savez(weights_path, *model.get_weights())


if __name__ == "__main__":
    main(*sys.argv[1:])
