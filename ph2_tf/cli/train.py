"""`train`: one training run into its run directory."""

import argparse
import json
import pathlib

from ph2_tf.cli.common import add_data_args, fail
from ph2_tf.data.augmentation import AUGMENTATIONS
from ph2_tf.training.profiles import PROFILES


def add_parser(commands):
    """Adds the `train` command to `commands`, the parent parser's subparsers."""
    train = commands.add_parser("train", help="train a model; writes a run directory")
    train.add_argument("--model", choices=("unet", "segnet"), default="unet")
    train.add_argument(
        "--loss", default="bce", help="loss name from ph2_tf.training.losses (default bce)"
    )
    train.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    train.add_argument("--epochs", type=int, default=50)
    train.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="small",
        help="image size, width and batch size preset (overridable below)",
    )
    train.add_argument("--image-size", type=int, help="square training size in pixels")
    train.add_argument("--width", type=float, help="filter-count multiplier")
    train.add_argument("--batch-size", type=int, help="global batch size")
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--augment",
        nargs="?",
        const="all",
        default="none",
        choices=tuple(AUGMENTATIONS),
        help="training augmentation preset (default none; --augment alone: all); see "
        "ph2_tf/data/augmentation.py and results/augmentation/",
    )
    train.add_argument(
        "--colour-constancy",
        action="store_true",
        help="start the model with shades-of-grey colour normalisation (also when served)",
    )
    train.add_argument(
        "--jit-compile",
        action=argparse.BooleanOptionalAction,
        help="compile the training step with XLA, or not (default: Keras' auto, which is XLA "
        "under JAX, and under TensorFlow on GPUs without op determinism)",
    )
    train.add_argument(
        "--precision",
        default="float32",
        help="Keras dtype policy: float32 (the study's) or mixed_bfloat16",
    )
    train.add_argument(
        "--no-deterministic",
        dest="deterministic",
        action="store_false",
        help="do not enable TensorFlow op determinism",
    )
    train.add_argument(
        "--init-from",
        help="start from the weights of this .keras file (another run's best.keras, same "
        "model) and train --epochs more, with a fresh optimizer",
    )
    train.add_argument(
        "--ema-momentum",
        type=float,
        help="validate, checkpoint and finish with a moving average of the weights that "
        "each step updates with this momentum (e.g. 0.99); default: no averaging",
    )
    train.add_argument(
        "--out-dir", help="run directory (default results/<model>_<loss>_lr<lr>_e<epochs>)"
    )
    add_data_args(train)


def run(args):
    """`train` command: trains and prints the run directory and the best val_jaccard.

    Returns:
        0; 2 for invalid arguments (checked before any data is read or file written); 1 when
        training diverged (non-finite loss or weights).
    """
    from ph2_tf.training import train
    from ph2_tf.training.callbacks import TrainingDivergedError
    from ph2_tf.training.config import TrainConfig
    from ph2_tf.training.runs import BEST_MODEL_FILE, MONITOR

    out_dir = args.out_dir or f"results/{args.model}_{args.loss}_lr{args.lr:g}_e{args.epochs}"
    try:
        cfg = TrainConfig.from_profile(
            args.profile,
            model=args.model,
            loss=args.loss,
            learning_rate=args.lr,
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
            out_dir=out_dir,
            deterministic=args.deterministic,
            precision=args.precision,
            jit_compile=args.jit_compile,
            init_from=args.init_from,
            ema_momentum=args.ema_momentum,
        )
    except ValueError as e:
        return fail(args, e)
    try:
        _, history = train.train(cfg)
    except TrainingDivergedError as e:
        kept = pathlib.Path(out_dir) / BEST_MODEL_FILE
        saved = f"{kept} holds the best earlier epoch." if kept.exists() else "No model saved."
        return fail(args, f"training diverged: {e}. {saved}", status=1)
    best = max(history[MONITOR])
    print(json.dumps({"run_dir": out_dir, "best_" + MONITOR: best}))
    return 0
