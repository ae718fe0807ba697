"""Keras Tuner over the study's space: the HyperModel that trains a configuration, and the tuner.

A trial is one configuration. Its `fit` trains that configuration once per seed, evaluates
each trained model on the validation and test splits and stores one record per seed
(`ph2_tf.experiments.records`), so that an interrupted search resumes at seed granularity
(finished seeds are read back, not retrained) and the report can show mean ± std over seeds.
The tuner's objective is the mean final validation Jaccard over seeds; the test split is never
used to choose anything.
"""

import dataclasses

import keras_tuner
import numpy as np

from ph2_tf import provenance
from ph2_tf.evaluation import evaluate
from ph2_tf.experiments import records
from ph2_tf.experiments.records import SearchSettings
from ph2_tf.experiments.study import MODES, SEARCH_SPACE, Configuration
from ph2_tf.training import train
from ph2_tf.training.callbacks import TrainingDivergedError
from ph2_tf.training.config import TrainConfig
from ph2_tf.training.distribute import get_strategy, strategy_scope, use_local_accelerators
from ph2_tf.training.runs import EPOCH_SECONDS, read_log

OBJECTIVE = keras_tuner.Objective("val_jaccard", direction="max")
OPTIMIZER_NAME = "AdamW"  # train.build_and_compile always uses AdamW, as the study did.


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
        settings = self.settings
        return TrainConfig.from_profile(
            settings.profile,
            model=config.model,
            loss=config.loss,
            learning_rate=config.learning_rate,
            epochs=config.epochs,
            precision=settings.precision,
            checkpoints=settings.checkpoints,
            seed=seed,
            data_dir=settings.data_dir,
            manual_dir=settings.manual_dir,
            out_dir=str(settings.seed_dir(config, seed)),
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
        done = []
        for index, seed in enumerate(self.settings.seeds):
            finished = records.read_record(self.settings.record_path(config, seed))
            if finished is not None:  # finished before an interruption
                done.append(finished)
                continue
            if index > 0:
                model = self._build_seeded(config, seed)
            done.append(self._train_seed(config, seed, model, _passed_on(callbacks)))
        # Keras Tuner reads the objective (`val_jaccard`) from this dict. A diverged seed
        # counts as Jaccard 0 (and every other score 0), so that it can never look best.
        names = next((r["validation"] for r in done if r["validation"]), {"jaccard": 0.0})
        return {
            f"val_{name}": float(np.mean([(r["validation"] or {}).get(name, 0.0) for r in done]))
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
        records.write_record(self.settings.record_path(config, seed), record)
        return record


def _passed_on(tuner_callbacks):
    """The Keras Tuner callbacks a seed's training runs: all but `SaveBestEpoch`.

    That one writes the weights at every epoch that improves the objective, a sizeable share of
    a `small` epoch's time (`docs/gpu-and-jax.md`). Nothing reads its file here: each seed's
    final model and `best.keras` are saved by `train` and `_train_seed`, and
    `Tuner.get_best_models` is not used.
    """
    return [c for c in tuner_callbacks or [] if type(c).__name__ != "SaveBestEpoch"]


class _AnnouncesTrials:
    """Tuner mixin: prints `trial N of M: <configuration>` as each trial starts.

    Keras Tuner numbers trials from 0 in the order it creates them, and keeps the number of a
    trial it runs again after an interruption, so N counts configurations, not restarts.
    """

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        config = self.hypermodel.configuration(trial.hyperparameters)
        total = self.oracle.max_trials
        print(f"trial {int(trial.trial_id) + 1} of {total}: {config.name}", flush=True)


class _GridSearch(_AnnouncesTrials, keras_tuner.GridSearch):
    pass


class _BayesianOptimization(_AnnouncesTrials, keras_tuner.BayesianOptimization):
    pass


def make_tuner(settings: SearchSettings, mode: str = "grid", max_trials: int = 20):
    """Keras Tuner for `mode`, resuming whatever `settings.run_dir` holds.

    Args:
        settings: a `SearchSettings` (its `grid` must be set for 'grid', None for 'search').
        mode: one of `MODES`. 'grid' runs every configuration of `settings.grid` once;
            'search' runs Bayesian optimization over `SEARCH_SPACE` for `max_trials` trials.
        max_trials: trial budget of 'search'.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, received {mode!r}")
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
        return _GridSearch(max_trials=len(settings.grid), **common)
    return _BayesianOptimization(max_trials=max_trials, **common)


def searched_configurations(tuner):
    """The configurations a finished `--mode search` tuner tried, best first."""
    trials = tuner.oracle.get_best_trials(num_trials=len(tuner.oracle.trials))
    return tuple(tuner.hypermodel.configuration(t.hyperparameters) for t in trials)
