"""A tuner run's directory: its settings, one JSON record per trained seed, and the seeds' models.

`results/<run>/search.json` holds the settings the run's records depend on (`SearchSettings.
identity`); a later run in the same folder must have the same ones. `results/<run>/records/
<configuration>__seed<k>.json` holds what one seed's training produced (configuration, scores on
the validation and test splits, per-epoch history, train time, provenance);
`results/<run>/runs/<configuration>/seed<k>/` is that seed's training run directory, with its
`final.keras`. A record is written only once its seed is finished, so its presence is what tells
an interrupted run which seeds to skip. Every one of these files is written atomically
(`ph2_tf.files`).
"""

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import keras

import ph2_tf.models  # noqa: F401  (registers the custom layers the saved models use)
from ph2_tf import files
from ph2_tf.experiments.study import STUDY_GRID, Configuration
from ph2_tf.training.profiles import PROFILES, Profile

FINAL_MODEL_FILE = "final.keras"
SEARCH_FILE = "search.json"
RECORDS_DIR = "records"


class RecordError(ValueError):
    """A file of a run's directory cannot be read or does not fit the run asked for."""


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
        max_trials: trial budget of the Bayesian search (unused by the grid).
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
    max_trials: int = 20

    @property
    def mode(self) -> str:
        return "search" if self.grid is None else "grid"

    def identity(self) -> dict:
        """What the run's records depend on, as `search.json` holds it (no paths)."""
        identity = {
            "mode": self.mode,
            **dataclasses.asdict(self.profile),
            "seeds": list(self.seeds),
            "precision": self.precision,
            "checkpoints": self.checkpoints,
        }
        if self.grid is None:
            identity["max_trials"] = self.max_trials
        else:
            identity["configurations"] = [c.name for c in self.grid]
        return identity

    def record_path(self, config: Configuration, seed: int) -> Path:
        return self.run_dir / RECORDS_DIR / f"{config.name}__seed{seed}.json"

    def seed_dir(self, config: Configuration, seed: int) -> Path:
        return self.run_dir / "runs" / config.name / f"seed{seed}"

    def model_path(self, config: Configuration, seed: int) -> Path:
        return self.seed_dir(config, seed) / FINAL_MODEL_FILE


def default_run_name(settings: SearchSettings) -> str:
    """A run folder's name that changes with every setting its records depend on.

    Readable parts say the mode, the profile (its name, or size, width and batch when it is
    not one of `PROFILES`), the seeds, and what differs from the study's grid (`onlyK` for K
    of its configurations, `eN` when every configuration's epochs were set to N), the
    precision and checkpoints when not the default; a digest of `settings.identity()` ends it,
    so that two runs of different settings never share a folder by default.

    Example: `grid-small-seeds1-only1-e1-a1ffdf` for a one-configuration, one-epoch smoke run.
    """
    profile = next(
        (name for name, p in PROFILES.items() if p == settings.profile),
        f"{settings.profile.image_size}px-w{settings.profile.width:g}-b{settings.profile.batch_size}",
    )
    parts = [settings.mode, profile, f"seeds{len(settings.seeds)}"]
    if settings.grid is None:
        parts.append(f"trials{settings.max_trials}")
    elif settings.grid != STUDY_GRID:
        parts.append(f"only{len(settings.grid)}")
        epochs = {c.epochs for c in settings.grid}
        if len(epochs) == 1 and not set(settings.grid) & set(STUDY_GRID):
            parts.append(f"e{epochs.pop()}")
    if settings.precision != "float32":
        parts.append(settings.precision)
    if not settings.checkpoints:
        parts.append("nocheckpoints")
    identity = json.dumps(settings.identity(), sort_keys=True)
    parts.append(hashlib.sha256(identity.encode()).hexdigest()[:6])
    return "-".join(parts)


