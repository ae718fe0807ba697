#!/usr/bin/env bash
# The one command for a GPU machine: our training throughput on Keras' JAX backend beside the
# PyTorch peer's, on the same machine, in the same call. See README.md beside this file.
#
#   bash benchmarks/device/run_gpu_benchmark.sh      # on the device, from the repository root
#
# Needs (carried): .whl/ (../shared/device/fetch-wheels.sh) and a copy of ../shared/peer in
# $PEER_DIR (default .peer). Writes to $OUT: log, ours.json, peer.json, cache_check.json,
# table.md, profile.tar.gz (traces of the PROFILE_CELLS and the XLA programs of our training
# steps, after optimisation). Each part has its own time limit, so that one that runs long still leaves time for
# the others; what a part measured before its limit is kept (ours.json is rewritten after each
# cell; the peer's lines are read back from the log).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
: "${OUT:?OUT must name the folder for the results}"
. benchmarks/device/environment.sh  # install_wheels, SITE

PEER_DIR=${PEER_DIR:-.peer}
OURS_TIMEOUT=${OURS_TIMEOUT:-280}    # seconds for our 8 cells (each compiles for tens of seconds)
PEER_TIMEOUT=${PEER_TIMEOUT:-120}    # the peer: ~1 min, plus ~1 min for torch.compile
CACHE_TIMEOUT=${CACHE_TIMEOUT:-40}   # one cell again, its step read from the compilation cache
HLO_TIMEOUT=${HLO_TIMEOUT:-90}       # UNet bf16 batch 12 compiled again, its XLA program dumped
PEER_ARGS=${PEER_ARGS:-}             # 'nocompile' skips the peer's torch.compile cell
BENCH_ARGS=${BENCH_ARGS:-}           # appended to our runs' options, e.g. for a small CPU dry run
# SKIP_INSTALL=1: use the Python environment as it is (a dry run on a CPU here, whose Python is
# not the device's 3.12 that the wheels are for).
CACHE_DIR=${CACHE_DIR:-/tmp/ph2-seg-jax-cache}
PROFILE_DIR=${PROFILE_DIR:-/tmp/ph2-seg-profile}
# Traced after their timings: the widest gap to the peer (UNet bf16), and SegNet bf16 beside it.
PROFILE_CELLS=${PROFILE_CELLS:-unet:mixed_bfloat16:12 unet:mixed_bfloat16:48 segnet:mixed_bfloat16:12}

run() {
  local start=$SECONDS
  if [ -z "${SKIP_INSTALL:-}" ]; then
    echo "== $(date -u +%H:%M:%S) install the carried wheels into $SITE"
    install_wheels .whl || return 1
    export PYTHONPATH=$SITE:$PWD
  fi
  export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  python3 -c 'import jax, keras; print("python3", __import__("sys").version.split()[0], "jax", jax.__version__, "keras", keras.__version__, jax.devices())'

  echo "== $(date -u +%H:%M:%S) ours: both models, bf16 then fp32, batch 12 and 48 (limit ${OURS_TIMEOUT}s)"
  local profile_args=()
  for cell in $PROFILE_CELLS; do profile_args+=(--profile "$cell"); done
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of options
  timeout "$OURS_TIMEOUT" python3 benchmarks/gpu_throughput.py \
    --models unet segnet --precisions mixed_bfloat16 float32 --batch-sizes 12 48 \
    --image-size 256 --width 1.0 --warmup-steps 5 --steps 30 \
    --compile-cache "$CACHE_DIR" --json "$OUT/ours.json" \
    "${profile_args[@]}" --profile-dir "$PROFILE_DIR" $BENCH_ARGS
  echo "ours: exit status $? after $((SECONDS - start)) s"
  for summary in "$PROFILE_DIR"/*/summary.md; do
    [ -f "$summary" ] || continue
    echo "-- profile of $(basename "$(dirname "$summary")") (top of $summary)"
    head -n 24 "$summary"
  done

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

  echo "== $(date -u +%H:%M:%S) the UNet bf16 step's XLA program, compiled once more (limit ${HLO_TIMEOUT}s)"
  # Layouts, fusions and cuDNN calls as compiled: with the traces, they say where the time goes.
  # Its own process, without the cache (a cache hit compiles nothing to dump) and after the
  # timings (dumping slows a process down).
  # shellcheck disable=SC2086
  XLA_FLAGS="--xla_dump_to=$PROFILE_DIR/hlo --xla_dump_hlo_module_re=.*train_step.*" timeout "$HLO_TIMEOUT" python3 \
    benchmarks/gpu_throughput.py --models unet --precisions mixed_bfloat16 --batch-sizes 12 \
    --warmup-steps 1 --steps 1 --compile-cache '' $BENCH_ARGS >/dev/null
  echo "hlo dump: exit status $? after $((SECONDS - start)) s"
  # Only the Perfetto traces, the summaries and the training step's optimised program travel.
  (cd "$PROFILE_DIR" && find . \( -name 'perfetto_trace.json.gz' -o -name 'summary.*' \
    -o -name '*train_step*after_optimizations.txt' \) -print0 |
    tar -czf "$OUT/profile.tar.gz" --null -T -)
  if [ "$(stat -c %s "$OUT/profile.tar.gz")" -gt $((15 * 1024 * 1024)) ]; then
    echo "profile.tar.gz is over 15 MiB (a file over 16 MiB does not come back): summaries only"
    (cd "$PROFILE_DIR" && find . -name 'summary.*' -print0 |
      tar -czf "$OUT/profile.tar.gz" --null -T -)
  fi
  du -h "$OUT/profile.tar.gz"

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
