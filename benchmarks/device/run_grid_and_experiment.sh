#!/usr/bin/env bash
# One device call for both GPU trainings of a lease: the reference grid (run_reference_grid.sh)
# and, beside it, a declared experiment (run_experiment.sh, EXPERIMENT and STAGES as there). The
# compact models of an experiment need little of the GPU beside the full-size grid; their
# augmentation runs on CPU cores the grid leaves idle.
#
#   run(command="EXPERIMENT=configs/experiments/NAME.json STAGES=base \
#       bash benchmarks/device/run_grid_and_experiment.sh",
#       carry=[".whl", ".device_results"], timeout_s=590)     # .device_data staged before
#
# Installs the wheels once for both. The files back are the grid's three (grid.log, its
# archive, the JAX cache), experiment.log and at most EXPERIMENT_PARTS (3) parts of the
# experiment's runs: 7 of the 8 a call returns. GRID_TIMEOUT and EXPERIMENT_TIMEOUT (500 s
# each) leave time to pack.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
: "${OUT:?OUT must name the folder for the results}"
: "${EXPERIMENT:?EXPERIMENT must name the recipe, e.g. configs/experiments/NAME.json}"
. benchmarks/device/environment.sh
device_environment || exit 1
export SKIP_INSTALL=1 EXPERIMENT_PARTS=${EXPERIMENT_PARTS:-3}
bash benchmarks/device/run_experiment.sh > /dev/null &
experiment=$!
bash benchmarks/device/run_reference_grid.sh
wait "$experiment"
tail -n 12 "$OUT/experiment.log"
