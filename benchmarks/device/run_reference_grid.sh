#!/usr/bin/env bash
# One device call of the full-size reference run: the study's 15 configurations x 3 seeds at
# 256x256, full width, float32, on Keras' JAX backend. Resumable across calls and sessions.
#
#   bash benchmarks/device/run_reference_grid.sh      # on the device, from the repository root
#
# Carry: .whl and .device_data (prepare_grid_data.sh), and .device_results once an earlier call
# brought results back. Writes to $OUT: log, <run name>.tar.gz (records, logs, tuner state,
# tables; no models) and jax-cache.tar (the compiled programs, when under 15 MiB).
# The tuner skips every seed whose record exists, so each call continues where the last
# stopped; a seed cut off by GRID_TIMEOUT is trained again from its start by the next call.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
: "${OUT:?OUT must name the folder for the results}"

RUN_NAME=${RUN_NAME:-reference-grid-full-seeds3}
GRID_TIMEOUT=${GRID_TIMEOUT:-500}   # seconds of tuning, leaving time to pack within timeout_s
TUNER_ARGS=${TUNER_ARGS:---profile full --seeds 3 --precision float32}
DATA_DIR=${DATA_DIR:-.device_data}
SITE=${SITE:-/tmp/site}             # where the carried wheels are installed
WORK=${WORK:-/tmp/grid}             # the results folder of the run on the device
JAX_CACHE=$HOME/.cache/ph2-seg/jax  # ph2_tf.accelerators.DEFAULT_JAX_CACHE_DIR

run() {
  local start=$SECONDS
  if [ -z "${SKIP_INSTALL:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" .whl/*.whl || return 1
    export PYTHONPATH=$SITE:$PWD
  fi
  export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax
  # The copy on the device is no git checkout: the commit comes from the file written before the
  # call (see REFERENCE_GRID.md), and every record carries it.
  if [ -f "$DATA_DIR/SOURCE_COMMIT" ]; then
    read -r PH2_GIT_COMMIT PH2_GIT_DIRTY < "$DATA_DIR/SOURCE_COMMIT"
    export PH2_GIT_COMMIT PH2_GIT_DIRTY
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  mkdir -p "$WORK" "$JAX_CACHE"
  if [ -f ".device_results/$RUN_NAME.tar.gz" ]; then
    tar -xzf ".device_results/$RUN_NAME.tar.gz" -C "$WORK"
    echo "resumed: $(ls "$WORK/$RUN_NAME/records" | wc -l) seed records from an earlier call"
  fi
  [ -f .device_results/jax-cache.tar ] && tar -xf .device_results/jax-cache.tar -C "$JAX_CACHE"

  echo "== $(date -u +%H:%M:%S) tuner_search.py $TUNER_ARGS (limit ${GRID_TIMEOUT}s)"
  # shellcheck disable=SC2086  # TUNER_ARGS is a list of options
  timeout "$GRID_TIMEOUT" python3 tuner_search.py $TUNER_ARGS --data-dir "$DATA_DIR" \
    --results-dir "$WORK" --run-name "$RUN_NAME" --no-export
  echo "tuner: exit status $? (124: stopped at its limit) after $((SECONDS - start)) s"
  echo "records: $(ls "$WORK/$RUN_NAME/records" | wc -l) of 45"

  # Models, the tuner's trial checkpoints and in-seed backups stay behind: 0.1-0.4 GB each at
  # full size, over what a call brings back.
  tar -czf "$OUT/$RUN_NAME.tar.gz" -C "$WORK" --exclude='*.keras' --exclude='*.h5' \
    --exclude=backup "$RUN_NAME"
  if [ "$(du -sm "$JAX_CACHE" | cut -f1)" -lt 15 ]; then
    tar -cf "$OUT/jax-cache.tar" -C "$JAX_CACHE" .
  else
    echo "jax cache $(du -sh "$JAX_CACHE" | cut -f1): too big to bring back"
  fi
  ls -l "$OUT"
}

run 2>&1 | tee "$OUT/log"
