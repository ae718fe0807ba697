"""Augmentation and colour-constancy ablation: PH2 validation decides, ISIC is only reported.

Trains the `small` UNet (96x96, width 1/8, BCE, AdamW lr 1e-4 with weight decay 0.01, batch 12,
final weights after `--epochs`) through `ph2_tf.training.train.train`, as `python -m ph2_tf train
--augment ARM` does, once per arm and seed. Each arm is an augmentation preset of
`ph2_tf.data.augmentation.AUGMENTATIONS`, with or without the `ShadesOfGrey` colour-constancy input
layer. Each model is scored at original resolution, as the serving signature computes it (model
input from `ph2_tf.data.preprocessing`, probabilities resized back, threshold 0.5): mean per-image
Jaccard on PH2 validation (the split to choose on), PH2 test, and the 38 ISIC-2017 images of
`../shared/external/isic2017-dev` (evaluation only, never used to choose).

Every finished run appends one JSON line to `--records`, with its provenance; a rerun skips the
(arm, seed) pairs already there, and an interrupted training resumes from its run directory.

    PH2_MANUAL_DIR=../shared/ph2 python results/augmentation/ablation.py --data-dir /tmp/tfds \\
        --seeds 0 1 2 --records results/augmentation/records.jsonl --runs-dir /tmp/ablation
    python results/augmentation/ablation.py --records results/augmentation/records.jsonl --report
"""

import argparse
import json
import pathlib
import time

import numpy as np

import ph2_tf  # noqa: F401  (first: TensorFlow's oneDNN kernels)
from ph2_tf import provenance
from ph2_tf.data import external, preprocessing
from ph2_tf.evaluation import evaluate
from ph2_tf.evaluation.metrics import compute_metrics
from ph2_tf.models.heads import lesion_probability
from ph2_tf.training import train
from ph2_tf.training.config import TrainConfig
from ph2_tf.training.profiles import PROFILES
from ph2_tf.training.runs import EPOCH_SECONDS

ISIC_DIR = pathlib.Path(__file__).resolve().parents[3] / "shared" / "external" / "isic2017-dev"
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


def jaccard(model, cases, size):
    """Mean per-image Jaccard of the model's masks at each image's original size."""
    predicted = []
    for image, _ in cases:
        logits = model(preprocessing.model_input(image[None], size), training=False)
        probability = np.asarray(lesion_probability(logits))[0, ..., 0]
        predicted.append(evaluate.resize_probability(probability, image.shape[:2]) >= 0.5)
    return compute_metrics([mask for _, mask in cases], predicted)["jaccard"]


def read_records(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def report(records, epochs):
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
        cells = []
        for score in SCORES:
            values = [r[score] for r in chosen if r[score] is not None]
            spread = f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else ""
            cells.append(f"{np.mean(values):.3f}{spread}" if values else "not measured")
        seconds = np.mean([r["train_seconds"] for r in chosen])
        print(
            f"| {arm} | {preset} | {'yes' if colour_constancy else 'no'} | {len(chosen)} | "
            + " | ".join(cells)
            + f" | {seconds:.0f} |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="TFDS data dir with ph2/original (prepared if needed)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", choices=tuple(ARMS), default=list(ARMS))
    parser.add_argument("--epochs", type=int, default=75)
    parser.add_argument("--records", type=pathlib.Path, required=True, help="JSON lines file")
    parser.add_argument("--runs-dir", type=pathlib.Path, help="training run directories")
    parser.add_argument("--report", action="store_true", help="only print the table")
    args = parser.parse_args()
    if args.report:
        report(read_records(args.records), args.epochs)
        return
    if args.runs_dir is None:
        parser.error("--runs-dir is required unless --report")

    profile = PROFILES["small"]
    size = profile.image_size
    evaluation = {
        "ph2_validation": external.ph2_cases("validation", data_dir=args.data_dir),
        "ph2_test": external.ph2_cases("test", data_dir=args.data_dir),
        "isic2017_dev": external.folder_cases(ISIC_DIR),
    }
    done = {(r["arm"], r["seed"]) for r in read_records(args.records)}
    for seed in args.seeds:
        for arm in args.arms:
            if (arm, seed) in done:
                continue
            preset, colour_constancy = ARMS[arm]
            origin = provenance.collect()  # before the run: the code that runs
            cfg = TrainConfig(
                model="unet",
                loss="bce",
                learning_rate=1e-4,
                epochs=args.epochs,
                image_size=size,
                width=profile.width,
                batch_size=profile.batch_size,
                seed=seed,
                augment=preset,
                colour_constancy=colour_constancy,
                data_dir=args.data_dir,
                out_dir=str(args.runs_dir / arm / f"seed{seed}"),
            )
            start = time.perf_counter()
            model, history = train.train(cfg, verbose=0)
            record = {
                "arm": arm,
                "seed": seed,
                "augment": preset,
                "colour_constancy": colour_constancy,
                "epochs": args.epochs,
                "train_seconds": round(sum(history[EPOCH_SECONDS]), 1),
                "wall_seconds": round(time.perf_counter() - start, 1),
                "final_train_loss": history["loss"][-1],
            }
            for name, cases in evaluation.items():
                record[name] = jaccard(model, cases, size) if cases else None
            record["provenance"] = origin
            print(json.dumps({k: v for k, v in record.items() if k != "provenance"}), flush=True)
            with args.records.open("a") as records:
                records.write(json.dumps(record) + "\n")
    report(read_records(args.records), args.epochs)


if __name__ == "__main__":
    main()
