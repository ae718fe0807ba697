"""A run directory: the files `train` writes there and how to read them back.

A run's directory holds `config.json`, `log.csv` (one row per epoch, each epoch exactly once, with
its wall time, also across a kill and resume), `best.keras` (best `val_jaccard`, never a
non-finite model), `last.keras` (the last epoch's model: weights fixed before any validation
score chooses them, e.g. for a uniform soup) and, while it runs, `backup/` to resume from and a
`.lock` held by the process training it.

A directory belongs to one run: its `config.json` is the run's identity. Training it again with
the same config resumes it (or finds it finished); another config is refused, naming the fields
that differ. Every file is written atomically (`ph2_tf.files`).
"""

import contextlib
import csv
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import pathlib
import shutil
import zipfile

import keras

from ph2_tf.training.config import TrainConfig

MONITOR = "val_jaccard"
BEST_MODEL_FILE = "best.keras"
LAST_MODEL_FILE = "last.keras"
CONFIG_FILE = "config.json"
LOG_FILE = "log.csv"
EPOCH_SECONDS = "epoch_seconds"
BACKUP_DIR = "backup"
LOCK_FILE = ".lock"
# Where a run's files are and where its data is read from: they do not change what it learns.
PATH_FIELDS = ("out_dir", "data_dir", "manual_dir")
# Fields added after runs were named by `default_out_dir`, with their defaults: at its default
# such a field leaves the name's digest, and so an earlier run's folder, as it was.
LATER_FIELD_DEFAULTS = {"lr_schedule": "constant"}


class RunDirError(ValueError):
    """A run directory cannot be used as asked; the message names it and says what to do."""


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


def load_trained(run_dir, model_file=BEST_MODEL_FILE):
    """Loads a checkpoint and the config of a finished run.

    Args:
        run_dir: a `TrainConfig.out_dir` written by `train`.
        model_file: `BEST_MODEL_FILE` or `LAST_MODEL_FILE`.

    Returns:
        `(model, cfg)`; the model is not compiled.

    Raises:
        RunDirError: no `model_file`, or it or `config.json` cannot be read.
    """
    run_dir = pathlib.Path(run_dir)
    path = run_dir / model_file
    if not path.exists():
        # Runs trained before `train` kept the last epoch have only best.keras.
        advice = (
            "train the run first" if model_file == BEST_MODEL_FILE else "the run did not keep it"
        )
        raise RunDirError(f"{run_dir}: no {model_file}: {advice}")
    if not zipfile.is_zipfile(path):
        raise RunDirError(f"{path}: not a readable Keras model file (damaged or cut short)")
    try:
        cfg = TrainConfig.load(run_dir / CONFIG_FILE)
    except (OSError, ValueError, TypeError) as error:  # missing, not JSON, unknown or bad fields
        reason = getattr(error, "strerror", None) or error  # an OSError's without the path
        raise RunDirError(f"{run_dir / CONFIG_FILE}: not a readable run config: {reason}") from None
    return load_keras_model(path), cfg


def load_keras_model(path):
    """`keras.models.load_model(path, compile=False)`, a damaged file raised as `RunDirError`.

    Raises:
        RunDirError: `path` is missing, not a zip, or a zip whose members are missing or cut
            short; the message names the file.
    """
    try:
        return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise RunDirError(f"{path}: not a readable Keras model file ({first_line})") from None


def default_out_dir(cfg, root="runs"):
    """A run directory named after everything in `cfg` that changes what the run learns.

    The name spells out the usual choices and ends with a short digest of every field but
    `PATH_FIELDS`, so that two configs that differ anywhere never share a folder.

    Example: `runs/unet-bce-lr0.0001-e50-seed0-96px-w0.125-none-1a2b3c`.
    """
    identity = {
        f: v
        for f, v in dataclasses.asdict(cfg).items()
        if (f not in PATH_FIELDS or f == "init_from")
        and not (f in LATER_FIELD_DEFAULTS and LATER_FIELD_DEFAULTS[f] == v)
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:6]
    name = (
        f"{cfg.model}-{cfg.loss}-lr{cfg.learning_rate:g}-e{cfg.epochs}-seed{cfg.seed}-"
        f"{cfg.image_size}px-w{cfg.width:g}-{cfg.augment}-{digest}"
    )
    return str(pathlib.Path(root) / name)


