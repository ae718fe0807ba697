"""Keras Tuner search over the study's space: model, loss, learning rate and epochs.

A trial is one configuration. Its `fit` trains that configuration once per seed, evaluates
each trained model on the test split and stores one JSON record per seed, so that an
interrupted search resumes at seed granularity (finished seeds are read back, not retrained)
and the report can show mean ± std over seeds. The tuner's objective is the mean final
validation Jaccard over seeds; the test split is never used to choose anything.
"""

import dataclasses
import json
import time
from pathlib import Path

import keras_tuner
import numpy as np

from ph2_tf import data, evaluate, train
from ph2_tf.profiles import Profile

OBJECTIVE = keras_tuner.Objective("val_jaccard", direction="max")
OPTIMIZER_NAME = "AdamW"  # train.build_and_compile always uses AdamW, as the study did.


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One row of the comparison: architecture, epochs, loss and learning rate."""

    model: str
    epochs: int
    loss: str
    learning_rate: float

    @property
    def name(self) -> str:
        return f"{self.model}-{self.loss}-lr{self.learning_rate:g}-e{self.epochs}"


def _configurations(model, rows):
    return tuple(Configuration(model, epochs, loss, lr) for epochs, loss, lr in rows)


# The study's 15 configurations, in its table order; `study_score` is the number its table
# printed as "IoU", which was really pixel accuracy (None: the run did not train).
STUDY_GRID = _configurations(
    "unet",
    [
        (30, "bce", 1e-4),
        (50, "bce", 1e-4),
        (75, "bce", 1e-4),
        (50, "cross_entropy", 1e-4),
        (50, "dice", 1e-5),
        (50, "soft_bce", 1e-5),
        (50, "soft_bce", 1e-4),
    ],
) + _configurations(
    "segnet",
    [
        (15, "bce", 1e-5),
        (15, "bce", 1e-4),
        (15, "bce", 1e-3),
        (15, "bce", 1e-2),
        (50, "dice", 1e-5),
        (10, "dice", 1e-4),
        (50, "soft_bce", 1e-5),
        (50, "soft_bce", 1e-4),
    ],
)
STUDY_SCORES = dict(
    zip(
        STUDY_GRID,
        [0.9215, 0.9136, 0.9314, None, 0.9149, 0.9271, 0.9335]
        + [0.2745, 0.3463, 0.2618, 0.3257, 0.9138, 0.3218, 0.9369, 0.9509],
        strict=True,
    )
)

# `--mode search` explores the product of the values the study used.
SEARCH_SPACE = {
    "model": sorted({c.model for c in STUDY_GRID}),
    "loss": sorted({c.loss for c in STUDY_GRID}),
    "learning_rate": sorted({c.learning_rate for c in STUDY_GRID}),
    "epochs": sorted({c.epochs for c in STUDY_GRID}),
}


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Everything a trial needs besides its configuration.

    Args:
        profile: input size, width and global batch size.
        seeds: seeds each configuration is trained with.
        run_dir: where records, per-seed logs and models go (`results/<run-name>`).
        data_dir: TFDS data dir (None: the TFDS default).
        manual_dir: where PH2 was downloaded (None: `PH2_MANUAL_DIR` or the TFDS default).
        grid: the configurations of `--mode grid`; None for `--mode search`.
        verbose: Keras `fit` verbosity.
    """

    profile: Profile
    seeds: tuple
    run_dir: Path
    data_dir: str | None = None
    manual_dir: str | None = None
    grid: tuple | None = STUDY_GRID
    verbose: int = 2

    def record_path(self, config: Configuration, seed: int) -> Path:
        return self.run_dir / "records" / f"{config.name}__seed{seed}.json"

    def seed_dir(self, config: Configuration, seed: int) -> Path:
        return self.run_dir / "runs" / config.name / f"seed{seed}"

    def model_path(self, config: Configuration, seed: int) -> Path:
        return self.seed_dir(config, seed) / "final.keras"


