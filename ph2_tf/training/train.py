"""Training: model compilation and the `train` entry point.

Backend-agnostic: on TensorFlow (the default) data comes from the `tf.data` pipeline of
`ph2_tf.data.pipeline` and training runs under a `tf.distribute` strategy; on another Keras backend
(JAX) nothing here imports TensorFlow, data comes from `ph2_tf.data.arrays`, and several local
accelerators are used through `keras.distribution.DataParallel`.

`train(cfg)` is what the command line and the hyper-parameter tuner both call. Its pieces live
beside it: `config` (`TrainConfig`), `distribute` (strategies), `callbacks` and `runs` (the files
of a run directory).
"""

import dataclasses
import pathlib

import keras
import numpy as np

from ph2_tf.data import arrays, external
from ph2_tf.data.augmentation import get_augmentation
from ph2_tf.evaluation.metrics import segmentation_metrics
from ph2_tf.models import build_model
from ph2_tf.training import accelerators, runs
from ph2_tf.training.callbacks import make_callbacks
from ph2_tf.training.distribute import (
    adapt_for_multi_worker,
    get_strategy,
    strategy_scope,
    use_local_accelerators,
    worker_out_dir,
)
from ph2_tf.training.losses import get_loss, num_classes_for
from ph2_tf.training.runs import CONFIG_FILE, read_log


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
    `MultiWorkerMirroredStrategy` the model also gets `adapt_for_multi_worker`. Sets the global
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
        _load_initial_weights(model, cfg)
    if multi_worker:
        adapt_for_multi_worker(model, cfg.image_size)
    elif keras.backend.backend() == "tensorflow" and not in_strategy_scope:
        _build_training_state(model, cfg.image_size)
    return model


DIFFERENT_MODEL = "holds a different model from the configured one"


def _load_initial_weights(model, cfg):
    """Copies the weights of the model `cfg.init_from` names into `model`, which must match it.

    Raises:
        RunDirError: `cfg.init_from` is not a readable Keras model or published version, or
            holds another architecture.
    """
    path = cfg.init_from
    if pathlib.Path(path).is_dir():
        from ph2_tf.serving import publish  # reads a SavedModel: TensorFlow

        try:
            published, _ = publish.load_published_model(path)
        except (OSError, ValueError) as error:
            raise runs.RunDirError(f"init_from {str(path)!r}: {error}") from None
        try:
            saved = trainable_twin(published, cfg)
        except ValueError as error:
            raise runs.RunDirError(f"init_from {str(path)!r} {DIFFERENT_MODEL}: {error}") from None
    else:
        saved = runs.load_keras_model(path)
    mismatch = [
        f"{ours.path} {tuple(ours.shape)} against {tuple(theirs.shape)}"
        for ours, theirs in zip(model.weights, saved.weights, strict=False)
        if tuple(ours.shape) != tuple(theirs.shape)
    ]
    if len(model.weights) != len(saved.weights) or mismatch:
        raise runs.RunDirError(
            f"init_from {str(path)!r} {DIFFERENT_MODEL}: "
            f"{len(saved.weights)} weights against {len(model.weights)}"
            + (f"; first mismatch: {mismatch[0]}" if mismatch else "")
        )
    model.set_weights(saved.get_weights())


def trainable_twin(published, cfg):
    """A published model as a trainable model of `cfg`'s architecture.

    A version exported with its BatchNorm folded into the convolutions (every export since
    folding) is unfolded, with statistics measured on PH2 train (`cfg.data_dir`,
    `cfg.manual_dir`); see `ph2_tf.serving.folding.unfold_batch_normalization`. Unfolding is
    deterministic, so every run started from a version starts from the same weights.

    Args:
        published: the model `publish.load_published_model` rebuilt from a version, at the
            training size it records.
        cfg: the architecture and data fields of a `TrainConfig` (any object with them); its
            `image_size` may differ from the version's.

    Returns:
        `published` itself when it was exported unfolded, else its unfolded twin.

    Raises:
        ValueError: `published` is not a folded model of `cfg`'s architecture.
    """
    from ph2_tf.serving import folding  # TensorFlow

    trainable = build_configured_model(cfg)
    if len(published.weights) == len(trainable.weights):
        return published
    # Measured at the size the version was trained at, which its rebuilt input has, so that a
    # run may go on at another size (`--image-size`) from the same weights.
    images, _, _ = arrays.load_arrays(
        "train", published.input_shape[1], data_dir=cfg.data_dir, manual_dir=cfg.manual_dir
    )
    return folding.unfold_batch_normalization(published, trainable, images)