def differing_fields(recorded, cfg):
    """The fields, other than `PATH_FIELDS`, in which two configs differ, in field order.

    `init_from` and `extra_train_dir` are compared as what they name: the same file however
    its path is spelled, or the same place relative to each run's directory, as when a runs
    root was moved or trained on another machine (a recipe's later stage starts from its
    earlier stage's run beside it).
    """
    ours, theirs = dataclasses.asdict(cfg), dataclasses.asdict(recorded)
    for field in ("init_from", "extra_train_dir"):
        if _names_same_file(ours, theirs, field):
            theirs[field] = ours[field]
    return [f for f in ours if f not in PATH_FIELDS and ours[f] != theirs.get(f)]


def _names_same_file(ours, theirs, field):
    """Whether two config dicts' `field` paths name one file (see `differing_fields`)."""
    a, b = ours.get(field), theirs.get(field)
    if a is None or b is None:
        return False
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    if ours.get("out_dir") is None or theirs.get("out_dir") is None:
        return False
    return os.path.relpath(os.path.abspath(a), os.path.abspath(ours["out_dir"])) == (
        os.path.relpath(os.path.abspath(b), os.path.abspath(theirs["out_dir"]))
    )


def run_state(cfg):
    """How far the run of `cfg` has got in its directory `cfg.out_dir`.

    Returns:
        `"new"` (no config there yet), `"partial"` (started: training resumes it) or
        `"finished"` (every epoch logged and, with checkpoints, `best.keras` written and the
        backup removed, which Keras does once `fit` ends).

    Raises:
        RunDirError: the directory holds a run of another config (a field other than
            `PATH_FIELDS` differs): resuming it would mix two runs.
    """
    out_dir = pathlib.Path(cfg.out_dir)
    if not (out_dir / CONFIG_FILE).exists():
        return "new"
    recorded = TrainConfig.load(out_dir / CONFIG_FILE)
    differ = differing_fields(recorded, cfg)
    if differ:
        changes = ", ".join(
            f"{f} {getattr(recorded, f)!r} -> {getattr(cfg, f)!r}" for f in differ[:3]
        )
        raise RunDirError(
            f"{out_dir} holds another run ({changes}{', ...' if len(differ) > 3 else ''}): "
            "choose a new --out-dir, or pass --overwrite to replace it"
        )
    logged = len(read_log(out_dir).get("epoch", []))
    saved = not cfg.checkpoints or (
        (out_dir / BEST_MODEL_FILE).exists() and not (out_dir / BACKUP_DIR).exists()
    )
    return "finished" if logged >= cfg.epochs and saved else "partial"


def clear(out_dir):
    """Removes what `train` writes in `out_dir` (for `--overwrite`); other files stay."""
    out_dir = pathlib.Path(out_dir)
    for name in (CONFIG_FILE, LOG_FILE, BEST_MODEL_FILE, LAST_MODEL_FILE):
        (out_dir / name).unlink(missing_ok=True)
    for name in (BACKUP_DIR, "tensorboard"):
        shutil.rmtree(out_dir / name, ignore_errors=True)


@contextlib.contextmanager
def locked(out_dir):
    """Holds `out_dir/.lock` while the block runs, so that one process at a time trains a run.

    The lock is an advisory `flock`, which the system releases when its process dies: a killed
    run never blocks the next one. The file is removed when the block ends.

    Raises:
        RunDirError: another live process holds the lock.
    """
    path = pathlib.Path(out_dir) / LOCK_FILE
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise RunDirError(
                f"{out_dir} is in use by process {holder}: wait for it, or choose another --out-dir"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
