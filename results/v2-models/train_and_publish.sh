#!/usr/bin/env bash
# Trains a version-2 model at the `compact` profile (256x256, width 1/4) with the augmentation
# chosen on PH2 validation (results/augmentation/), publishes it to saved_models/ only if it
# beats the served version through its serving signature on the validation split, and keeps
# the run's config and per-epoch log here. Resumable: rerun the same command after a kill.
#
#   PH2_MANUAL_DIR=../shared/ph2 bash results/v2-models/train_and_publish.sh unet bce 1e-4 75 all
#
# Arguments: model loss lr epochs augmentation [extra `train` flags, e.g. --colour-constancy].
set -euo pipefail
model=$1 loss=$2 lr=$3 epochs=$4 augment=$5
shift 5
data_dir=${DATA_DIR:-/tmp/tfds}
runs_dir=${RUNS_DIR:-/tmp/v2-runs}
name="${model}-${loss}-lr${lr}-e${epochs}-augment_${augment}"
if [[ " $* " == *" --colour-constancy "* ]]; then name+="-colour_constancy"; fi
here=$(dirname "$0")
python -m ph2_tf train --profile compact --model "$model" --loss "$loss" --lr "$lr" \
  --epochs "$epochs" --augment "$augment" "$@" --data-dir "$data_dir" \
  --out-dir "$runs_dir/$name"
mkdir -p "$here/$name"
cp "$runs_dir/$name/config.json" "$runs_dir/$name/log.csv" "$here/$name/"
python -m ph2_tf export --run-dir "$runs_dir/$name" --model-name "ph2_$model" \
  --base-dir saved_models --if-better --data-dir "$data_dir" | tee "$here/$name/publish.json"
