#!/usr/bin/env bash
# One device call for both GPU trainings of a session: the reference grid (run_reference_grid.sh)
# and the version-2 candidates (results/v2-models/train_on_device.sh), at the same time. The
# compact candidates need little GPU time beside the full-size grid; their augmentation runs on
# CPU cores the grid leaves idle.
#
#   run(command="bash benchmarks/device/run_grid_and_v2.sh",
#       carry=[".whl", ".device_data", ".device_results"], timeout_s=590)
#
# Installs the carried wheels once and exports the source commit for both (see
# REFERENCE_GRID.md); GRID_TIMEOUT and V2_TIMEOUT (default 520 s each) leave time to pack.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
: "${OUT:?OUT must name the folder for the results}"
SITE=${SITE:-/tmp/site}
DATA_DIR=${DATA_DIR:-.device_data}
if [ -z "${SKIP_INSTALL:-}" ]; then  # set for a dry run in an environment that has them
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || exit 1
  export PYTHONPATH=$SITE:$PWD
fi
export SKIP_INSTALL=1 DATA_DIR
export GRID_TIMEOUT=${GRID_TIMEOUT:-520} V2_TIMEOUT=${V2_TIMEOUT:-520}
if [ -f "$DATA_DIR/SOURCE_COMMIT" ]; then
  read -r PH2_GIT_COMMIT PH2_GIT_DIRTY < "$DATA_DIR/SOURCE_COMMIT"
  export PH2_GIT_COMMIT PH2_GIT_DIRTY
fi
bash results/v2-models/train_on_device.sh > /dev/null &
v2=$!
bash benchmarks/device/run_reference_grid.sh
wait "$v2"
echo "v2 candidates: exit status $?"
tail -n 12 "$OUT/v2.log"
