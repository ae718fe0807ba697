# Sourced by the GPU machine's scripts (benchmarks/device/): where the carried folders are, the
# carried wheels installed, and what every process there needs in its environment.
#
# A call carries at most 64 MiB, the working tree included, and the tree alone is about 40 MiB
# (`python benchmarks/device/carry_size.py` counts it). Beside it, the wheels (.whl, 13 MiB), the
# prepared data (.device_data, 21 MiB) and what earlier calls brought back (.device_results) do
# not all fit in one call. So a first call can stage some of them (stage.sh) on the machine, and
# a later call on the same machine, while it is still warm, finds them there.

STAGE_DIR=${STAGE_DIR:-/tmp/ph2-staged}  # where stage.sh leaves carried folders
SITE=${SITE:-/tmp/site}                  # where the carried wheels are installed
PYTHON=${PYTHON:-python3}                # the interpreter with the project's dependencies
WHEELS_INSTALLED=$SITE/.ph2-wheels-installed

# carried NAME: the path of a carried folder: in the tree if this call carried it, else where a
# staging call left it; fails if neither has it.
carried() {
  if [ -e "$1" ]; then
    echo "$1"
  elif [ -e "$STAGE_DIR/$1" ]; then
    echo "$STAGE_DIR/$1"
  else
    return 1
  fi
}

# install_wheels DIR: installs the wheels in DIR into $SITE, once per machine.
install_wheels() {
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$1"/*.whl && touch "$WHEELS_INSTALLED"
}

# device_environment: the wheels installed (carried now, or installed by a staging call; neither
# with SKIP_INSTALL set, for a dry run where the environment has them), DATA_DIR set to the
# prepared data (carried or staged) unless given, the commit the copy was made of exported
# (read from DATA_DIR/SOURCE_COMMIT: the copy here is no git checkout), and the settings of
# processes that share the GPU exported.
device_environment() {
  if [ -z "${SKIP_INSTALL:-}" ]; then
    if [ -d .whl ]; then
      install_wheels .whl || return 1
    elif [ ! -f "$WHEELS_INSTALLED" ]; then
      echo "no wheels: carry .whl, or stage them first (bash benchmarks/device/stage.sh .whl)"
      return 1
    fi
    export PYTHONPATH=$SITE:$PWD
  fi
  if [ -z "${DATA_DIR:-}" ]; then
    if ! DATA_DIR=$(carried .device_data); then
      echo "no .device_data: carry it, or stage it first (bash benchmarks/device/stage.sh .device_data)"
      return 1
    fi
  fi
  export DATA_DIR
  if [ -z "${PH2_GIT_COMMIT:-}" ] && [ -f "$DATA_DIR/SOURCE_COMMIT" ]; then
    read -r PH2_GIT_COMMIT PH2_GIT_DIRTY < "$DATA_DIR/SOURCE_COMMIT"
    export PH2_GIT_COMMIT PH2_GIT_DIRTY
  fi
  # Several processes share the GPU: each takes memory as it needs it, not JAX's 75% up front.
  export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false
}
