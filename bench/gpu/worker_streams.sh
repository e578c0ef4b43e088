#!/usr/bin/env bash
# Small-task throughput of a real GPU worker: N saxpy tasks of 64 KiB (16384 floats) through
# ventilator -> worker -> sink, with the streamed design (--streams 4, 8) against one
# synchronous stream (--streams 1) of the same worker. Builds nothing; run on the GPU node.
#
# Usage: bench/gpu/worker_streams.sh [BUILD_DIR] [TASKS]      (defaults: build, 100000)
set -euo pipefail
build=${1:-build}
tasks=${2:-100000}
bin=$build/bin
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
run() {  # streams
  local s=$1 ep="ipc://$dir/s$1"
  "$bin/taskfarm-sink" --bind "$ep-r" --control "$ep-c" --report "$dir/r$s.json" -q --log-level warn &
  local sink=$!
  "$bin/taskfarm-worker" --device cuda --streams "$s" --ventilator "$ep-t" \
    --sink-results "$ep-r" --sink-control "$ep-c" --log-level warn &
  "$bin/taskfarm-ventilator" --bind "$ep-t" --sink-results "$ep-r" --sink-control "$ep-c" \
    --kernel saxpy --tasks "$tasks" --size 16384 --log-level warn
  wait "$sink"
  python3 -c "import json,sys; r=json.load(open('$dir/r$s.json')); print(f\"streams={$s:<2} tasks/s={r['tasks_per_s']:>10.0f}  GB/s={r['mb_per_s']/1e3:6.2f}  p50={r['latency_us']['p50']:.0f}us  digest={r['result_digest']}  device={r['workers'][0]['device']}\")"
}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true
run 1
run 4
run 8
