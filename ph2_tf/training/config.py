"""`TrainConfig`: everything that defines one training run, and how to build one from a profile."""

import dataclasses
import json
import math
import pathlib

import keras

from ph2_tf import files
from ph2_tf.data.augmentation import AUGMENTATIONS
from ph2_tf.models import MODEL_NAMES
from ph2_tf.training.losses import LOSS_NAMES
from ph2_tf.training.profiles import PROFILES

# Both models halve the input 4 (UNet) or 5 (SegNet) times.
SIZE_MULTIPLE = 32
PRECISIONS = ("float32", "mixed_bfloat16")
LR_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines one training run.

    Args:
        model: `'unet'` or `'segnet'`.
        loss: a name from `ph2_tf.training.losses.LOSS_NAMES`.
        learning_rate: AdamW learning rate (the first epoch's, with a schedule).
        lr_schedule: `'constant'` (the study's) or `'cosine'`: each epoch's learning rate
            follows half a cosine from `learning_rate` down towards 0 over `epochs`
            (`ph2_tf.training.callbacks.cosine_learning_rate`), set at the start of the epoch.
        epochs: number of epochs.
        image_size: side of the square training images, in pixels.
        width: filter-count multiplier (1.0 is the study's model).
        batch_size: global batch size (split over the replicas in sync).
        weight_decay: AdamW decoupled weight decay (0.01: PyTorch's AdamW default, as in the study).
        seed: seed for weights, shuffling and augmentation.
        augment: name of the training augmentation, a key of
            `ph2_tf.data.augmentation.AUGMENTATIONS` (`'none'` in the study-faithful setting).
        colour_constancy: start the model with shades-of-grey colour normalisation
            (`ph2_tf.models.colour_constancy.ShadesOfGrey`), in training and serving alike.
        data_dir: TFDS data directory (TFDS's default when None).
        manual_dir: PH2 manual directory used to prepare the dataset if needed.
        out_dir: directory for the checkpoint, backup, logs and config.
        deterministic: enable TensorFlow op determinism (reproducible CPU runs; some GPU kernels
            have no deterministic version). Other backends are deterministic on the CPU anyway.
        precision: Keras dtype policy, `'float32'` (the study's) or `'mixed_bfloat16'`.
        jit_compile: compile the training step with XLA: True, False, or None for Keras'
            `"auto"`, which is XLA under JAX, and under TensorFlow XLA on GPUs unless op
            determinism is on (Keras turns XLA off then, so True with `deterministic` is refused
            on TensorFlow). On CPUs, TensorFlow with oneDNN and without XLA trained the `small`
            profile fastest (`results/cpu-vs-torch/`). Off under
            `MultiWorkerMirroredStrategy`, whose collectives XLA does not compile on CPUs.
        checkpoints: write `best.keras` and the per-epoch backup that a killed run resumes
            from. Off, a run writes only its config and log: the tuner's grid scores the final
            weights, and at full size those writes (weights and AdamW slots, every epoch) are
            large (`docs/tuning.md`) next to the short epochs of a GPU.
        init_from: a `.keras` file (another run's `best.keras`) or a published SavedModel
            version directory whose weights start this run instead of a fresh initialisation:
            training goes on for `epochs` more epochs with a fresh AdamW. Its model must be the
            one this config builds. A published version with BatchNorm folded away is unfolded
            first, with statistics measured on the PH2 train split
            (`ph2_tf.serving.folding.unfold_batch_normalization`). None: initialise from `seed`.
        ema_momentum: keep an exponential moving average of the weights, updated after every
            step with this momentum (Polyak averaging; 0.99 averages about the last 100 steps).
            Validation, `best.keras` and the weights `train` returns are the average; training
            and the per-epoch backup go on with the raw weights. None: no averaging.
        extra_train_dir: an ISIC-layout folder (`images/`, `masks/`) whose pairs are trained
            on beside PH2's train split. A model trained so is no longer PH2-only and must say
            so in its name and card. None: PH2 alone, as in the study.
        extra_folds: with `extra_train_dir`, split its pairs into this many folds
            (`ph2_tf.data.external.split_folds`) and leave `extra_held_out_fold` out, to score
            on it. None: train on every pair.
        extra_held_out_fold: the fold left out, in `[0, extra_folds)`.
    """

    model: str = "unet"
    loss: str = "bce"
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"
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
    extra_train_dir: str | None = None
    extra_folds: int | None = None
    extra_held_out_fold: int | None = None

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
        check(self.lr_schedule in LR_SCHEDULES, "lr_schedule", f"one of {LR_SCHEDULES}")
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
            or (str(self.init_from).endswith(".keras") and pathlib.Path(self.init_from).is_file())
            or (pathlib.Path(self.init_from) / "saved_model.pb").is_file(),
            "init_from",
            "None, an existing .keras file or a published SavedModel version directory",
        )
        check(
            self.ema_momentum is None
            or (positive_number(self.ema_momentum) and self.ema_momentum < 1),
            "ema_momentum",
            "None or a number in (0, 1)",
        )
        check(
            self.extra_train_dir is None or isinstance(self.extra_train_dir, str),
            "extra_train_dir",
            "None or a folder path",
        )
        check(
            self.extra_folds is None
            or (self.extra_train_dir is not None and count(self.extra_folds, 2)),
            "extra_folds",
            "None, or an integer >= 2 with extra_train_dir",
        )
        check(
            (self.extra_held_out_fold is None) == (self.extra_folds is None)
            and (self.extra_folds is None or self.extra_held_out_fold in range(self.extra_folds)),
            "extra_held_out_fold",
            "an integer in [0, extra_folds) with extra_folds, and None without",
        )

    @classmethod
    def from_profile(cls, profile="small", **overrides):
        """The one way to build a config: a profile's size, width and batch, then overrides.

        Args:
            profile: a key of `PROFILES`, or a `Profile`.
            **overrides: `TrainConfig` fields; a None value means "not given" and keeps the
                profile's or the dataclass's default.

        Returns:
            The validated `TrainConfig`.

        Raises:
            ValueError: an unknown profile, a name that is not a field, or an invalid value.
        """
        if isinstance(profile, str):
            if profile not in PROFILES:
                raise ValueError(f"profile must be one of {tuple(PROFILES)}, received {profile!r}")
            profile = PROFILES[profile]
        fields = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"not TrainConfig fields: {', '.join(unknown)}")
        chosen = {
            "image_size": profile.image_size,
            "width": profile.width,
            "batch_size": profile.batch_size,
        }
        chosen.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**chosen)

    def save(self, path):
        """Writes the config as JSON.

        Args:
            path: destination file.
        """
        files.write_json(path, dataclasses.asdict(self))

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
