#!/usr/bin/env bash
# Kill-and-resume against an uninterrupted run with the same seed, on the real PH2 data:
# `small` profile UNet, BCE, lr 1e-4, 4 epochs, seed 0. Run from the repository root with
# PH2_MANUAL_DIR set; writes uninterrupted/ and resumed/ (log.csv and config.json) here.
set -euo pipefail
here=results/resume-check
work=$(mktemp -d)
common=(--model unet --epochs 4 --seed 0 --data-dir "$work/tfds" --out-dir)
python -m ph2_tf train "${common[@]}" "$work/uninterrupted"
python - "$work" <<'PY'
import dataclasses, sys
from ph2_tf.training import train
work = sys.argv[1]
cfg = train.TrainConfig.load(f"{work}/uninterrupted/config.json")
dataclasses.replace(cfg, out_dir=f"{work}/resumed").save(f"{work}/resumed.json")
PY
# tests/scripts/train_run.py SIGKILLs itself after epoch 2 when given a third argument.
python tests/scripts/train_run.py "$work/resumed.json" "$work/w.npz" 2 || true
python tests/scripts/train_run.py "$work/resumed.json" "$work/w.npz"
for run in uninterrupted resumed; do
  mkdir -p "$here/$run" && cp "$work/$run/log.csv" "$work/$run/config.json" "$here/$run/"
done
python - <<'PY'
from ph2_tf.training import train
a, b = (train.read_log(f"results/resume-check/{r}") for r in ("uninterrupted", "resumed"))
for key in ("loss", "val_loss", "val_jaccard"):
    print(f"{key:12s} uninterrupted {[round(x, 5) for x in a[key]]}")
    print(f"{'':12s} resumed       {[round(x, 5) for x in b[key]]}")
PY
