#!/usr/bin/env bash
# Issue 12 benchmark: MB/s of 1 MiB task outputs reaching the sink's results directory
# (results/<job id>/outputs/<task id>, each written to a temporary file and renamed, plus the
# index line), against the raw payload rate of bench/run.sh measured in the same run: M noop
# tasks carrying a 1 MiB inline payload to the workers, and bare libzmq 1 MiB messages. Output
# sources, same farm (one-shot sink, ventilator, 2 workers x 1 thread, loopback TCP):
#   plugin  bench/plugins/bench_output.c's bench.zeros returns 1 MiB of zeros (a source that
#           costs nothing: the output path alone)
#   exec    `head -c 1048576 /dev/zero` per task (worker --allow-exec): a command's stdout
# Every run checks that all M outputs are in the results directory with the right size.
#
#   bench/output_throughput.sh [--tasks M] [--repeat R] [--results-dir DIR] [--csv FILE]
#
#   --tasks M          1 MiB tasks per run (default 500)
#   --repeat R         runs of each side, interleaved; medians are reported (default 3)
#   --results-dir DIR  parent of the sink's results directories (default: a temporary folder
#                      under $TMPDIR, /tmp; e.g. /dev/shm to leave the disk out)
#   --csv FILE         where to write the rows (default bench/out/output_throughput.csv, untracked)
#
# Environment: BUILD_DIR (default build/), RUN_TIMEOUT (s per process, 300).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
trap 'rm -rf "${RESULTS_PARENT:-}"; bench_cleanup' EXIT
trap 'exit 130' INT TERM

TASKS=500 REPEAT=3 CSV="" PARENT=""
while [ $# -gt 0 ]; do
  case $1 in
    --tasks) TASKS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --results-dir) PARENT=$2; shift 2 ;;
    --csv) CSV=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 1 ;;
  esac
done
for n in "$TASKS" "$REPEAT"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "--tasks and --repeat take positive integers" >&2; exit 1; }
done
CSV=${CSV:-$BENCH_OUT/output_throughput.csv}
for tool in head base64 find; do
  command -v "$tool" >/dev/null || { echo "needs $tool (coreutils, findutils)" >&2; exit 1; }
done
if [ -n "$PARENT" ]; then
  if [ ! -d "$PARENT" ] || [ ! -w "$PARENT" ]; then
    echo "--results-dir $PARENT: not a writable folder" >&2
    exit 1
  fi
  RESULTS_PARENT=$(mktemp -d "$PARENT/taskfarm-bench-out.XXXXXX")
else
  RESULTS_PARENT=$(mktemp -d "${TMPDIR:-/tmp}/taskfarm-bench-out.XXXXXX")
fi
BYTES=$((1 << 20))

echo "building ($BUILD_DIR) ..."
bench_build
PLUGIN=$BUILD_DIR/bench-plugins/libbench_output.so
cmake --build "$BUILD_DIR" --target bench_output >>"$BENCH_TMP/build.log" 2>&1 ||
  { tail -n 20 "$BENCH_TMP/build.log" >&2; exit 1; }
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || commit="$commit+dirty"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
out_fs=$(df -T "$RESULTS_PARENT" | awk 'NR == 2 { print $2 }')
echo "machine: $(nproc) cores ($cpu); results directory on $out_fs; commit $commit; $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
load1=$(cut -d' ' -f1 /proc/loadavg)
busy=$(ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 > 20 { printf "%s (%s%%) ", $2, $1 }')
[ -z "$busy" ] || echo "warning: other processes are using the CPU: ${busy}- figures will be lower and noisier"
echo "$TASKS tasks of 1 MiB, 2 workers x 1 thread, $REPEAT runs of each side"

payload_job=$BENCH_TMP/payload.json
make_payload_job "$payload_job" "$BYTES" "$TASKS"
zeros_job=$BENCH_TMP/zeros.json
printf '{"name":"zeros-1MiB","tasks":[{"kernel":"bench.zeros","count":%d,"size":%d}]}\n' \
  "$TASKS" "$BYTES" >"$zeros_job"
exec_job=$BENCH_TMP/exec.json
printf '{"name":"exec-1MiB","tasks":[{"kernel":"exec","count":%d,"argv":["head","-c","%d","/dev/zero"]}]}\n' \
  "$TASKS" "$BYTES" >"$exec_job"

# mbs SECONDS: TASKS MiB over SECONDS, in MB/s (1e6 bytes).
mbs() { awk -v s="$1" -v n="$TASKS" -v b="$BYTES" 'BEGIN { if (s == "nan" || s <= 0) print "nan"; else printf "%.1f", n * b / s / 1e6 }'; }

# outputs TAG JOB WORKER-ARGS...: one run whose outputs go to a fresh results directory; checks
# that every output is there, whole; sets MBS (from the sink's elapsed_s, first task sent to
# last result in) and WALL_MBS (ventilator start to exit).
outputs() {
  local tag=$1 job=$2 dir=$RESULTS_PARENT/$1 f files bytes
  shift 2
  MBS=nan WALL_MBS=nan
  FARM_WORKER_ARGS=("$@")
  FARM_SINK_ARGS=(--results-dir "$dir")
  run_farm "$tag" 2 --job "$job" || true
  FARM_SINK_ARGS=()
  f=$BENCH_TMP/$tag.json
  files=$(find "$dir" -path '*/outputs/*' -type f -size "${BYTES}c" 2>/dev/null | wc -l)
  bytes=$(find "$dir" -path '*/outputs/*' -type f -printf '%s\n' 2>/dev/null | awk '{ t += $1 } END { print t + 0 }')
  if [ "$FARM_STATUS" -ne 0 ] || [ "$(json_num "$f" tasks_ok)" != "$TASKS" ] || [ "$files" != "$TASKS" ]; then
    echo "  $tag: status $FARM_STATUS, $(json_num "$f" tasks_ok) tasks ok, $files whole outputs in $dir" >&2
    return 1
  fi
  [ "$bytes" = $((TASKS * BYTES)) ] || { echo "  $tag: $bytes bytes of outputs" >&2; return 1; }
  MBS=$(mbs "$(json_num "$f" elapsed_s)")
  WALL_MBS=$(mbs "$FARM_WALL_S")
  rm -rf "$dir"
}

declare -A rate wall rss scpu
sides=(bare payload plugin exec)
ok=1
for r in $(seq 1 "$REPEAT"); do
  line="  run $r:"
  for side in "${sides[@]}"; do
    MBS=nan WALL_MBS=nan
    case $side in
      bare) run_bare "bare-$r" --messages "$TASKS" --size "$BYTES" --relays 2
            MBS=$(json_num "$BENCH_TMP/bare-$r.json" mb_per_s) ;;
      payload) FARM_WORKER_ARGS=()
               run_farm "pay-$r" 2 --job "$payload_job" || true
               if [ "$FARM_STATUS" -eq 0 ] && [ "$(json_num "$BENCH_TMP/pay-$r.json" tasks_ok)" = "$TASKS" ]; then
                 MBS=$(mbs "$(json_num "$BENCH_TMP/pay-$r.json" elapsed_s)") WALL_MBS=$(mbs "$FARM_WALL_S")
               else
                 echo "  pay-$r: not every task succeeded" >&2; ok=0
               fi ;;
      plugin) outputs "plugin-$r" "$zeros_job" --plugin "$PLUGIN" || ok=0 ;;
      exec) outputs "exec-$r" "$exec_job" --allow-exec --exec-dir "$BENCH_TMP/exec-dir" || ok=0 ;;
    esac
    case $side in
      payload) tag=pay-$r ;;
      *) tag=$side-$r ;;
    esac
    rate[$side]+="$MBS " wall[$side]+="$WALL_MBS " rss[$side]+="$(rss_mb "$tag-sink") "
    scpu[$side]+="$(cpu_s "$tag-sink" || true) "
    line+=$(printf ' %s %7s MB/s' "$side" "$MBS")
  done
  echo "$line"