def _build_training_state(model, image_size):
    """Creates the optimizer's and the compiled metrics' variables before the first step.

    On TensorFlow outside a distribution strategy's scope, Keras creates them while it traces
    the first training step, and a `tf.function` that creates variables is traced twice. Built
    here, the step is traced once, which shortens the first `fit` call of every run, and so of
    every configuration the tuner tries (`docs/gpu-and-jax.md`).

    Args:
        model: the compiled model.
        image_size: side of the square training images.
    """
    model.optimizer.build(model.trainable_variables)
    images = np.zeros((1, image_size, image_size, 3), "float32")
    masks = np.zeros((1, image_size, image_size, 1), "float32")
    model.compute_metrics(images, masks, model(images), sample_weight=None)
    model.reset_metrics()


def _datasets(cfg):
    """`(train, validation)` data for `fit`: tf.data on TensorFlow, `arrays.Batches` elsewhere."""
    common = dict(data_dir=cfg.data_dir, manual_dir=cfg.manual_dir)
    augmentation = get_augmentation(cfg.augment)
    extra = None
    if cfg.extra_train_dir is not None:
        extra = external.training_arrays(
            cfg.extra_train_dir,
            cfg.image_size,
            folds=cfg.extra_folds,
            held_out_fold=cfg.extra_held_out_fold,
        )
    if keras.backend.backend() == "tensorflow":
        from ph2_tf.data import pipeline  # imports TensorFlow

        common.update(image_size=cfg.image_size, batch_size=cfg.batch_size)
        train_ds = pipeline.load_split(
            "train",
            training=True,
            augmentation=augmentation,
            seed=cfg.seed,
            extra_examples=extra,
            **common,
        )
        return train_ds, pipeline.load_split("validation", **common)
    train_images, train_masks, _ = arrays.load_arrays("train", cfg.image_size, **common)
    if extra is not None:
        train_images = np.concatenate([train_images, extra[0]])
        train_masks = np.concatenate([train_masks, extra[1]])
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


def train(cfg, *, overwrite=False, strategy=None, model=None, extra_callbacks=(), verbose=2):
    """Trains a model on the PH2 train split (and `cfg.extra_train_dir`), validating on PH2's.

    `cfg.out_dir` belongs to this run (`ph2_tf.training.runs`): an interrupted run of the same
    config resumes from its backup; a finished one, or a run of another config, is refused
    unless `overwrite`; a run another process is training is refused.

    Args:
        cfg: a `TrainConfig` (validated again here, before any data is read or file written).
        overwrite: first remove what an earlier run wrote in `cfg.out_dir`.
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
        RunDirError: `cfg.out_dir` is a file, holds a finished run or another run's files, or
            is in use; nothing was written.
        TrainingDivergedError: the loss or the weights became non-finite; `best.keras` and the
            backup still hold the last finite state, if any.
    """
    cfg.validate()
    set_seeds(cfg.seed, cfg.deterministic)
    accelerators.enable_jax_compilation_cache()
    strategy = strategy or get_strategy()
    out_dir = worker_out_dir(cfg.out_dir, strategy)
    if out_dir.exists() and not out_dir.is_dir():
        raise runs.RunDirError(f"{out_dir} exists and is not a directory")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with runs.locked(out_dir):
            if overwrite:
                runs.clear(out_dir)
            state = runs.run_state(dataclasses.replace(cfg, out_dir=str(out_dir)))
            if state == "finished":
                raise runs.RunDirError(
                    f"{out_dir} holds this run, finished: use its best.keras, or pass "
                    "--overwrite to train it again"
                )
            return _fit(cfg, out_dir, strategy, model, extra_callbacks, verbose)
    finally:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a run that wrote nothing leaves no folder behind


def _fit(cfg, out_dir, strategy, model, extra_callbacks, verbose):
    """The body of `train`, once the run directory is this process's."""
    train_data, val_data = _datasets(cfg)
    if model is None:
        # Seeded again: preparing the dataset on first use consumes random state, and the
        # first run must initialise its weights as every later run with this seed does.
        set_seeds(cfg.seed, cfg.deterministic)
        use_local_accelerators()
        with strategy_scope(strategy):
            model = build_and_compile(cfg)
    # After the data and the model (its init_from read), so that a run without either leaves
    # nothing.
    cfg.save(out_dir / CONFIG_FILE)
    model.fit(
        train_data,
        validation_data=val_data,
        epochs=cfg.epochs,
        callbacks=make_callbacks(cfg, out_dir) + list(extra_callbacks),
        verbose=verbose,
    )
    return model, read_log(out_dir)
