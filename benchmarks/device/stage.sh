#!/usr/bin/env bash
# A device call that only leaves carried folders on the machine for the next call on it, when
# the working tree and everything a run needs do not fit in the 64 MiB one call carries
# (environment.sh says why). It copies each folder named to $STAGE_DIR and, for .whl, installs
# the wheels; the run scripts look there for what their call did not carry.
#
#   run(command="bash benchmarks/device/stage.sh .device_data", carry=[".device_data"],
#       timeout_s=120)
#
# The machine is given back about 30 s after a call, and everything staged with it: make the
# next call at once. A run call that finds nothing staged says so in one line.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benchmarks/device/environment.sh
[ $# -gt 0 ] || { echo "usage: stage.sh FOLDER..., each a folder this call carries" >&2; exit 2; }
mkdir -p "$STAGE_DIR"
for folder in "$@"; do
  if [ ! -d "$folder" ]; then
    echo "stage.sh: $folder: not here; name it in the call's carry" >&2
    exit 2
  fi
  rm -rf "${STAGE_DIR:?}/$(basename "$folder")"
  cp -r "$folder" "$STAGE_DIR/"
  [ "$(basename "$folder")" = .whl ] && install_wheels "$folder"
  echo "staged: $(du -sh "$STAGE_DIR/$(basename "$folder")" | cut -f1) of $folder"
done
