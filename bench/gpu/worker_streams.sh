#!/usr/bin/env bash
# Small-task throughput of a real GPU worker: N saxpy tasks of 64 KiB (16384 floats) through
# ventilator -> worker -> sink, with the streamed design (--streams 4, 8) against one
# synchronous stream (--streams 1) of the same worker. Builds nothing; run on the GPU node.
# Without a usable GPU the worker exits with the reason and so does this script (exit 1),
# at once; a run that takes longer than RUN_TIMEOUT seconds (default 600) is stopped.
#
# Usage: bench/gpu/worker_streams.sh [BUILD_DIR] [TASKS]      (defaults: build, 100000)
#   BUILD_DIR  a build or a bundle (scripts/bundle.sh): its bin/ has the programs
set -euo pipefail
build=${1:-build}
tasks=${2:-100000}
bin=$build/bin
timeout_s=${RUN_TIMEOUT:-600}
for t in python3 timeout; do
  command -v "$t" >/dev/null || { echo "worker_streams.sh: $t not found" >&2; exit 1; }
done
for p in taskfarm-sink taskfarm-worker taskfarm-ventilator; do
  [ -x "$bin/$p" ] || { echo "worker_streams.sh: $bin/$p not found (build first, or give BUILD_DIR)" >&2; exit 1; }
done
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
run() {  # streams
  local s=$1 ep="ipc://$dir/s$1"
  "$bin/taskfarm-sink" --bind "$ep-r" --control "$ep-c" --report "$dir/r$s.json" -q --log-level warn &
  local sink=$!
  "$bin/taskfarm-worker" --device cuda --streams "$s" --ventilator "$ep-t" \
    --sink-results "$ep-r" --sink-control "$ep-c" --log-level warn &
  local worker=$!
  timeout "$timeout_s" "$bin/taskfarm-ventilator" --bind "$ep-t" --sink-results "$ep-r" \
    --sink-control "$ep-c" --kernel saxpy --tasks "$tasks" --size 16384 --log-level warn &
  local vent=$!
  # A worker that cannot start (no GPU) would leave the ventilator waiting for workers forever.
  while kill -0 "$vent" 2>/dev/null; do
    if ! kill -0 "$worker" 2>/dev/null; then
      local st=0
      wait "$worker" || st=$?
      if [ "$st" -ne 0 ]; then
        echo "worker_streams.sh: the GPU worker exited with status $st (above: why)" >&2
        exit 1
      fi
    fi
    sleep 0.2
  done
  local st=0
  wait "$vent" || st=$?
  [ "$st" -eq 0 ] || { echo "worker_streams.sh: the ventilator exited with status $st" >&2; exit 1; }
  wait "$sink"
  python3 -c "import json,sys; r=json.load(open('$dir/r$s.json')); print(f\"streams={$s:<2} tasks/s={r['tasks_per_s']:>10.0f}  GB/s={r['mb_per_s']/1e3:6.2f}  p50={r['latency_us']['p50']:.0f}us  digest={r['result_digest']}  device={r['workers'][0]['device']}\")"
}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
run 1
run 4
run 8
