"""`train`: one training run into its run directory, or the runs of one stage of a recipe."""

import argparse
import dataclasses
import json
import pathlib
import sys

from ph2_tf.cli.common import add_data_args, fail
from ph2_tf.data.augmentation import AUGMENTATIONS
from ph2_tf.training.profiles import PROFILES


def add_parser(commands):
    """Adds the `train` command to `commands`, the parent parser's subparsers.

    The options that set the training default to None ("not given"): `TrainConfig` supplies
    their defaults, and with `--config` any of them given is refused, since the recipe sets
    them all.
    """
    train = commands.add_parser(
        "train",
        help="train a model; writes a run directory",
        description="Trains one run from the options below, or with --config and --stage the "
        "runs of one stage of a recipe (configs/README.md), under --runs-root.",
    )
    settings = {}  # dest -> option string, of every option a recipe sets

    def setting(*flags, **kwargs):
        action = train.add_argument(*flags, **kwargs)
        settings[action.dest] = action.option_strings[0]

    setting("--model", choices=("unet", "segnet"), help="default unet")
    setting("--loss", help="loss name from ph2_tf.training.losses (default bce)")
    setting("--lr", type=float, help="AdamW learning rate (default 1e-4)")
    setting(
        "--lr-schedule",
        help="constant (default) or cosine: each epoch's rate half a cosine from --lr towards 0",
    )
    setting("--epochs", type=int, help="default 50")
    setting(
        "--profile",
        choices=sorted(PROFILES),
        help="image size, width and batch size preset (default small; overridable below)",
    )
    setting("--image-size", type=int, help="square training size in pixels")
    setting("--width", type=float, help="filter-count multiplier")
    setting("--batch-size", type=int, help="global batch size")
    setting("--weight-decay", type=float, help="AdamW weight decay (default 0.01)")
    setting(
        "--augment",
        nargs="?",
        const="all",
        choices=tuple(AUGMENTATIONS),
        help="training augmentation preset (default none; --augment alone: all); see "
        "ph2_tf/data/augmentation.py and results/augmentation/",
    )
    setting(
        "--colour-constancy",
        action="store_true",
        default=None,
        help="start the model with shades-of-grey colour normalisation (also when served)",
    )
    setting(
        "--jit-compile",
        action=argparse.BooleanOptionalAction,
        help="compile the training step with XLA, or not (default: Keras' auto, which is XLA "
        "under JAX, and under TensorFlow on GPUs without op determinism)",
    )
    setting(
        "--precision", help="Keras dtype policy: float32 (the study's, default) or mixed_bfloat16"
    )
    setting(
        "--no-deterministic",
        dest="deterministic",
        action="store_false",
        default=None,
        help="do not enable TensorFlow op determinism",
    )
    setting(
        "--init-from",
        help="start from the weights of this .keras file (another run's best.keras, same "
        "model) or published version (e.g. saved_models/ph2_unet/8) and train --epochs more, "
        "with a fresh optimizer",
    )
    setting(
        "--extra-train-dir",
        help="an ISIC-layout folder (images/, masks/) to train on beside PH2's train split; "
        "the model is then not PH2-only",
    )
    setting(
        "--extra-folds",
        type=int,
        help="with --extra-train-dir: split its pairs into this many folds (pair i in fold "
        "i %% k, in name order) and leave --extra-held-out-fold out",
    )
    setting("--extra-held-out-fold", type=int, help="with --extra-folds: the fold left out")
    setting(
        "--ema-momentum",
        type=float,
        help="validate, checkpoint and finish with a moving average of the weights that "
        "each step updates with this momentum (e.g. 0.99); default: no averaging",
    )
    setting(
        "--out-dir",
        help="run directory (default: runs/<model>-<loss>-lr<lr>-e<epochs>-seed<seed>-<size>px-"
        "w<width>-<augment>-<digest of every other setting>)",
    )
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace what an earlier run wrote in the run directory (by default a finished run "
        "is skipped, an interrupted one resumes, and another config's run is refused)",
    )
    train.add_argument(
        "--seed",
        type=int,
        help="seed for weights, shuffling and augmentation (default 0); with --config, which "
        "of the stage's seeds to train (default: each in turn)",
    )
    recipe = train.add_argument_group("recipe (configs/README.md)")
    recipe.add_argument("--config", help="a recipe file, e.g. configs/ph2_segnet.json")
    recipe.add_argument(
        "--stage",
        help="with --config: the stage to train; its init_from stage must have finished. "
        "Finished runs are skipped and interrupted ones resume",
    )
    recipe.add_argument(
        "--runs-root",
        help="with --config: where runs go, as <runs-root>/<recipe name>/<stage>[-seed<k>] "
        "(default runs)",
    )
    train.set_defaults(recipe_settings=settings)
    add_data_args(train)


