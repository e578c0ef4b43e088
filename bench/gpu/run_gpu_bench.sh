#!/usr/bin/env bash
# Runs the already-built GPU benchmark (builds nothing) and keeps its output.
#
# Usage: bench/gpu/run_gpu_bench.sh [BUILD_DIR] [--out FILE] [gpu_bench options: --device N --quick]
#   BUILD_DIR   a build configured with -DTASKFARM_ENABLE_CUDA=ON, or a bundle (default: build)
#   --out FILE  where the output goes (default: $TASKFARM_BENCH_OUT, else BUILD_DIR/gpu_bench.txt);
#               its last line is JSON. (Not $OUT: GPU job environments often set OUT to a folder.)
# Exit status: gpu_bench's. Without a GPU it prints "no CUDA device: <reason>" and exits 0, so
# CI without a GPU does not fail; check the output for that line.
set -euo pipefail

build_dir=build
if [[ $# -gt 0 && $1 != -* ]]; then
  build_dir=$1
  shift
fi
out=${TASKFARM_BENCH_OUT:-}
args=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) [[ $# -ge 2 ]] || { echo "run_gpu_bench.sh: --out needs a FILE" >&2; exit 1; }
           out=$2; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
out=${out:-$build_dir/gpu_bench.txt}
bin="$build_dir/bin/gpu_bench"
if [[ ! -x $bin ]]; then
  echo "run_gpu_bench.sh: $bin not found:" \
    "configure with -DTASKFARM_ENABLE_CUDA=ON and build first" >&2
  exit 1
fi
if [[ -d $out ]]; then
  echo "run_gpu_bench.sh: --out $out is a folder; give a file name" >&2
  exit 1
fi

set +e
"$bin" "${args[@]}" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
echo "run_gpu_bench.sh: output in $out" >&2
exit "$status"