done

med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "nan"; else printf "%.2f", a / b }'; }
declare -A m mw mr mc
for side in "${sides[@]}"; do
  m[$side]=$(med "${rate[$side]}") mw[$side]=$(med "${wall[$side]}")
  mr[$side]=$(tr ' ' '\n' <<<"${rss[$side]}" | grep -v '^$' | maxof)
  # The sink's CPU (user + system) per task: steadier than MB/s on a loaded machine.
  mc[$side]=$(med "${scpu[$side]}" | awk -v n="$TASKS" '{ if ($1 == "nan") print "nan"; else printf "%.2f", $1 / n * 1e3 }')
done

echo
printf '%-48s %8s %12s %10s %8s %12s %13s\n' side "MB/s" "MB/s (wall)" "vs payload" "vs bare" \
  "sink RSS MB" "sink CPU ms/t"
printf '%.0s-' $(seq 1 117); echo
rows=()
for side in "${sides[@]}"; do
  case $side in
    bare) label="bare libzmq 1 MiB messages (2 relays)" ;;
    payload) label="taskfarm 1 MiB payloads in, no output (run.sh)" ;;
    plugin) label="plugin: 1 MiB outputs into the results dir" ;;
    exec) label="exec head -c 1MiB: stdout into the results dir" ;;
  esac
  vp=$(ratio "${m[$side]}" "${m[payload]}") vb=$(ratio "${m[$side]}" "${m[bare]}")
  printf '%-48s %8s %12s %10s %8s %12s %13s\n' "$label" "${m[$side]}" "${mw[$side]}" "$vp" "$vb" \
    "${mr[$side]}" "${mc[$side]}"
  rows+=("$label|${m[$side]}|${mw[$side]}|$vp|$vb|${mr[$side]}|${mc[$side]}")
done
echo "(MB = 1e6 bytes of payload or output; MB/s over the sink's elapsed_s, first task sent to last"
echo " result in; wall: ventilator start to exit; medians of $REPEAT runs; results on $out_fs;"
echo " sink RSS: the largest of the runs, GNU time's %M; sink CPU: user + system per task)"

mkdir -p "$(dirname "$CSV")"
{
  echo "date,commit,cores,load1,tasks,results_fs,side,mb_per_s,wall_mb_per_s,vs_payload,vs_bare,sink_rss_mb,sink_cpu_ms_per_task"
  for line in "${rows[@]}"; do
    IFS='|' read -r s a b c d e f <<<"$line"
    printf '%s,%s,%s,%s,%s,%s,"%s",%s,%s,%s,%s,%s,%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$commit" "$(nproc)" \
      "$load1" "$TASKS" "$out_fs" "$s" "$a" "$b" "$c" "$d" "$e" "$f"
  done
} >"$CSV"
echo "rows written to $CSV"
[ "$ok" = 1 ] || { echo "FAIL: a run failed (see above)" >&2; exit 1; }
