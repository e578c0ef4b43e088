#!/usr/bin/env bash
# Runs the already-built GPU benchmark (builds nothing) and keeps its output.
#
# Usage: bench/gpu/run_gpu_bench.sh [BUILD_DIR] [gpu_bench options: --device N --quick]
#   BUILD_DIR  a build configured with -DTASKFARM_ENABLE_CUDA=ON (default: build)
#   OUT        where the output goes (default: BUILD_DIR/gpu_bench.txt); its last line is JSON
# Exit status: gpu_bench's. Without a GPU it prints "no CUDA device: <reason>" and exits 0, so
# CI without a GPU does not fail; check the output for that line.
set -euo pipefail

build_dir=${1:-build}
[[ $# -gt 0 ]] && shift
bin="$build_dir/bin/gpu_bench"
if [[ ! -x $bin ]]; then
  echo "run_gpu_bench.sh: $bin not found:" \
    "configure with -DTASKFARM_ENABLE_CUDA=ON and build first" >&2
  exit 1
fi
out=${OUT:-$build_dir/gpu_bench.txt}

set +e
"$bin" "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
echo "run_gpu_bench.sh: output in $out" >&2
exit "$status"
