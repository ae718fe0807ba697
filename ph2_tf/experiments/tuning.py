"""Keras Tuner search over the study's space: model, loss, learning rate and epochs.

A trial is one configuration. Its `fit` trains that configuration once per seed, evaluates
each trained model on the test split and stores one JSON record per seed, so that an
interrupted search resumes at seed granularity (finished seeds are read back, not retrained)
and the report can show mean ± std over seeds. The tuner's objective is the mean final
validation Jaccard over seeds; the test split is never used to choose anything.
"""

import dataclasses
import json
from pathlib import Path

import keras
import keras_tuner
import numpy as np
import tensorflow_datasets as tfds

import tfds_ph2  # noqa: F401  (registers the 'ph2' builder)
from ph2_tf import provenance
from ph2_tf.data import arrays, preprocessing
from ph2_tf.evaluation import evaluate
from ph2_tf.experiments import report
from ph2_tf.models.heads import lesion_probability
from ph2_tf.serving import publish
from ph2_tf.training import train
from ph2_tf.training.callbacks import TrainingDivergedError
from ph2_tf.training.config import TrainConfig
from ph2_tf.training.distribute import get_strategy, strategy_scope, use_local_accelerators
from ph2_tf.training.profiles import Profile
from ph2_tf.training.runs import EPOCH_SECONDS, read_log

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
        precision: Keras dtype policy of every run (`PRECISIONS`).
        checkpoints: each seed's `best.keras` and per-epoch backup (`TrainConfig.checkpoints`).
            Off, a seed cut off mid-way is trained again from its start.
    """

    profile: Profile
    seeds: tuple
    run_dir: Path
    data_dir: str | None = None
    manual_dir: str | None = None
    grid: tuple | None = STUDY_GRID
    verbose: int = 2
    precision: str = "float32"
    checkpoints: bool = True

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
        strategy: the `tf.distribute.Strategy` the tuner trains under; None on backends other
            than TensorFlow.

    Example:

    ```python
    hypermodel = PH2HyperModel(settings, get_strategy())
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

    def train_config(self, config: Configuration, seed: int) -> TrainConfig:
        profile = self.settings.profile
        return TrainConfig(
            model=config.model,
            loss=config.loss,
            learning_rate=config.learning_rate,
            epochs=config.epochs,
            image_size=profile.image_size,
            width=profile.width,
            batch_size=profile.batch_size,
            precision=self.settings.precision,
            checkpoints=self.settings.checkpoints,
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
        use_local_accelerators()
        with strategy_scope(self.strategy):
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
            records.append(self._train_seed(config, seed, model, _passed_on(callbacks)))
        # Keras Tuner reads the objective (`val_jaccard`) from this dict. A diverged seed
        # counts as Jaccard 0 (and every other score 0), so that it can never look best.
        names = next((r["validation"] for r in records if r["validation"]), {"jaccard": 0.0})
        return {
            f"val_{name}": float(np.mean([(r["validation"] or {}).get(name, 0.0) for r in records]))
            for name in names
        }

    def _train_seed(self, config, seed, model, tuner_callbacks):
        cfg = self.train_config(config, seed)
        print(f"--- {config.name}, seed {seed} ---", flush=True)
        record = {
            "configuration": dataclasses.asdict(config),
            "name": config.name,
            "seed": seed,
            "profile": dataclasses.asdict(self.settings.profile),
            "optimizer": OPTIMIZER_NAME,
            "provenance": provenance.collect(),
        }
        try:
            model, history = train.train(
                cfg,
                strategy=self.strategy,
                model=model,
                extra_callbacks=tuner_callbacks,
                verbose=self.settings.verbose,
            )
        except TrainingDivergedError as e:
            print(f"{config.name}, seed {seed}: training diverged: {e}", flush=True)
            record["diverged"] = str(e)
            history = read_log(cfg.out_dir)
            record.update(validation=None, test=None, test_original_resolution=None)
        else:
            # The study's numbers describe the model after its configured epochs, so we evaluate
            # the final weights (no checkpoint selection) on both held-out splits.
            common = dict(
                image_size=cfg.image_size,
                batch_size=cfg.batch_size,
                data_dir=cfg.data_dir,
                manual_dir=cfg.manual_dir,
            )
            validation = evaluate.evaluate(model, "validation", original_resolution=False, **common)
            try:
                test = evaluate.evaluate(model, "test", **common)
            except FileNotFoundError as e:
                # Only off TensorFlow, where nothing can prepare the `original` config: the GPU
                # machine gets the resized data only (`ph2_tf.data.sources`).
                print(f"Jaccard at original size not measured: {e}", flush=True)
                record["test_original_resolution_missing"] = str(e)
                test = evaluate.evaluate(model, "test", original_resolution=False, **common)
            record.update(
                validation=validation["training_resolution"],
                test=test["training_resolution"],
                test_original_resolution=test.get("original_resolution"),
            )
            model_path = self.settings.model_path(config, seed)
            model_path.parent.mkdir(parents=True, exist_ok=True)
            model.save(model_path)
        # From the run's log, so that a run resumed after a kill counts every epoch once.
        record.update(
            epochs_run=len(history.get("epoch", [])),
            train_seconds=float(sum(history.get(EPOCH_SECONDS, []))),
            history={k: v for k, v in history.items() if k not in ("epoch", EPOCH_SECONDS)},
        )
        path = self.settings.record_path(config, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so that an interruption never leaves a half-written record.
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(path)
        return record


def _passed_on(tuner_callbacks):
    """The Keras Tuner callbacks a seed's training runs: all but `SaveBestEpoch`.

    That one writes the weights at every epoch that improves the objective, 0.16 s (UNet) to
    0.33 s (SegNet) per write at the `small` profile on 2 CPU cores, a fifth of an epoch. Nothing
    reads its file here: each seed's final model and `best.keras` are saved by `train` and
    `_train_seed`, and `Tuner.get_best_models` is not used.
    """
    return [c for c in tuner_callbacks or [] if type(c).__name__ != "SaveBestEpoch"]


def make_tuner(settings: SearchSettings, mode: str = "grid", max_trials: int = 20):
    """Keras Tuner for `mode` ('grid' or 'search'), resuming whatever `settings.run_dir` holds.

    Args:
        settings: a `SearchSettings` (its `grid` must be set for 'grid', None for 'search').
        mode: 'grid' runs every configuration of `settings.grid` once; 'search' runs Bayesian
            optimization over `SEARCH_SPACE` for `max_trials` trials.
        max_trials: trial budget of 'search'.
    """
    strategy = get_strategy()
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


def searched_configurations(tuner):
    """The configurations a finished `--mode search` tuner tried, best first."""
    trials = tuner.oracle.get_best_trials(num_trials=len(tuner.oracle.trials))
    return tuple(tuner.hypermodel.configuration(t.hyperparameters) for t in trials)


def load_seed_model(settings: SearchSettings, record):
    """The final model of one seed's record (uncompiled)."""
    config = Configuration(**record["configuration"])
    return keras.saving.load_model(settings.model_path(config, record["seed"]), compile=False)


