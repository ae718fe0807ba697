"""Training: strategy choice, model compilation, callbacks and the `train` entry point.

Backend-agnostic: on TensorFlow (the default) data comes from the `tf.data` pipeline of
`ph2_tf.data` and training runs under a `tf.distribute` strategy; on another Keras backend (JAX)
nothing here imports TensorFlow, data comes from `ph2_tf.arrays`, and several local
accelerators are used through `keras.distribution.DataParallel`.

`train(cfg)` is what the command line and the hyper-parameter tuner both call; its pieces
(`get_strategy`, `build_and_compile`, `make_callbacks`, `read_log`) can also be used on their own.

A run's directory holds `config.json`, `log.csv` (one row per epoch, each epoch exactly once, with
its wall time, also across a kill and resume), `best.keras` (best `val_jaccard`, never a
non-finite model) and, while it runs, `backup/` to resume from.
"""

import contextlib
import csv
import dataclasses
import importlib.util
import json
import math
import os
import pathlib
import time
import warnings

import keras
import numpy as np

from ph2_tf import accelerators, arrays
from ph2_tf.augmentation import AUGMENTATIONS, get_augmentation
from ph2_tf.losses import LOSS_NAMES, get_loss, num_classes_for
from ph2_tf.metrics import segmentation_metrics
from ph2_tf.models import MODEL_NAMES, build_model
from ph2_tf.profiles import PROFILES

