#!/usr/bin/env bash
# One device call of the full-size reference run: the study's 15 configurations x 3 seeds at
# 256x256, full width, float32, on Keras' JAX backend. Resumable across calls and leases.
#
#   bash benchmarks/device/run_reference_grid.sh      # on the device, from the repository root
#
# Carry: .whl and .device_data (prepare_grid_data.sh), and .device_results when an earlier call
# brought back results not yet committed to results/<run name>/ (committed records travel); what
# does not fit in one call is staged on the machine first (environment.sh, stage.sh).
# Writes to $OUT: grid.log, <run name>.tar.gz (records, per-seed logs, the tuner processes'
# logs; no models) and jax-cache.tar.gz (the compiled programs, when under 15 MiB gzipped).
#
# The configurations are split into GRID_GROUPS, one tuner process per group, all on the one GPU
# at once: while one process compiles a program, validates, evaluates or saves, the others train,
# which keeps the GPU busy where a single process would leave it idle for those. Every process
# is given the records of all seeds finished before, and skips them, so each call continues
# where the last stopped whatever the grouping; a seed cut off by GRID_TIMEOUT is trained again
# from its start (with --no-checkpoints there is no mid-seed backup to resume from).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
: "${OUT:?OUT must name the folder for the results}"
. benchmarks/device/environment.sh

RUN_NAME=${RUN_NAME:-reference-grid-full-seeds3}
GRID_TIMEOUT=${GRID_TIMEOUT:-500}   # seconds of tuning, leaving time to pack within timeout_s
TUNER_ARGS=${TUNER_ARGS:---profile full --seeds 3 --precision float32 --no-checkpoints}
# Four groups of about equal GPU time per seed (UNet epochs cost ~1.4x SegNet's at full size).
GRID_GROUPS=${GRID_GROUPS:-"unet-bce-lr0.0001-e75 unet-bce-lr0.0001-e30 segnet-bce-lr1e-05-e15 segnet-bce-lr0.0001-e15 segnet-bce-lr0.001-e15 segnet-bce-lr0.01-e15;\
unet-bce-lr0.0001-e50 unet-cross_entropy-lr0.0001-e50 unet-dice-lr1e-05-e50;\
unet-soft_bce-lr1e-05-e50 unet-soft_bce-lr0.0001-e50 segnet-dice-lr0.0001-e10;\
segnet-dice-lr1e-05-e50 segnet-soft_bce-lr1e-05-e50 segnet-soft_bce-lr0.0001-e50"}
WORK=${WORK:-/tmp/grid}             # the results folders of the run on the device
# What earlier calls brought back, if anything: carried now, or staged by an earlier call.
RESUME_DIR=${RESUME_DIR:-$(carried .device_results || echo .device_results)}
JAX_CACHE=$HOME/.cache/ph2-seg/jax  # ph2_tf.training.accelerators.DEFAULT_JAX_CACHE_DIR

run() {
  local start=$SECONDS
  # The wheels, DATA_DIR, and the commit every record carries (see REFERENCE_GRID.md).
  device_environment || return 1
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  local merged=$WORK/$RUN_NAME
  mkdir -p "$merged/records" "$merged/logs" "$JAX_CACHE"
  if [ -f "$RESUME_DIR/$RUN_NAME.tar.gz" ]; then
    tar -xzf "$RESUME_DIR/$RUN_NAME.tar.gz" -C "$WORK"
  fi
  # Records committed to the repository (results/<run name>/records) travel with the tree.
  cp -n "results/$RUN_NAME/records/"*.json "$merged/records/" 2>/dev/null
  echo "resumed: $(ls "$merged/records" | wc -l) seed records from earlier calls"
  [ -f "$RESUME_DIR/jax-cache.tar.gz" ] && tar -xzf "$RESUME_DIR/jax-cache.tar.gz" -C "$JAX_CACHE"

  local call groups group worker pids=()
  call=$(date -u +%Y%m%dT%H%M%S)
  IFS=';' read -ra groups <<< "$GRID_GROUPS"
  for worker in "${!groups[@]}"; do
    group=${groups[$worker]}
    mkdir -p "$WORK/worker$worker/$RUN_NAME/records"
    cp "$merged/records/"*.json "$WORK/worker$worker/$RUN_NAME/records/" 2>/dev/null
    echo "== $(date -u +%H:%M:%S) worker $worker: tuner_search.py $TUNER_ARGS --only $group"
    # shellcheck disable=SC2086  # TUNER_ARGS and the group are lists of words
    timeout "$GRID_TIMEOUT" "$PYTHON" tuner_search.py $TUNER_ARGS --only $group \
      --data-dir "$DATA_DIR" --results-dir "$WORK/worker$worker" --run-name "$RUN_NAME" \
      --no-export > "$merged/logs/$call-worker$worker.log" 2>&1 &
    pids+=($!)
  done
  for worker in "${!pids[@]}"; do
    wait "${pids[$worker]}"
    echo "worker $worker: exit status $? (124: stopped at its limit) after $((SECONDS - start)) s"
  done

  # Merge: the records and per-seed logs of every worker; models and tuner state stay behind
  # (0.1-0.4 GB per full-size model, over what a call brings back), and so do each worker's
  # settings of its own group (search.json) and a lock left by a worker stopped at its limit.
  for worker in "${!groups[@]}"; do
    tar -cf - -C "$WORK/worker$worker/$RUN_NAME" --exclude='*.keras' --exclude='*.h5' \
      --exclude=backup --exclude=tuner --exclude='*.png' --exclude='comparison.*' \
      --exclude=run.log --exclude=search.json --exclude=.lock . | tar -xf - -C "$merged"
  done
  echo "records: $(ls "$merged/records" | wc -l) of 45"
  tail -n 3 "$merged/logs/$call"-worker*.log
  tar -czf "$OUT/$RUN_NAME.tar.gz" -C "$WORK" "$RUN_NAME"
  tar -czf "$OUT/jax-cache.tar.gz" -C "$JAX_CACHE" .
  if [ "$(du -sm "$OUT/jax-cache.tar.gz" | cut -f1)" -ge 15 ]; then
    echo "jax cache $(du -sh "$OUT/jax-cache.tar.gz" | cut -f1) gzipped: too big to bring back"
    rm "$OUT/jax-cache.tar.gz"
  fi
  echo "grid: done after $((SECONDS - start)) s"
  ls -l "$OUT"
}

run 2>&1 | tee "$OUT/grid.log"
