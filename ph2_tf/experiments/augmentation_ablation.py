"""Augmentation and colour-constancy ablation: PH2 validation decides, ISIC is only reported.

Trains the `small` UNet (96x96, width 1/8, BCE, AdamW lr 1e-4 with weight decay 0.01, batch 12,
final weights after `--epochs`) through `ph2_tf.training.train.train`, as `ph2-seg train
--augment ARM` does, once per arm and seed. Each arm is an augmentation preset of
`ph2_tf.data.augmentation.AUGMENTATIONS`, with or without the `ShadesOfGrey` colour-constancy input
layer. Each model is scored at original resolution as the serving signature computes it
(`ph2_tf.evaluation.scoring`, threshold 0.5): mean per-image Jaccard on PH2 validation (the split
to choose on), PH2 test, and the 38 ISIC-2017 images of `--isic-dir` (evaluation only, never used
to choose).

Every finished run appends one JSON line to `--records`, with its provenance; a rerun skips the
(arm, seed) pairs already there, and an interrupted training resumes from its run directory.
The recorded runs trained with TensorFlow's oneDNN kernels, which `ph2-seg` turns on and a
module run with `python -m` does not: set `TF_ENABLE_ONEDNN_OPTS=1` for them.

    PH2_MANUAL_DIR=../shared/ph2 TF_ENABLE_ONEDNN_OPTS=1 \\
        python -m ph2_tf.experiments.augmentation_ablation --data-dir /tmp/tfds --seeds 0 1 2 \\
        --records results/augmentation/records.jsonl --runs-dir /tmp/ablation
    python -m ph2_tf.experiments.augmentation_ablation \\
        --records results/augmentation/records.jsonl --report
"""

import argparse
import json
import pathlib
import time

import numpy as np

from ph2_tf import provenance
from ph2_tf.data import external
from ph2_tf.evaluation import scoring
from ph2_tf.training import train
from ph2_tf.training.config import TrainConfig
from ph2_tf.training.runs import EPOCH_SECONDS

PROFILE = "small"
# Arm name: (augmentation preset, colour-constancy layer).
ARMS = {
    "none": ("none", False),
    "flips": ("flips", False),
    "geometric": ("geometric", False),
    "photometric": ("photometric", False),
    "all": ("all", False),
    "all_vignette": ("all_vignette", False),
    "colour_constancy": ("none", True),
    "all+colour_constancy": ("all", True),
}
SCORES = ("ph2_validation", "ph2_test", "isic2017_dev")


def read_records(path):
    """The records of a JSON lines file; none if it does not exist yet."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def report(records, epochs):
    """Prints the Markdown table of the arms that have records."""
    seeds = sorted({r["seed"] for r in records})
    print(f"UNet `small` profile (96x96, width 1/8), BCE, lr 1e-4, {epochs} epochs, final weights;")
    print(f"seeds {seeds}. Mean per-image Jaccard at original resolution, mean ± sample std")
    print("(ddof 1) over seeds. Choose on PH2 validation; ISIC-2017 dev is evaluation only.\n")
    print("| arm | augmentation | colour constancy | seeds | PH2 validation | PH2 test |", end="")
    print(" ISIC-2017 dev (38 images) | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for arm, (preset, colour_constancy) in ARMS.items():
        chosen = [r for r in records if r["arm"] == arm]
        if not chosen:
            continue
        cells = [scoring.over_seeds([r[score] for r in chosen]) for score in SCORES]
        seconds = np.mean([r["train_seconds"] for r in chosen])
        print(
            f"| {arm} | {preset} | {'yes' if colour_constancy else 'no'} | {len(chosen)} | "
            + " | ".join(cells)
            + f" | {seconds:.0f} |"
        )


def run_arm(arm, seed, *, epochs, data_dir, runs_dir, image_sets):
    """Trains one arm with one seed and scores it; returns its record."""
    preset, colour_constancy = ARMS[arm]
    origin = provenance.collect()  # before the run: the code that runs
    cfg = TrainConfig.from_profile(
        PROFILE,
        model="unet",
        loss="bce",
        learning_rate=1e-4,
        epochs=epochs,
        seed=seed,
        augment=preset,
        colour_constancy=colour_constancy,
        data_dir=data_dir,
        out_dir=str(runs_dir / arm / f"seed{seed}"),
    )
    start = time.perf_counter()
    model, history = train.train(cfg, verbose=0)
    record = {
        "arm": arm,
        "seed": seed,
        "augment": preset,
        "colour_constancy": colour_constancy,
        "epochs": epochs,
        "train_seconds": round(sum(history[EPOCH_SECONDS]), 1),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "final_train_loss": history["loss"][-1],
    }
    record.update(scoring.mean_jaccards(scoring.keras_predictor(model, cfg.image_size), image_sets))
    record["provenance"] = origin
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m ph2_tf.experiments.augmentation_ablation",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--data-dir", help="TFDS data dir with ph2/original (prepared if needed)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", choices=tuple(ARMS), default=list(ARMS))
    parser.add_argument("--epochs", type=int, default=75)
    parser.add_argument("--records", type=pathlib.Path, required=True, help="JSON lines file")
    parser.add_argument("--runs-dir", type=pathlib.Path, help="training run directories")
    parser.add_argument(
        "--isic-dir", type=pathlib.Path, default=external.ISIC2017_DEV_DIR, help="ISIC images"
    )
    parser.add_argument("--report", action="store_true", help="only print the table")
    args = parser.parse_args(argv)
    if args.report and not args.records.is_file():
        parser.error(f"--records {args.records} does not exist: nothing to report")
    if not args.report and args.runs_dir is None:
        parser.error("--runs-dir is required unless --report")
    if not args.report:
        image_sets = external.evaluation_sets(data_dir=args.data_dir, isic_dir=args.isic_dir)
        done = {(r["arm"], r["seed"]) for r in read_records(args.records)}
        for seed in args.seeds:
            for arm in (arm for arm in args.arms if (arm, seed) not in done):
                record = run_arm(
                    arm,
                    seed,
                    epochs=args.epochs,
                    data_dir=args.data_dir,
                    runs_dir=args.runs_dir,
                    image_sets=image_sets,
                )
                shown = {k: v for k, v in record.items() if k != "provenance"}
                print(json.dumps(shown), flush=True)
                with args.records.open("a") as records:
                    records.write(json.dumps(record) + "\n")
    report(read_records(args.records), args.epochs)


if __name__ == "__main__":
    main()