MONITOR = "val_jaccard"
BEST_MODEL_FILE = "best.keras"
CONFIG_FILE = "config.json"
LOG_FILE = "log.csv"
EPOCH_SECONDS = "epoch_seconds"
# Both models halve the input 4 (UNet) or 5 (SegNet) times.
SIZE_MULTIPLE = 32
PRECISIONS = ("float32", "mixed_bfloat16")
# Keras versions whose private fit internals `_adapt_for_multi_worker` patches were checked with.
MULTI_WORKER_PATCH_KERAS = ((3, 0), (3, 16))  # [first, last) major.minor


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss or non-finite weights; nothing was saved from it."""


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
        augment: name of the training augmentation, a key of
            `ph2_tf.augmentation.AUGMENTATIONS` (`'none'` in the study-faithful setting).
        colour_constancy: start the model with shades-of-grey colour normalisation
            (`ph2_tf.colour_constancy.ShadesOfGrey`), in training and serving alike.
        data_dir: TFDS data directory (TFDS's default when None).
        manual_dir: PH2 manual directory used to prepare the dataset if needed.
        out_dir: directory for the checkpoint, backup, logs and config.
        deterministic: enable TensorFlow op determinism (reproducible CPU runs; some GPU kernels
            have no deterministic version). Other backends are deterministic on the CPU anyway.
        precision: Keras dtype policy, `'float32'` (the study's) or `'mixed_bfloat16'`.
        jit_compile: compile the training step with XLA: True, False, or None for Keras'
            `"auto"`, which is XLA under JAX, and under TensorFlow XLA on GPUs unless op
            determinism is on (Keras turns XLA off then, so True with `deterministic` is refused
            on TensorFlow). On 2 CPU cores TensorFlow with oneDNN and without XLA is the fastest
            for the `small` profile (`results/cpu-vs-torch/`). Off under
            `MultiWorkerMirroredStrategy`, whose collectives XLA does not compile on CPUs.
        checkpoints: write `best.keras` and the per-epoch backup that a killed run resumes
            from. Off, a run writes only its config and log: the tuner's grid scores the final
            weights, and at full size each of those writes is about 0.4 GB (weights and AdamW
            slots) per epoch, beside epochs of about a second on an H200.
        init_from: a `.keras` file (another run's `best.keras`) whose weights, BatchNorm
            statistics included, start this run instead of a fresh initialisation: training
            goes on for `epochs` more epochs with a fresh AdamW. Its model must be the one this
            config builds. None: initialise from `seed`.
        ema_momentum: keep an exponential moving average of the weights, updated after every
            step with this momentum (Polyak averaging; 0.99 averages about the last 100 steps).
            Validation, `best.keras` and the weights `train` returns are the average; training
            and the per-epoch backup go on with the raw weights. None: no averaging.
    """

    model: str = "unet"
    loss: str = "bce"
    learning_rate: float = 1e-4
    epochs: int = 50
    image_size: int = PROFILES["small"].image_size
    width: float = PROFILES["small"].width
    batch_size: int = PROFILES["small"].batch_size
    weight_decay: float = 0.01
    seed: int = 0
    augment: str = "none"
    colour_constancy: bool = False
    data_dir: str | None = None
    manual_dir: str | None = None
    out_dir: str = "results/run"
    deterministic: bool = True
    precision: str = "float32"
    jit_compile: bool | None = None
    checkpoints: bool = True
    init_from: str | None = None
    ema_momentum: float | None = None

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raises one `ValueError` naming the first invalid field and the value received."""

        def check(ok, field, expected):
            if not ok:
                value = getattr(self, field)
                raise ValueError(f"{field} must be {expected}, received {value!r}")

        def positive_number(value):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            return number and math.isfinite(value) and value > 0

        def count(value, minimum):
            return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

        check(self.model in MODEL_NAMES, "model", f"one of {MODEL_NAMES}")
        check(self.loss in LOSS_NAMES, "loss", f"one of {LOSS_NAMES}")
        check(positive_number(self.learning_rate), "learning_rate", "a finite number > 0")
        check(count(self.epochs, 1), "epochs", "an integer >= 1")
        check(
            count(self.image_size, SIZE_MULTIPLE) and self.image_size % SIZE_MULTIPLE == 0,
            "image_size",
            f"a positive multiple of {SIZE_MULTIPLE}",
        )
        check(positive_number(self.width), "width", "a finite number > 0")
        check(count(self.batch_size, 1), "batch_size", "an integer >= 1")
        check(
            positive_number(self.weight_decay) or self.weight_decay == 0,
            "weight_decay",
            "a finite number >= 0",
        )
        check(count(self.seed, 0), "seed", "an integer >= 0")
        check(self.precision in PRECISIONS, "precision", f"one of {PRECISIONS}")
        check(
            self.jit_compile is None or isinstance(self.jit_compile, bool),
            "jit_compile",
            "True, False or None",
        )
        check(
            not (self.jit_compile and self.deterministic)
            or keras.backend.backend() != "tensorflow",
            "jit_compile",
            "False or None while deterministic is True on TensorFlow (Keras turns XLA off under "
            "op determinism)",
        )
        check(self.augment in AUGMENTATIONS, "augment", f"one of {tuple(AUGMENTATIONS)}")
        check(isinstance(self.colour_constancy, bool), "colour_constancy", "True or False")
        check(isinstance(self.checkpoints, bool), "checkpoints", "True or False")
        check(
            self.init_from is None
            or (str(self.init_from).endswith(".keras") and pathlib.Path(self.init_from).is_file()),
            "init_from",
            "None or an existing .keras file",
        )
        check(
            self.ema_momentum is None
            or (positive_number(self.ema_momentum) and self.ema_momentum < 1),
            "ema_momentum",
            "None or a number in (0, 1)",
        )

    def save(self, path):
        """Writes the config as JSON.

        Args:
            path: destination file.
        """
        pathlib.Path(path).write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path):
        """Reads a config written by `save`.

        The `init_from` checkpoint a run started from is kept as recorded even when that file
        is gone: the config then describes a finished run (to export or evaluate), and only
        training from it again needs the file.

        Args:
            path: a JSON file written by `TrainConfig.save`.

        Returns:
            The `TrainConfig`.
        """
        fields = json.loads(pathlib.Path(path).read_text())
        if fields.get("jit_compile") and fields.get("deterministic", True):
            # Written before jit_compile could be None, when `true` was the default; TensorFlow
            # ignored it under op determinism, and None still means XLA under JAX.
            fields["jit_compile"] = None
        if isinstance(fields.get("augment"), bool):
            # Written when augmentation was on or off: flips, quarter turns, a zoom and colour
            # jitter, which the `all` preset covers with wider ranges.
            fields["augment"] = "all" if fields["augment"] else "none"
        init_from = fields.pop("init_from", None)
        config = cls(**fields)
        config.init_from = init_from  # after validation, which requires the file to exist
        return config


def set_seeds(seed, deterministic=True):
    """Seeds Python, NumPy, Keras and the backend, and optionally enables op determinism.

    Args:
        seed: the seed.
        deterministic: on TensorFlow, also call `tf.config.experimental.enable_op_determinism()`.
    """
    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def get_strategy():
    """Picks the distribution strategy for this machine.

    `MultiWorkerMirroredStrategy` when `TF_CONFIG` is set (checked first: it must be created
    before TensorFlow initializes its devices), `MirroredStrategy` on two or more GPUs, else the
    default (no-op) strategy, which places work on the one GPU if there is one. Not
    `OneDeviceStrategy` there: under any strategy but the default one, Keras'
    `jit_compile="auto"` turns XLA off.

    Returns:
        A `tf.distribute.Strategy`; None on other Keras backends (see `use_local_accelerators`).
    """
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) >= 2:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def strategy_scope(strategy):
    """`strategy.scope()`, or a no-op context for None (non-TensorFlow backends)."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def use_local_accelerators():
    """On JAX with several local accelerators, trains data-parallel over all of them.

    Sets `keras.distribution.DataParallel()` as the global distribution, so call it before
    building the model. One device, the CPU, and the TensorFlow backend (which has
    `get_strategy`) are left alone.

    Returns:
        The number of accelerators used, 0 when none.
    """
    count = accelerators.accelerator_count()
    if keras.backend.backend() == "jax" and count > 1:
        keras.distribution.set_distribution(keras.distribution.DataParallel())
    return count


