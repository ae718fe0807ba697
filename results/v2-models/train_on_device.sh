#!/usr/bin/env bash
# Version-2 candidates on the GPU machine (Keras on JAX, no TensorFlow), all at once, beside the
# reference grid in the same device call: compact models (256x256, width 1/4) with colour
# constancy, each keeping its best-validation checkpoint. Choosing among them (PH2 validation
# only) and publishing happen back on a machine with TensorFlow:
#
#   python -m ph2_tf export --run-dir RUN --model-name ph2_unet --base-dir saved_models --if-better
#
# On the device, from the repository root, after the carried wheels are installed
# (benchmarks/device/REFERENCE_GRID.md):
#
#   bash results/v2-models/train_on_device.sh
#
# Writes to $OUT one v2-<name>.tar.gz per candidate: its config, per-epoch log, training output
# and best.keras without the optimizer state (so that the compact models stay under the 16 MiB a
# returned file may have), plus the provenance of the call.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
: "${OUT:?OUT must name the folder for the results}"

# model loss learning-rate epochs augmentation [seed, default 0] [weight-averaging momentum,
# default none: `train --ema-momentum`], one candidate per line. The
# default: other seeds of version 3's UNet recipe (is its ISIC score the recipe's or the seed's?)
# and version 3's SegNet recipe trained longer (it was still improving at epoch 98 of 100),
# with the weight averaging that steadied version 5's validation on the CPU.
# Version 3 came from "unet bce 1e-4 150 none|all" and "segnet soft_bce 1e-4 100 none|all".
CANDIDATES=${CANDIDATES:-"unet bce 1e-4 150 none 1
unet bce 1e-4 150 none 2
segnet soft_bce 1e-4 200 all 0 0.99
segnet soft_bce 1e-4 200 all 1 0.99"}
V2_TIMEOUT=${V2_TIMEOUT:-500}   # seconds; a candidate stopped here keeps its best epoch so far
V2_ARGS=${V2_ARGS:-}            # appended to every `train`, e.g. for a small CPU dry run
DATA_DIR=${DATA_DIR:-.device_data}
V2_WORK=${V2_WORK:-/tmp/v2}

run() {
  local start=$SECONDS names=() pids=() model loss lr epochs augment seed ema name ema_args
  export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false
  mkdir -p "$V2_WORK"
  while read -r model loss lr epochs augment seed ema; do
    seed=${seed:-0}
    name="$model-$loss-lr$lr-e$epochs-augment_$augment-colour_constancy"
    [ "$seed" = 0 ] || name+="-seed$seed"
    ema_args=()
    if [ -n "$ema" ]; then
      name+="-ema$ema"
      ema_args=(--ema-momentum "$ema")
    fi
    echo "== $(date -u +%H:%M:%S) $name"
    # shellcheck disable=SC2086  # V2_ARGS is a list of options
    timeout "$V2_TIMEOUT" python3 -m ph2_tf train --profile compact --model "$model" \
      --loss "$loss" --lr "$lr" --epochs "$epochs" --augment "$augment" --seed "$seed" \
      --colour-constancy "${ema_args[@]}" --data-dir "$DATA_DIR" --out-dir "$V2_WORK/$name" $V2_ARGS \
      > "$V2_WORK/$name.out" 2>&1 &
    names+=("$name")
    pids+=($!)
  done <<< "$CANDIDATES"
  for index in "${!pids[@]}"; do
    wait "${pids[$index]}"
    echo "${names[$index]}: exit status $? (124: stopped at its limit) after $((SECONDS - start)) s"
  done
  python3 -c 'import json, sys; from ph2_tf import provenance
json.dump(provenance.collect(), open(sys.argv[1], "w"), indent=2)' "$V2_WORK/provenance.json"
  for name in "${names[@]}"; do
    tail -n 2 "$V2_WORK/$name.out"
    # Without the AdamW slots: a third of the size, and all that export needs.
    python3 -c 'import sys, keras, ph2_tf.models
keras.saving.load_model(sys.argv[1], compile=False).save(sys.argv[1])' "$V2_WORK/$name/best.keras" \
      || echo "$name: no best.keras to bring back"
    cp "$V2_WORK/provenance.json" "$V2_WORK/$name/"
    tar -czf "$OUT/v2-$name.tar.gz" -C "$V2_WORK" --exclude=backup "$name" "$name.out"
  done
  echo "v2: done after $((SECONDS - start)) s"
  ls -l "$OUT"
}

run 2>&1 | tee "$OUT/v2.log"
