"""Training: strategy choice, model compilation, callbacks and the `train` entry point.

`train(cfg)` is what the command line and the hyper-parameter tuner both call; its pieces
(`get_strategy`, `build_and_compile`, `make_callbacks`) can also be used on their own.
"""

import csv
import dataclasses
import importlib.util
import json
import os
import pathlib
import warnings

import keras
import tensorflow as tf

from ph2_tf import data
from ph2_tf.losses import get_loss, num_classes_for
from ph2_tf.metrics import segmentation_metrics
from ph2_tf.models import build_model

MONITOR = "val_jaccard"
BEST_MODEL_FILE = "best.keras"
CONFIG_FILE = "config.json"
LOG_FILE = "log.csv"


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines one training run.

    Args:
        model: `'unet'` or `'segnet'`.
        loss: a name from `ph2_tf.losses.LOSS_NAMES`.
        learning_rate: AdamW learning rate.
        epochs: number of epochs.
        image_size: side of the square training images, in pixels.
        width: filter-count multiplier (1.0 is the study's model).
        batch_size: global batch size (split over the replicas in sync).
        weight_decay: AdamW decoupled weight decay (0.01: PyTorch's AdamW default, as in the study).
        seed: seed for weights, shuffling and augmentation.
        augment: training-time augmentation (off in the study-faithful setting).
        data_dir: TFDS data directory (TFDS's default when None).
        manual_dir: PH2 manual directory used to prepare the dataset if needed.
        out_dir: directory for the checkpoint, backup, logs and config.
        deterministic: enable TensorFlow op determinism (reproducible CPU runs; some GPU kernels
            have no deterministic version).
    """

    model: str = "unet"
    loss: str = "bce"
    learning_rate: float = 1e-4
    epochs: int = 50
    image_size: int = 128
    width: float = 0.25
    batch_size: int = 12
    weight_decay: float = 0.01
    seed: int = 0
    augment: bool = False
    data_dir: str | None = None
    manual_dir: str | None = None
    out_dir: str = "results/run"
    deterministic: bool = True

    def save(self, path):
        """Writes the config as JSON.

        Args:
            path: destination file.
        """
        pathlib.Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path):
        """Reads a config written by `save`.

        Args:
            path: a JSON file written by `TrainConfig.save`.

        Returns:
            The `TrainConfig`.
        """
        return cls(**json.loads(pathlib.Path(path).read_text()))


def set_seeds(seed, deterministic=True):
    """Seeds Python, NumPy, TensorFlow and Keras, and optionally enables op determinism.

    Args:
        seed: the seed.
        deterministic: also call `tf.config.experimental.enable_op_determinism()`.
    """
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def get_strategy():
    """Picks the distribution strategy for this machine.

    `MultiWorkerMirroredStrategy` when `TF_CONFIG` is set (checked first: it must be created
    before TensorFlow initializes its devices), `MirroredStrategy` on two or more GPUs,
    `OneDeviceStrategy` on one GPU, else the default (no-op) strategy.

    Returns:
        A `tf.distribute.Strategy`.
    """
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) >= 2:
        return tf.distribute.MirroredStrategy()
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    return tf.distribute.get_strategy()


def build_and_compile(cfg):
    """Builds the model and compiles it with AdamW, the configured loss and the metrics.

    Call inside `strategy.scope()` so that variables are created by the strategy. Under
    `MultiWorkerMirroredStrategy` the model also gets `_adapt_for_multi_worker`.

    Args:
        cfg: a `TrainConfig`.

    Returns:
        The compiled Keras model (static input shape `(image_size, image_size, 3)`).
    """
    model = build_model(
        cfg.model,
        input_shape=(cfg.image_size, cfg.image_size, 3),
        width=cfg.width,
        num_classes=num_classes_for(cfg.loss),
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay
        ),
        loss=get_loss(cfg.loss),
        metrics=segmentation_metrics(),
    )
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        _adapt_for_multi_worker(model, cfg.image_size)
    return model


def _adapt_for_multi_worker(model, image_size):
    """Works around two Keras 3 (<= 3.15) bugs with MultiWorkerMirroredStrategy (keras#20585).

    1. Before its first step, `fit`/`evaluate` averages one distributed batch with
       `strategy.reduce` only to learn the input shapes for building the metric, loss and
       optimizer state; MultiWorkerMirroredStrategy cannot reduce an `(x, y)` tuple. Here the
       state is built from the known shapes and that pre-build is turned off for this model.
    2. Each step's logs are averaged over replicas with `strategy.reduce("MEAN", v, axis=0)`,
       which fails on the scalar logs; the train and test steps here return them as shape `(1,)`,
       which that reduction turns back into scalars.

    Args:
        model: the compiled model, inside the strategy's scope.
        image_size: side of the square training images.
    """
    shapes = ((None, image_size, image_size, 3), (None, image_size, image_size, 1))
    model._symbolic_build(data_batch=tuple(tf.TensorSpec(shape) for shape in shapes))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None

    def vector_logs(step):
        return lambda batch: tf.nest.map_structure(lambda v: tf.reshape(v, [1]), step(batch))

    model.train_step = vector_logs(model.train_step)
    model.test_step = vector_logs(model.test_step)


def _best_logged(log_path, monitor):
    """Best (max) value of `monitor` in an existing CSV log, or None."""
    if not log_path.exists():
        return None
    with log_path.open(newline="") as f:
        values = [float(row[monitor]) for row in csv.DictReader(f) if row.get(monitor)]
    return max(values, default=None)


def make_callbacks(cfg, out_dir):
    """Callbacks of a training run.

    Order matters: the backup is written before the log row of an epoch, so a run killed after
    a logged epoch always resumes after it.

    Args:
        cfg: the run's `TrainConfig` (the standard callbacks do not depend on it yet; the
            argument keeps the signature stable for the tuner).
        out_dir: directory receiving `best.keras` (best `val_jaccard`), `backup/`
            (`BackupAndRestore`: a killed run resumes at its next epoch), `log.csv` (appended on
            resume), and `tensorboard/` (only when the `tensorboard` package is installed:
            TensorFlow >= 2.20 no longer installs it, and its summary ops need it).

    Returns:
        A list of Keras callbacks.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / LOG_FILE
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.BackupAndRestore(backup_dir=str(out_dir / "backup")),
        keras.callbacks.ModelCheckpoint(
            str(out_dir / BEST_MODEL_FILE),
            monitor=MONITOR,
            mode="max",
            save_best_only=True,
            # On resume, only an epoch better than those already logged replaces the checkpoint.
            initial_value_threshold=_best_logged(log_path, MONITOR),
        ),
        keras.callbacks.CSVLogger(str(log_path), append=True),
    ]
    if importlib.util.find_spec("tensorboard") is None:
        warnings.warn("tensorboard is not installed: no TensorBoard logs", stacklevel=2)
    else:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(out_dir / "tensorboard")))
    return callbacks