def build_configured_model(cfg):
    """The untrained, uncompiled model a `TrainConfig` describes, in the current dtype policy.

    Args:
        cfg: a `TrainConfig` (or any object with its `model`, `image_size`, `width`, `loss`
            and `colour_constancy` fields).

    Returns:
        A Keras model with static input shape `(image_size, image_size, 3)`.
    """
    return build_model(
        cfg.model,
        input_shape=(cfg.image_size, cfg.image_size, 3),
        width=cfg.width,
        num_classes=num_classes_for(cfg.loss),
        colour_constancy=cfg.colour_constancy,
    )


def build_and_compile(cfg):
    """Builds the model and compiles it with AdamW, the configured loss and the metrics.

    Call inside `strategy.scope()` so that variables are created by the strategy. Under
    `MultiWorkerMirroredStrategy` the model also gets `_adapt_for_multi_worker`. Sets the global
    Keras dtype policy to `cfg.precision` first.

    Args:
        cfg: a `TrainConfig`.

    Returns:
        The compiled Keras model (static input shape `(image_size, image_size, 3)`).
    """
    keras.config.set_dtype_policy(cfg.precision)
    model = build_configured_model(cfg)
    multi_worker = in_strategy_scope = False
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.get_strategy()
        multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        in_strategy_scope = tf.distribute.has_strategy()
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            use_ema=cfg.ema_momentum is not None,
            ema_momentum=cfg.ema_momentum or 0.99,  # Keras' default; unused without use_ema
        ),
        loss=get_loss(cfg.loss),
        metrics=segmentation_metrics(),
        jit_compile="auto" if cfg.jit_compile is None else cfg.jit_compile and not multi_worker,
    )
    if cfg.init_from:
        _load_initial_weights(model, cfg.init_from)
    if multi_worker:
        _adapt_for_multi_worker(model, cfg.image_size)
    elif keras.backend.backend() == "tensorflow" and not in_strategy_scope:
        _build_training_state(model, cfg.image_size)
    return model


def _load_initial_weights(model, path):
    """Copies the weights of the model saved at `path` into `model`, which must match it."""
    saved = keras.models.load_model(path, compile=False)
    mismatch = [
        f"{ours.path} {tuple(ours.shape)} against {tuple(theirs.shape)}"
        for ours, theirs in zip(model.weights, saved.weights, strict=False)
        if tuple(ours.shape) != tuple(theirs.shape)
    ]
    if len(model.weights) != len(saved.weights) or mismatch:
        raise ValueError(
            f"init_from {str(path)!r} holds a different model from the configured one: "
            f"{len(saved.weights)} weights against {len(model.weights)}"
            + (f"; first mismatch: {mismatch[0]}" if mismatch else "")
        )
    model.set_weights(saved.get_weights())


def _build_training_state(model, image_size):
    """Creates the optimizer's and the compiled metrics' variables before the first step.

    On TensorFlow outside a distribution strategy's scope, Keras creates them while it traces
    the first training step, and a `tf.function` that creates variables is traced twice. Built
    here, the step is traced once: the `small` UNet's first `fit` call took 3.1 s instead of
    7.3 s on 2 CPU cores, which every configuration of the tuner pays.

    Args:
        model: the compiled model.
        image_size: side of the square training images.
    """
    model.optimizer.build(model.trainable_variables)
    images = np.zeros((1, image_size, image_size, 3), "float32")
    masks = np.zeros((1, image_size, image_size, 1), "float32")
    model.compute_metrics(images, masks, model(images), sample_weight=None)
    model.reset_metrics()


def _adapt_for_multi_worker(model, image_size):
    """Works around two Keras 3 (<= 3.15) bugs with MultiWorkerMirroredStrategy (keras#20585).

    1. Before its first step, `fit`/`evaluate` averages one distributed batch with
       `strategy.reduce` only to learn the input shapes for building the metric, loss and
       optimizer state; MultiWorkerMirroredStrategy cannot reduce an `(x, y)` tuple. Here the
       state is built from the known shapes and that pre-build is turned off for this model.
    2. Each step's logs are averaged over replicas with `strategy.reduce("MEAN", v, axis=0)`,
       which fails on the scalar logs; the train and test steps here return them as shape `(1,)`,
       which that reduction turns back into scalars.

    Both patches touch private Keras methods, so they are applied only to the Keras versions in
    `MULTI_WORKER_PATCH_KERAS`, which the two-worker test ran with; another version is refused
    with an error rather than trained with untested internals.

    Args:
        model: the compiled model, inside the strategy's scope.
        image_size: side of the square training images.

    Raises:
        RuntimeError: the installed Keras is outside `MULTI_WORKER_PATCH_KERAS`.
    """
    import tensorflow as tf

    check_multi_worker_patch_applies()
    shapes = ((None, image_size, image_size, 3), (None, image_size, image_size, 1))
    model._symbolic_build(data_batch=tuple(tf.TensorSpec(shape) for shape in shapes))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None

    def vector_logs(step):
        return lambda batch: tf.nest.map_structure(lambda v: tf.reshape(v, [1]), step(batch))

    model.train_step = vector_logs(model.train_step)
    model.test_step = vector_logs(model.test_step)


