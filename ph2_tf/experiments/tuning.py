"""Keras Tuner over the study's space: the HyperModel that trains a configuration, and the tuner.

A trial is one configuration. Its `fit` trains that configuration once per seed, evaluates
each trained model on the validation and test splits and stores one record per seed
(`ph2_tf.experiments.records`), so that an interrupted search resumes at seed granularity
(finished seeds are read back, not retrained) and the report can show mean ± std over seeds.
The tuner's objective is the mean final validation Jaccard over seeds; the test split is never
used to choose anything.

A seed that fails (an error other than divergence) is reported in `PH2HyperModel.failures`,
the other seeds of its trial still train, and the trial is marked failed rather than complete,
so that running the command again tries it again.
"""

import dataclasses
import os
import traceback
from pathlib import Path

import keras
import keras_tuner
import numpy as np
from keras_tuner.engine.trial import TrialStatus

from ph2_tf import files, provenance
from ph2_tf.evaluation import evaluate
from ph2_tf.experiments import records
from ph2_tf.experiments.records import SearchSettings
from ph2_tf.experiments.study import SEARCH_SPACE, Configuration
from ph2_tf.training import runs, train
from ph2_tf.training.callbacks import TrainingDivergedError
from ph2_tf.training.config import TrainConfig
from ph2_tf.training.distribute import get_strategy, strategy_scope, use_local_accelerators
from ph2_tf.training.runs import EPOCH_SECONDS, read_log

OBJECTIVE = keras_tuner.Objective("val_jaccard", direction="max")
OPTIMIZER_NAME = "AdamW"  # train.build_and_compile always uses AdamW, as the study did.


@dataclasses.dataclass(frozen=True)
class SeedFailure:
    """A seed whose training or scoring raised an error: it has no record.

    Args:
        name: its configuration's name.
        seed: the seed.
        seed_dir: its training run directory.
        reason: the error's type and the first line of its message.
    """

    name: str
    seed: int
    seed_dir: Path
    reason: str


class PH2HyperModel(keras_tuner.HyperModel):
    """Builds and trains one configuration of the study's comparison.

    `build(hp)` picks the architecture, loss and learning rate; `fit(hp, model, ...)` picks the
    epochs, trains every seed and passes the tuner's callbacks through to `model.fit`.

    Args:
        settings: a `SearchSettings`.
        strategy: the `tf.distribute.Strategy` the tuner trains under; None on backends other
            than TensorFlow.
        configurations: the grid's configurations the tuner chooses from (default: all of
            `settings.grid`); unused by the Bayesian search.

    Example:

    ```python
    hypermodel = PH2HyperModel(settings, get_strategy())
    tuner = keras_tuner.GridSearch(hypermodel, objective=OBJECTIVE, directory="results/x")
    tuner.search()
    ```
    """

    def __init__(self, settings: SearchSettings, strategy, configurations=None):
        super().__init__(name="ph2")
        self.settings = settings
        self.strategy = strategy
        self.configurations = configurations or settings.grid
        self.failures: list[SeedFailure] = []

    def configuration(self, hp) -> Configuration:
        if self.settings.grid is not None:
            chosen = hp.Choice("configuration", [c.name for c in self.configurations])
            # By name in the whole grid: a distributed worker may be handed any of them.
            return next(c for c in self.settings.grid if c.name == chosen)
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
        done, failed = [], []
        for index, seed in enumerate(self.settings.seeds):
            try:
                # A seed with a record finished before an interruption: it is read back.
                record = records.read_record(self.settings.record_path(config, seed))
                if record is None:
                    if index > 0:
                        model = self._build_seeded(config, seed)
                    record = self._train_seed(config, seed, model, _passed_on(callbacks))
                done.append(record)
            except Exception as e:  # reported, and the other seeds still train
                failed.append(self._failed(config, seed, e))
        if failed:
            # Failed, not complete: Keras Tuner would never run a complete trial again.
            raise keras_tuner.errors.FailedTrialError(
                f"{config.name}: seed(s) {', '.join(str(f.seed) for f in failed)} failed"
            )
        # Keras Tuner reads the objective (`val_jaccard`) from this dict. A diverged seed
        # counts as Jaccard 0 (and every other score 0), so that it can never look best.
        names = next((r["validation"] for r in done if r["validation"]), {"jaccard": 0.0})
        return {
            f"val_{name}": float(np.mean([(r["validation"] or {}).get(name, 0.0) for r in done]))
            for name in names
        }

    def _failed(self, config, seed, error):
        """Reports a seed's error (its traceback goes to the log) and returns its failure."""
        traceback.print_exc()
        message = str(error).strip().splitlines()
        failure = SeedFailure(
            name=config.name,
            seed=seed,
            seed_dir=self.settings.seed_dir(config, seed),
            reason=type(error).__name__ + (f": {message[0]}" if message else ""),
        )
        print(f"{config.name}, seed {seed}: failed: {failure.reason}", flush=True)
        self.failures.append(failure)
        return failure

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
        model_path = self.settings.model_path(config, seed)
        # "finished" with no record: an interruption came after the last epoch. `train` refuses
        # a finished run, so its final weights are scored if they were saved, else it is
        # trained again from its start (its backup is gone once it finished).
        state = runs.run_state(cfg)
        try:
            if state == "finished" and model_path.exists():
                print("trained before an interruption: scoring its saved final weights", flush=True)
                model = keras.saving.load_model(model_path, compile=False)
                history = read_log(cfg.out_dir)
            else:
                model, history = train.train(
                    cfg,
                    overwrite=state == "finished",
                    strategy=self.strategy,
                    model=model,
                    extra_callbacks=tuner_callbacks,
                    verbose=self.settings.verbose,
                )
                model_path.parent.mkdir(parents=True, exist_ok=True)
                with files.replacing(model_path) as partial:
                    model.save(partial)
        except TrainingDivergedError as e:
            print(f"{config.name}, seed {seed}: training diverged: {e}", flush=True)
            record["diverged"] = str(e)
            history = read_log(cfg.out_dir)
            record.update(validation=None, test=None, test_original_resolution=None)
        else:
            record.update(self._scores(model, cfg))
        # From the run's log, so that a run resumed after a kill counts every epoch once.
        record.update(
            epochs_run=len(history.get("epoch", [])),
            train_seconds=float(sum(history.get(EPOCH_SECONDS, []))),
            history={k: v for k, v in history.items() if k not in ("epoch", EPOCH_SECONDS)},
        )
        records.write_record(self.settings.record_path(config, seed), record)
        return record

    def _scores(self, model, cfg):
        """The record's scores of a trained model on the validation and test splits."""
        # The study's numbers describe the model after its configured epochs, so we evaluate
        # the final weights (no checkpoint selection) on both held-out splits.
        common = dict(
            image_size=cfg.image_size,
            batch_size=cfg.batch_size,
            data_dir=cfg.data_dir,
            manual_dir=cfg.manual_dir,
        )
        scores = {}
        validation = evaluate.evaluate(model, "validation", original_resolution=False, **common)
        try:
            test = evaluate.evaluate(model, "test", **common)
        except FileNotFoundError as e:
            # Only off TensorFlow, where nothing can prepare the `original` config: the GPU
            # machine gets the resized data only (`ph2_tf.data.sources`).
            print(f"Jaccard at original size not measured: {e}", flush=True)
            scores["test_original_resolution_missing"] = str(e)
            test = evaluate.evaluate(model, "test", original_resolution=False, **common)
        scores.update(
            validation=validation["training_resolution"],
            test=test["training_resolution"],
            test_original_resolution=test.get("original_resolution"),
        )
        return scores


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
    trial it runs again, so N counts configurations, not restarts. In a grid, M counts the
    configurations this run trains (`pending_configurations`).
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