def read_search_settings(run_dir):
    """The settings `run_dir/search.json` records, or None when there is none.

    Raises:
        RecordError: the file cannot be read as settings.
    """
    path = Path(run_dir) / SEARCH_FILE
    if not path.exists():
        return None
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RecordError(f"{path}: not readable as a run's settings ({e})") from None
    if not isinstance(recorded, dict):
        raise RecordError(f"{path}: not readable as a run's settings (not a JSON object)")
    return recorded


def settings_differences(recorded, settings: SearchSettings) -> list[str]:
    """How `settings` differ from a run folder's recorded ones, as `"field old -> new"` parts.

    A grid that keeps every recorded configuration and adds others is no difference: records
    are per configuration and seed, so the new configurations are trained beside the old.
    Leaving a recorded configuration out is one, as is any other change, since the records
    already written would then describe another run than the one asked for.
    """
    identity = settings.identity()
    if recorded.get("mode") != identity["mode"]:
        return [f"mode {recorded.get('mode')!r} -> {identity['mode']!r}"]
    differences = [
        f"{field} {recorded.get(field)!r} -> {value!r}"
        for field, value in identity.items()
        if field != "configurations" and recorded.get(field) != value
    ]
    left_out = [
        n for n in recorded.get("configurations", ()) if n not in identity.get("configurations", ())
    ]
    if left_out:
        differences.append(f"configurations {', '.join(left_out)} left out")
    return differences


def write_search_settings(settings: SearchSettings):
    """Writes `settings.identity()` to the run's `search.json`."""
    files.write_json(settings.run_dir / SEARCH_FILE, settings.identity())


def lock_dir(run_dir) -> Path:
    """The folder whose lock (`ph2_tf.training.runs.locked`) a tuner process holds.

    The run's own folder: one process at a time trains or reports a run. Under Keras Tuner's
    distributed tuning (`KERASTUNER_ORACLE_IP` set), where a chief and its workers share one run
    by design, each locks a folder of its tuner id instead, so that no id runs twice.
    """
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return Path(run_dir)
    return Path(run_dir) / "tuners" / os.environ.get("KERASTUNER_TUNER_ID", "tuner0")


def write_record(path, record):
    """Writes one seed's record as JSON, whole or not at all.

    A half-written record would be taken for a finished seed by a resumed run.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(path, record)


def read_record(path):
    """The record at `path`, or None when that seed is not finished.

    Raises:
        RecordError: the file is not a readable record.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RecordError(
            f"{path}: not a readable record ({e}): delete it to train that seed again"
        ) from None


def load_records(run_dir, configurations=None, seeds=None) -> list[dict]:
    """Per-seed records of a run, sorted by configuration name and seed.

    Args:
        run_dir: the run's directory.
        configurations: keep only the records of these `Configuration`s (None: all).
        seeds: keep only the records of these seeds (None: all).

    Raises:
        RecordError: a record that cannot be read.
    """
    paths = sorted((Path(run_dir) / RECORDS_DIR).glob("*.json"))
    records = [read_record(p) for p in paths]
    if configurations is not None:
        names = {c.name for c in configurations}
        records = [r for r in records if r["name"] in names]
    if seeds is not None:
        records = [r for r in records if r["seed"] in seeds]
    return sorted(records, key=lambda r: (r["name"], r["seed"]))


def unrecorded_seeds(settings: SearchSettings, configurations) -> list[tuple]:
    """`(configuration, seed)` of every seed of `configurations` that has no record yet."""
    return [
        (config, seed)
        for config in configurations
        for seed in settings.seeds
        if not settings.record_path(config, seed).exists()
    ]


def seed_model_path(settings: SearchSettings, record) -> Path:
    """Where the final model of one seed's record is (models are not kept in git)."""
    return settings.model_path(Configuration(**record["configuration"]), record["seed"])


def load_seed_model(settings: SearchSettings, record):
    """The final model of one seed's record (uncompiled)."""
    return keras.saving.load_model(seed_model_path(settings, record), compile=False)
