#!/usr/bin/env bash
# One device call that trains stages of a declared experiment (configs/experiments/) with
# run_experiment.py and brings the runs back as $OUT/<recipe name>.tar.NN, with its output in
# $OUT/experiment.log:
#
#   run(command="EXPERIMENT=configs/experiments/NAME.json STAGES=base \
#       bash benchmarks/device/run_experiment.sh", carry=[".whl"], timeout_s=590)
#
# with .device_data staged by the call before (stage.sh), or carried too if carry_size.py says
# they fit.
#
# STAGES lists the stages to train, in order. EXPERIMENT_TIMEOUT (500 s) stops every run that
# has not finished, leaving time to pack; EXPERIMENT_PARTS (7) is how many parts may come back.
# Runs that finished in an earlier call are unpacked from .device_results (carried or staged)
# and not trained again.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
: "${OUT:?OUT must name the folder for the results}"
: "${EXPERIMENT:?EXPERIMENT must name the recipe, e.g. configs/experiments/NAME.json}"
: "${STAGES:?STAGES must list the stages to train, in order}"
. benchmarks/device/environment.sh
RESUME_DIR=${RESUME_DIR:-$(carried .device_results || echo .device_results)}

run() {
  device_environment || return 1
  local stage stage_args=() resume_args=()
  for stage in $STAGES; do
    stage_args+=(--stage "$stage")
  done
  [ -d "$RESUME_DIR" ] && resume_args=(--resume-dir "$RESUME_DIR")
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  "$PYTHON" benchmarks/device/run_experiment.py "$EXPERIMENT" "${stage_args[@]}" \
    --data-dir "$DATA_DIR" --out "$OUT" --work "${EXPERIMENT_WORK:-/tmp/experiment}" \
    --time-limit "${EXPERIMENT_TIMEOUT:-500}" --max-parts "${EXPERIMENT_PARTS:-7}" \
    "${resume_args[@]}"
  local status=$?
  echo "experiment: exit status $status (3: a run did not finish)"
  ls -l "$OUT"
  return "$status"
}

run 2>&1 | tee "$OUT/experiment.log"