def write_report(settings: SearchSettings, configurations, profile_name):
    """Writes the run's comparison table (md, csv), plots and example masks.

    Args:
        settings: the run's `SearchSettings`.
        configurations: the configurations to report, in row order.
        profile_name: the profile's name, for the settings line.

    Returns:
        The records of `configurations`.
    """
    run_dir = settings.run_dir
    names = {c.name for c in configurations}
    records = [r for r in report.load_records(run_dir) if r["name"] in names]
    rows = report.summarize(records, configurations, STUDY_SCORES)
    report.write_csv(rows, run_dir / "comparison.csv")
    config = preprocessing.tfds_config_for(settings.profile.image_size)
    builder = tfds.builder(f"ph2/{config}", data_dir=settings.data_dir)
    test_images = builder.info.splits["test"].num_examples
    settings_line = report.settings_line(
        profile_name, settings.profile, settings.seeds, TrainConfig.weight_decay
    )
    if any(r.get("test_original_resolution_missing") for r in records):
        settings_line += (
            " Jaccard at original size is not measured where the training machine had no "
            "full-size `original` data (only the resized configs travel to a machine without "
            "TensorFlow); the records say so in `test_original_resolution_missing`."
        )
    report.write_markdown(
        rows,
        run_dir / "comparison.md",
        settings_line,
        int(test_images),
        report.provenance_line(records),
        without_records=[
            c.name for c in configurations if c.name not in {r["name"] for r in records}
        ],
    )
    report.plot_comparison(rows, run_dir / "comparison.png")
    report.plot_curves(records, run_dir / "curves.png")
    best = publish.best_per_model(records)
    missing = [
        path
        for path in (
            settings.model_path(Configuration(**r["configuration"]), r["seed"])
            for r in best.values()
        )
        if not path.exists()
    ]
    if missing:  # models are not kept in git: a report from committed records has none
        print(f"masks.png not redrawn: no model at {', '.join(map(str, missing))}", flush=True)
    else:
        _plot_best_masks(settings, best, run_dir / "masks.png")
    return records


def _plot_best_masks(settings, best, path, count=4):
    images, truths, _ = arrays.load_arrays(
        "test",
        settings.profile.image_size,
        data_dir=settings.data_dir,
        manual_dir=settings.manual_dir,
    )
    images, truths = images[:count], truths[:count]
    predictions = {
        f"{model_name} ({record['name']})": keras.ops.convert_to_numpy(
            lesion_probability(load_seed_model(settings, record)(images))
        )
        > 0.5
        for model_name, record in best.items()
    }
    report.plot_masks(images, truths, predictions, path)


def publish_best(settings: SearchSettings, records, base_dir, force=False):
    """Publishes each architecture's best seed (`publish.best_per_model`) to `base_dir`.

    A model becomes a new served version only if it beats the served one on the validation
    split through the serving signature, or with `force`; `publish.publish` says which.

    Args:
        settings: the run's `SearchSettings`.
        records: the run's records.
        base_dir: TF Serving model root.
        force: publish even when not better than the served version.

    Returns:
        `{model name: new version directory or None}`.
    """
    published = {}
    if keras.backend.backend() != "tensorflow":
        print(
            "not published: exporting to TF Serving needs TensorFlow; on a machine with it, run "
            "`python -m ph2_tf export --run-dir` on the chosen seed's directory",
            flush=True,
        )
        return published
    for model_name, record in publish.best_per_model(records).items():
        source = {
            "name": record["name"],
            "configuration": record["configuration"],
            "seed": record["seed"],
            "profile": record["profile"],
            "source_run": str(settings.run_dir),
            "record_validation": record["validation"],
        }
        published[model_name] = publish.publish(
            load_seed_model(settings, record),
            base_dir=base_dir,
            model_name=f"ph2_{model_name}",
            image_size=settings.profile.image_size,
            source=source,
            force=force,
            data_dir=settings.data_dir,
            manual_dir=settings.manual_dir,
        )
    return published