class PH2HyperModel(keras_tuner.HyperModel):
    """Builds and trains one configuration of the study's comparison.

    `build(hp)` picks the architecture, loss and learning rate; `fit(hp, model, ...)` picks the
    epochs, trains every seed and passes the tuner's callbacks through to `model.fit`.

    Args:
        settings: a `SearchSettings`.
        strategy: the `tf.distribute.Strategy` the tuner trains under.

    Example:

    ```python
    hypermodel = PH2HyperModel(settings, tf.distribute.get_strategy())
    tuner = keras_tuner.GridSearch(hypermodel, objective=OBJECTIVE, directory="results/x")
    tuner.search()
    ```
    """

    def __init__(self, settings: SearchSettings, strategy):
        super().__init__(name="ph2")
        self.settings = settings
        self.strategy = strategy

    def configuration(self, hp) -> Configuration:
        if self.settings.grid is not None:
            by_name = {c.name: c for c in self.settings.grid}
            return by_name[hp.Choice("configuration", list(by_name))]
        return Configuration(
            model=hp.Choice("model", SEARCH_SPACE["model"]),
            epochs=hp.Choice("epochs", SEARCH_SPACE["epochs"]),
            loss=hp.Choice("loss", SEARCH_SPACE["loss"]),
            learning_rate=hp.Choice("learning_rate", SEARCH_SPACE["learning_rate"]),
        )

    def train_config(self, config: Configuration, seed: int) -> train.TrainConfig:
        profile = self.settings.profile
        return train.TrainConfig(
            model=config.model,
            loss=config.loss,
            learning_rate=config.learning_rate,
            epochs=config.epochs,
            image_size=profile.image_size,
            width=profile.width,
            batch_size=profile.batch_size,
            seed=seed,
            data_dir=self.settings.data_dir,
            manual_dir=self.settings.manual_dir,
            out_dir=str(self.settings.seed_dir(config, seed)),
        )

    def build(self, hp):
        config = self.configuration(hp)
        return self._build_seeded(config, self.settings.seeds[0])

    def _build_seeded(self, config, seed):
        cfg = self.train_config(config, seed)
        train.set_seeds(seed, cfg.deterministic)
        with self.strategy.scope():
            return train.build_and_compile(cfg)

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        config = self.configuration(hp)
        records = []
        for index, seed in enumerate(self.settings.seeds):
            path = self.settings.record_path(config, seed)
            if path.exists():  # finished before an interruption
                records.append(json.loads(path.read_text()))
                continue
            if index > 0:
                model = self._build_seeded(config, seed)
            records.append(self._train_seed(config, seed, model, callbacks or []))
        # Keras Tuner reads the objective (`val_jaccard`) from this dict.
        return {
            f"val_{name}": float(np.mean([r["validation"][name] for r in records]))
            for name in records[0]["validation"]
        }

    def _train_seed(self, config, seed, model, tuner_callbacks):
        cfg = self.train_config(config, seed)
        profile = self.settings.profile
        common = dict(
            image_size=profile.image_size,
            batch_size=profile.batch_size,
            data_dir=cfg.data_dir,
            manual_dir=cfg.manual_dir,
        )
        train_ds = data.load_split("train", training=True, seed=seed, **common)
        val_ds = data.load_split("validation", **common)
        print(f"--- {config.name}, seed {seed} ---", flush=True)
        start = time.perf_counter()
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            callbacks=list(tuner_callbacks) + train.make_callbacks(cfg, cfg.out_dir),
            verbose=self.settings.verbose,
        )
        train_seconds = time.perf_counter() - start
        # The study's numbers describe the model after its configured epochs, so we evaluate
        # the final weights (no checkpoint selection) on both held-out splits.
        validation = evaluate.evaluate(model, "validation", original_resolution=False, **common)
        test = evaluate.evaluate(model, "test", **common)
        record = {
            "configuration": dataclasses.asdict(config),
            "name": config.name,
            "seed": seed,
            "profile": dataclasses.asdict(profile),
            "optimizer": OPTIMIZER_NAME,
            "train_seconds": train_seconds,
            "epochs_run": len(history.history["loss"]),
            "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
            "validation": validation["training_resolution"],
            "test": test["training_resolution"],
            "test_original_resolution": test["original_resolution"],
        }
        model_path = self.settings.model_path(config, seed)
        model_path.parent.mkdir(parents=True, exist_ok=True)
        model.save(model_path)
        path = self.settings.record_path(config, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so that an interruption never leaves a half-written record.
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(path)
        return record


def make_tuner(settings: SearchSettings, mode: str = "grid", max_trials: int = 20):
    """Keras Tuner for `mode` ('grid' or 'search'), resuming whatever `settings.run_dir` holds.

    Args:
        settings: a `SearchSettings` (its `grid` must be set for 'grid', None for 'search').
        mode: 'grid' runs every configuration of `settings.grid` once; 'search' runs Bayesian
            optimization over `SEARCH_SPACE` for `max_trials` trials.
        max_trials: trial budget of 'search'.
    """
    strategy = train.get_strategy()
    common = dict(
        hypermodel=PH2HyperModel(settings, strategy),
        objective=OBJECTIVE,
        directory=str(settings.run_dir),
        project_name="tuner",
        overwrite=False,
        distribution_strategy=strategy,
        seed=settings.seeds[0],
    )
    if mode == "grid":
        return keras_tuner.GridSearch(max_trials=len(settings.grid), **common)
    if mode == "search":
        return keras_tuner.BayesianOptimization(max_trials=max_trials, **common)
    raise ValueError(f"mode must be 'grid' or 'search', received {mode!r}")