def check_multi_worker_patch_applies(version=None):
    """Raises unless `version` (the installed Keras by default) is one the patch was tested with.

    Args:
        version: a Keras version string such as `"3.15.1"`.

    Raises:
        RuntimeError: naming the version and the tested range.
    """
    version = version or keras.__version__
    major_minor = tuple(int(part) for part in version.split(".")[:2])
    first, last = MULTI_WORKER_PATCH_KERAS
    if not first <= major_minor < last:
        raise RuntimeError(
            f"MultiWorkerMirroredStrategy needs a workaround of private Keras internals that was "
            f"tested with Keras >= {first[0]}.{first[1]}, < {last[0]}.{last[1]}; installed: "
            f"{version}. Recheck keras#20585 and tests/multiworker_test.py, then widen "
            "ph2_tf.train.MULTI_WORKER_PATCH_KERAS."
        )


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
    if resolver is None:
        return out_dir
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return out_dir
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    if task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief):
        return out_dir
    return out_dir / f"{task_type}_{task_id}"


def _datasets(cfg):
    """`(train, validation)` data for `fit`: tf.data on TensorFlow, `arrays.Batches` elsewhere."""
    common = dict(data_dir=cfg.data_dir, manual_dir=cfg.manual_dir)
    augmentation = get_augmentation(cfg.augment)
    if keras.backend.backend() == "tensorflow":
        from ph2_tf import data  # imports TensorFlow

        common.update(image_size=cfg.image_size, batch_size=cfg.batch_size)
        train_ds = data.load_split(
            "train", training=True, augmentation=augmentation, seed=cfg.seed, **common
        )
        return train_ds, data.load_split("validation", **common)
    train_images, train_masks, _ = arrays.load_arrays("train", cfg.image_size, **common)
    val_images, val_masks, _ = arrays.load_arrays("validation", cfg.image_size, **common)
    train_batches = arrays.Batches(
        train_images,
        train_masks,
        cfg.batch_size,
        shuffle=True,
        seed=cfg.seed,
        augmentation=augmentation,
    )
    return train_batches, arrays.Batches(val_images, val_masks, cfg.batch_size)


def train(cfg, *, strategy=None, model=None, extra_callbacks=(), verbose=2):
    """Trains a model on the PH2 train split, validating on the validation split.

    Resumes from `cfg.out_dir`'s backup when a previous run of it was interrupted.

    Args:
        cfg: a `TrainConfig` (validated again here, before any data is read or file written).
        strategy: a `tf.distribute.Strategy`; `get_strategy()` when None (which is None on
            other backends, where `use_local_accelerators` decides).
        model: a model compiled by `build_and_compile(cfg)` under `strategy` (the tuner builds
            its own); built here when None.
        extra_callbacks: more Keras callbacks, run after the standard ones.
        verbose: Keras `fit` verbosity.

    Returns:
        `(model, history)`: the model after the last epoch (its averaged weights with
            `cfg.ema_momentum`), and the run's whole per-epoch history
        (`read_log`: every epoch once, including those before a resume).

    Raises:
        ValueError: an invalid `cfg`.
        TrainingDivergedError: the loss or the weights became non-finite; `best.keras` and the
            backup still hold the last finite state, if any.
    """
    cfg.validate()
    set_seeds(cfg.seed, cfg.deterministic)
    accelerators.enable_jax_compilation_cache()
    strategy = strategy or get_strategy()
    out_dir = worker_out_dir(cfg.out_dir, strategy)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(out_dir / CONFIG_FILE)
    train_data, val_data = _datasets(cfg)
    if model is None:
        # Seeded again: preparing the dataset on first use consumes random state, and the
        # first run must initialise its weights as every later run with this seed does.
        set_seeds(cfg.seed, cfg.deterministic)
        use_local_accelerators()
        with strategy_scope(strategy):
            model = build_and_compile(cfg)
    model.fit(
        train_data,
        validation_data=val_data,
        epochs=cfg.epochs,
        callbacks=make_callbacks(cfg, out_dir) + list(extra_callbacks),
        verbose=verbose,
    )
    return model, read_log(out_dir)


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
