"""A tuner run's directory: its settings, one JSON record per trained seed, and the seeds' models.

`results/<run>/records/<configuration>__seed<k>.json` holds what one seed's training produced
(configuration, scores on the validation and test splits, per-epoch history, train time,
provenance); `results/<run>/runs/<configuration>/seed<k>/` is that seed's training run directory,
with its `final.keras`. A record is written only once its seed is finished, so its presence is
what tells an interrupted run which seeds to skip.
"""

import dataclasses
import json
from pathlib import Path

import keras

import ph2_tf.models  # noqa: F401  (registers the custom layers the saved models use)
from ph2_tf.experiments.study import STUDY_GRID, Configuration
from ph2_tf.training.profiles import Profile

FINAL_MODEL_FILE = "final.keras"


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Everything a trial needs besides its configuration, and where the run's files go.

    Args:
        profile: input size, width and global batch size.
        seeds: seeds each configuration is trained with.
        run_dir: where records, per-seed runs and models go (`results/<run-name>`).
        data_dir: TFDS data dir (None: the TFDS default).
        manual_dir: where PH2 was downloaded (None: `PH2_MANUAL_DIR` or the TFDS default).
        grid: the configurations of the grid mode; None for the Bayesian search.
        verbose: Keras `fit` verbosity.
        precision: Keras dtype policy of every run (`ph2_tf.training.config.PRECISIONS`).
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
        return self.seed_dir(config, seed) / FINAL_MODEL_FILE


def write_record(path, record):
    """Writes one seed's record as JSON, whole or not at all.

    Written to a temporary file then renamed, so that an interruption never leaves a
    half-written record that a resumed run would take for a finished seed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)


def read_record(path):
    """The record at `path`, or None when that seed is not finished."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def load_records(run_dir, configurations=None) -> list[dict]:
    """Per-seed records of a run, sorted by configuration name and seed.

    Args:
        run_dir: the run's directory.
        configurations: keep only the records of these `Configuration`s (None: all).
    """
    paths = sorted((Path(run_dir) / "records").glob("*.json"))
    records = [json.loads(p.read_text()) for p in paths]
    if configurations is not None:
        names = {c.name for c in configurations}
        records = [r for r in records if r["name"] in names]
    return sorted(records, key=lambda r: (r["name"], r["seed"]))


def seed_model_path(settings: SearchSettings, record) -> Path:
    """Where the final model of one seed's record is (models are not kept in git)."""
    return settings.model_path(Configuration(**record["configuration"]), record["seed"])


def load_seed_model(settings: SearchSettings, record):
    """The final model of one seed's record (uncompiled)."""
    return keras.saving.load_model(seed_model_path(settings, record), compile=False)