def worker_out_dir(out_dir, strategy):
    """Directory a worker writes to: `out_dir` for the chief, a per-worker subdirectory otherwise.

    Under `MultiWorkerMirroredStrategy` every worker runs the callbacks; only the chief (task 0
    of type `chief`, or `worker` 0 without a chief) writes to `out_dir`.

    Args:
        out_dir: the run's output directory.
        strategy: the strategy in use.

    Returns:
        A `pathlib.Path`.
    """
    out_dir = pathlib.Path(out_dir)
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return out_dir
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    if task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief):
        return out_dir
    return out_dir / f"{task_type}_{task_id}"


def train(cfg, *, strategy=None, extra_callbacks=(), verbose=2):
    """Trains a model on the PH2 train split, validating on the validation split.

    Args:
        cfg: a `TrainConfig`.
        strategy: a `tf.distribute.Strategy`; `get_strategy()` when None.
        extra_callbacks: more Keras callbacks, run after the standard ones.
        verbose: Keras `fit` verbosity.

    Returns:
        `(model, history)`: the model after the last epoch and the Keras `History`.
    """
    set_seeds(cfg.seed, cfg.deterministic)
    strategy = strategy or get_strategy()
    out_dir = worker_out_dir(cfg.out_dir, strategy)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(out_dir / CONFIG_FILE)
    common = dict(
        image_size=cfg.image_size,
        batch_size=cfg.batch_size,
        data_dir=cfg.data_dir,
        manual_dir=cfg.manual_dir,
    )
    train_ds = data.load_split("train", training=True, augment=cfg.augment, seed=cfg.seed, **common)
    val_ds = data.load_split("validation", **common)
    with strategy.scope():
        model = build_and_compile(cfg)
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=cfg.epochs,
        callbacks=make_callbacks(cfg, out_dir) + list(extra_callbacks),
        verbose=verbose,
    )
    return model, history


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
