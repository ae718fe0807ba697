"""A run directory: the files `train` writes there and how to read them back.

A run's directory holds `config.json`, `log.csv` (one row per epoch, each epoch exactly once, with
its wall time, also across a kill and resume), `best.keras` (best `val_jaccard`, never a
non-finite model) and, while it runs, `backup/` to resume from.
"""

import csv
import pathlib

import keras

from ph2_tf.training.config import TrainConfig

MONITOR = "val_jaccard"
BEST_MODEL_FILE = "best.keras"
CONFIG_FILE = "config.json"
LOG_FILE = "log.csv"
EPOCH_SECONDS = "epoch_seconds"


def read_log(out_dir):
    """The per-epoch history of a run, from its `log.csv`.

    Args:
        out_dir: the run directory.

    Returns:
        `{column: [value per epoch]}` with `epoch` as ints and every other column as floats, in
        epoch order; empty when there is no log yet.
    """
    path = pathlib.Path(out_dir) / LOG_FILE
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {
        key: [int(row[key]) if key == "epoch" else float(row[key]) for row in rows]
        for key in rows[0]
    }


def load_trained(run_dir):
    """Loads the best checkpoint and the config of a finished run.

    Args:
        run_dir: a `TrainConfig.out_dir` written by `train`.

    Returns:
        `(model, cfg)`; the model is not compiled.
    """
    run_dir = pathlib.Path(run_dir)
    path = run_dir / BEST_MODEL_FILE
    if not path.exists():
        raise ValueError(f"no {BEST_MODEL_FILE} in run directory {str(run_dir)!r}")
    return keras.models.load_model(path, compile=False), TrainConfig.load(run_dir / CONFIG_FILE)
