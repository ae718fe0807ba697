#!/usr/bin/env bash
# The one command of a GPU session: our training throughput on Keras' JAX backend beside the
# PyTorch peer's, on the same machine, in the same call. See README.md beside this file.
#
#   bash benchmarks/device/run_gpu_benchmark.sh      # on the device, from the repository root
#
# Needs (carried): .whl/ (../shared/device/fetch-wheels.sh) and a copy of ../shared/peer in
# $PEER_DIR (default .peer). Writes to $OUT: log, ours.json, peer.json, cache_check.json,
# table.md. Each part has its own time limit, so that one that runs long still leaves time for
# the others; what a part measured before its limit is kept (ours.json is rewritten after each
# cell; the peer's lines are read back from the log).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
: "${OUT:?OUT must name the folder for the results}"

PEER_DIR=${PEER_DIR:-.peer}
OURS_TIMEOUT=${OURS_TIMEOUT:-280}    # seconds for our 8 cells (each compiles for tens of seconds)
PEER_TIMEOUT=${PEER_TIMEOUT:-120}    # the peer: ~1 min, plus ~1 min for torch.compile
CACHE_TIMEOUT=${CACHE_TIMEOUT:-40}   # one cell again, its step read from the compilation cache
PEER_ARGS=${PEER_ARGS:-}             # 'nocompile' skips the peer's torch.compile cell
BENCH_ARGS=${BENCH_ARGS:-}           # appended to our runs' options, e.g. for a small CPU dry run
SITE=${SITE:-/tmp/site}              # where the carried wheels are installed
CACHE_DIR=${CACHE_DIR:-/tmp/ph2-seg-jax-cache}

run() {
  local start=$SECONDS
  echo "== $(date -u +%H:%M:%S) install the carried wheels into $SITE"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || return 1
  export PYTHONPATH=$SITE:$PWD PYTHONUNBUFFERED=1 KERAS_BACKEND=jax
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  python3 -c 'import jax, keras; print("python3", __import__("sys").version.split()[0], "jax", jax.__version__, "keras", keras.__version__, jax.devices())'

  echo "== $(date -u +%H:%M:%S) ours: both models, bf16 then fp32, batch 12 and 48 (limit ${OURS_TIMEOUT}s)"
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of options
  timeout "$OURS_TIMEOUT" python3 benchmarks/gpu_throughput.py \
    --models unet segnet --precisions mixed_bfloat16 float32 --batch-sizes 12 48 \
    --image-size 256 --width 1.0 --warmup-steps 5 --steps 30 \
    --compile-cache "$CACHE_DIR" --json "$OUT/ours.json" $BENCH_ARGS
  echo "ours: exit status $? after $((SECONDS - start)) s"

  echo "== $(date -u +%H:%M:%S) peer: python3 $PEER_DIR/torch_peer_bench.py $PEER_ARGS (limit ${PEER_TIMEOUT}s)"
  # Without our PYTHONPATH: the peer needs none of the carried wheels.
  env -u PYTHONPATH timeout "$PEER_TIMEOUT" python3 "$PEER_DIR/torch_peer_bench.py" \
    "$OUT/peer.json" ${PEER_ARGS:+"$PEER_ARGS"}
  echo "peer: exit status $? after $((SECONDS - start)) s"

  echo "== $(date -u +%H:%M:%S) compilation cache: UNet bf16 batch 12 again, in a new process"
  du -sh "$CACHE_DIR" 2>/dev/null
  # shellcheck disable=SC2086
  timeout "$CACHE_TIMEOUT" python3 benchmarks/gpu_throughput.py \
    --models unet --precisions mixed_bfloat16 --batch-sizes 12 --warmup-steps 2 --steps 10 \
    --compile-cache "$CACHE_DIR" --json "$OUT/cache_check.json" $BENCH_ARGS
  echo "cache check: exit status $? after $((SECONDS - start)) s"

  echo "== $(date -u +%H:%M:%S) ours beside the peer"
  local peer="$OUT/peer.json"
  [ -s "$peer" ] || peer="$OUT/log"  # the peer stopped early: read its printed lines
  if [ -s "$OUT/ours.json" ]; then
    python3 benchmarks/device/compare_with_peer.py "$OUT/ours.json" "$peer" \
      --cache-check "$OUT/cache_check.json" | tee "$OUT/table.md"
  else
    echo "no ours.json: our benchmark wrote nothing"
  fi
  echo "total $((SECONDS - start)) s"
}

run 2>&1 | tee "$OUT/log"