def pending_configurations(settings: SearchSettings):
    """The grid's configurations that have a seed without a record, in grid order."""
    unrecorded = {config for config, _ in records.unrecorded_seeds(settings, settings.grid)}
    return tuple(c for c in settings.grid if c in unrecorded)


def _owns_the_oracle():
    """Whether this process keeps the oracle: it does, unless it is a distributed worker."""
    return "KERASTUNER_ORACLE_IP" not in os.environ or "chief" in os.environ.get(
        "KERASTUNER_TUNER_ID", ""
    )


def make_tuner(settings: SearchSettings, configurations=None):
    """The Keras Tuner of `settings.mode`.

    'grid' runs each of `configurations` once, on a new oracle: the records are the state of a
    grid run, so a configuration whose seeds are all recorded needs no trial, and one with a
    seed missing (cut off, failed, or added to the grid later) gets one. 'search' runs
    Bayesian optimization over `SEARCH_SPACE` for `settings.max_trials` trials, resuming the
    oracle `settings.run_dir` holds, and tries again the trials that failed in earlier runs.

    Args:
        settings: a `SearchSettings`.
        configurations: the grid's configurations to run, at least one (default:
            `pending_configurations`); unused by the search.
    """
    strategy = get_strategy()
    grid = settings.grid is not None
    if grid:
        configurations = configurations or pending_configurations(settings)
    common = dict(
        hypermodel=PH2HyperModel(settings, strategy, configurations),
        objective=OBJECTIVE,
        directory=str(settings.run_dir),
        project_name="tuner",
        overwrite=grid and _owns_the_oracle(),
        distribution_strategy=strategy,
        seed=settings.seeds[0],
    )
    if grid:
        return _GridSearch(max_trials=len(configurations), **common)
    tuner = _BayesianOptimization(max_trials=settings.max_trials, **common)
    if _owns_the_oracle():
        _retry_failed_trials(tuner.oracle)
    return tuner


def _retry_failed_trials(oracle):
    """Queues the trials an earlier run marked failed to run again, first.

    Keras Tuner queues the trials a kill cut off when it reloads an oracle, but never runs a
    failed trial again, so the seeds that failed would never be trained. The queue is the one
    `Oracle.reload` fills.
    """
    for trial_id, trial in oracle.trials.items():
        if trial.status == TrialStatus.FAILED and trial_id not in oracle._retry_queue:
            oracle._retry_queue.append(trial_id)


def searched_configurations(tuner):
    """The configurations a `--mode search` tuner tried, best first, then the failed ones."""
    trials = tuner.oracle.get_best_trials(num_trials=len(tuner.oracle.trials))
    return tuple(dict.fromkeys(tuner.hypermodel.configuration(t.hyperparameters) for t in trials))


def failed_trials(tuner):
    """The trials of `tuner` that ended failed (in this run or, for the search, an earlier one)."""
    return [
        t
        for t in tuner.oracle.trials.values()
        if t.status in (TrialStatus.FAILED, TrialStatus.INVALID)
    ]