def run(args):
    """`train` command: trains and prints one JSON line per run with its best val_jaccard.

    Returns:
        0; 2 for invalid arguments or recipe (checked before any data is read or file
        written); 1 when training diverged (non-finite loss or weights).
    """
    from ph2_tf.training.config import TrainConfig
    from ph2_tf.training.runs import default_out_dir

    if args.config is None:
        for option, value in (("--stage", args.stage), ("--runs-root", args.runs_root)):
            if value is not None:
                return fail(args, f"{option} needs --config, the recipe it refers to")
        try:
            cfg = TrainConfig.from_profile(
                args.profile or "small",
                model=args.model,
                loss=args.loss,
                learning_rate=args.lr,
                lr_schedule=args.lr_schedule,
                epochs=args.epochs,
                image_size=args.image_size,
                width=args.width,
                batch_size=args.batch_size,
                weight_decay=args.weight_decay,
                seed=args.seed,
                augment=args.augment,
                colour_constancy=args.colour_constancy,
                data_dir=args.data_dir,
                manual_dir=args.manual_dir,
                out_dir=args.out_dir,
                deterministic=args.deterministic,
                precision=args.precision,
                jit_compile=args.jit_compile,
                init_from=args.init_from,
                ema_momentum=args.ema_momentum,
                extra_train_dir=args.extra_train_dir,
                extra_folds=args.extra_folds,
                extra_held_out_fold=args.extra_held_out_fold,
            )
        except ValueError as e:
            return fail(args, e)
        if args.out_dir is None:
            cfg = dataclasses.replace(cfg, out_dir=default_out_dir(cfg))
        return _train(args, cfg)
    return _train_stage(args)


def _train_stage(args):
    """`train --config --stage`: each (or the chosen) run of one stage of a recipe."""
    from ph2_tf.training import recipes
    from ph2_tf.training.runs import run_state

    given = [flag for dest, flag in args.recipe_settings.items() if getattr(args, dest) is not None]
    if given:
        return fail(
            args,
            f"{given[0]} cannot be combined with --config: the recipe sets the training "
            f"(edit {args.config}, or train without --config)",
        )
    if args.stage is None:
        return fail(args, "--config needs --stage, the stage to train")
    runs_root = args.runs_root or recipes.DEFAULT_RUNS_ROOT
    try:
        recipe = recipes.load(args.config)
        stage = recipe.stage(args.stage)
        if args.seed is not None and args.seed not in stage.seeds:
            return fail(
                args,
                f"--seed {args.seed} is not a seed of stage {stage.name!r} in {args.config} "
                f"(its seeds: {', '.join(map(str, stage.seeds))})",
            )
        if stage.init_from is not None:
            recipes.require_trained(recipe, stage.init_from, runs_root)
        configs = [
            cfg
            for cfg in recipes.stage_configs(
                recipe,
                stage.name,
                runs_root,
                data_dir=args.data_dir,
                manual_dir=args.manual_dir,
            )
            if args.seed is None or cfg.seed == args.seed
        ]
        if not args.overwrite:
            for cfg in configs:  # every run checked before the first trains
                run_state(cfg)
    except ValueError as error:
        return fail(args, error)
    for cfg in configs:
        status = _train(args, cfg)
        if status:
            return status
    return 0


def _train(args, cfg):
    """Trains `cfg`, or skips it if finished, and prints its run directory and best val_jaccard
    as one JSON line."""
    from ph2_tf.training import train
    from ph2_tf.training.callbacks import TrainingDivergedError
    from ph2_tf.training.runs import BEST_MODEL_FILE, RunDirError, read_log, run_state
    from tfds_ph2.ph2 import Ph2DataError, Ph2FileNotFoundError

    try:
        if not args.overwrite and run_state(cfg) == "finished":
            print(
                f"{cfg.out_dir}: already trained, skipped (--overwrite trains it again)",
                file=sys.stderr,
            )
            _report(cfg.out_dir, read_log(cfg.out_dir))
            return 0
        _, history = train.train(cfg, overwrite=args.overwrite)
    except RunDirError as e:
        return fail(args, e)
    except (Ph2DataError, Ph2FileNotFoundError) as e:
        # The first line says what is wrong; the rest of a missing-data message is instructions.
        return fail(args, str(e).splitlines()[0])
    except TrainingDivergedError as e:
        kept = pathlib.Path(cfg.out_dir) / BEST_MODEL_FILE
        saved = f"{kept} holds the best earlier epoch." if kept.exists() else "No model saved."
        return fail(args, f"training diverged: {e}. {saved}", status=1)
    _report(cfg.out_dir, history)
    return 0


def _report(run_dir, history):
    """Prints a run's directory and best val_jaccard as one JSON line."""
    from ph2_tf.training.runs import MONITOR

    print(json.dumps({"run_dir": str(run_dir), "best_" + MONITOR: max(history[MONITOR])}))
