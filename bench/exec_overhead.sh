#!/usr/bin/env bash
# Issue 12 benchmark: per-task overhead of command tasks. N runs of /bin/true through a real
# local farm (one-shot sink and ventilator on loopback TCP, one worker --allow-exec with T
# threads), against `xargs -P T` and GNU parallel `-j T` on the same machine, interleaved in
# one run; the farm twice: per-task working folders in the default place (under $TMPDIR, /tmp)
# and on tmpfs (--exec-dir /dev/shm/...). Prints tasks/s, wall µs and CPU µs per task (all
# processes, the commands included), the ratios to xargs and parallel, and writes the rows
# as CSV.
#
#   bench/exec_overhead.sh [--tasks N] [--threads T] [--repeat R] [--csv FILE]
#
#   --tasks N    commands per run (default 3000)
#   --threads T  concurrent commands for every side (default: the number of cores)
#   --repeat R   runs of each side, interleaved; medians are reported (default 3)
#   --csv FILE   where to write the rows (default bench/out/exec_overhead.csv, untracked)
#
# Needs GNU parallel (Debian: parallel; `scripts/deps.sh --bench` installs it), xargs, GNU time.
# Environment: BUILD_DIR (default build/), RUN_TIMEOUT (s per process, 300).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
trap 'rm -rf "${SHM_DIR:-}"; bench_cleanup' EXIT
trap 'exit 130' INT TERM

TASKS=3000 THREADS=$(nproc) REPEAT=3 CSV=""
while [ $# -gt 0 ]; do
  case $1 in
    --tasks) TASKS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --csv) CSV=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 1 ;;
  esac
done
for n in "$TASKS" "$THREADS" "$REPEAT"; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "--tasks, --threads and --repeat take positive integers" >&2; exit 1; }
done
CSV=${CSV:-$BENCH_OUT/exec_overhead.csv}
if ! parallel --version 2>/dev/null | grep -q "GNU parallel"; then
  echo "needs GNU parallel: apt-get install parallel (or scripts/deps.sh --bench)" >&2
  exit 1
fi
command -v xargs >/dev/null || { echo "needs xargs (findutils)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
if [ ! -d /dev/shm ] || [ ! -w /dev/shm ]; then echo "needs a writable /dev/shm (tmpfs)" >&2; exit 1; fi

echo "building ($BUILD_DIR) ..."
bench_build
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || commit="$commit+dirty"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
tmp_fs=$(df -T "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $2 }')
echo "machine: $(nproc) cores ($cpu); ${TMPDIR:-/tmp} is $tmp_fs; commit $commit; $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
load1=$(cut -d' ' -f1 /proc/loadavg)
busy=$(ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 > 20 { printf "%s (%s%%) ", $2, $1 }')
[ -z "$busy" ] || echo "warning: other processes are using the CPU: ${busy}- figures will be lower and noisier"
echo "$TASKS x /bin/true, $THREADS at a time, $REPEAT runs of each side"

job=$BENCH_TMP/true.json
printf '{"name":"exec-true","tasks":[{"kernel":"exec","count":%d,"argv":["/bin/true","{index}"]}]}\n' \
  "$TASKS" >"$job"
SHM_DIR=$(mktemp -d /dev/shm/taskfarm-bench-exec.XXXXXX)
WORKER_THREADS=$THREADS

# timed NAME CMD...: runs CMD under GNU time; sets WALL_S and CPU_S (user + system of CMD and
# the children it waited for).
timed() {
  local name=$1 t0 t1
  shift
  t0=$(date +%s%N)
  timeout "$RUN_TIMEOUT" /usr/bin/time -f '%M %U %S' -o "$BENCH_TMP/$name.rss" "$@" \
    >"$BENCH_TMP/$name.out" 2>"$BENCH_TMP/$name.err" ||
    { echo "  $name failed: $(tail -n 3 "$BENCH_TMP/$name.err")" >&2; return 1; }
  t1=$(date +%s%N)
  WALL_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  CPU_S=$(cpu_s "$name")
}

# farm TAG WORKER-ARGS...: the job through a one-shot farm; sets WALL_S (ventilator start to
# exit: connecting, dispatching, every result in), CPU_S (every process and the commands the
# worker ran) and RATE (the sink's tasks/s, first task sent to last result in).
farm() {
  local tag=$1 f
  shift
  FARM_WORKER_ARGS=(--allow-exec "$@")
  FARM_SINK_ARGS=(--results-dir "$BENCH_TMP/results")  # the index of every command's result
  run_farm "$tag" 1 --job "$job" || true
  f=$BENCH_TMP/$tag.json
  if [ "$FARM_STATUS" -ne 0 ] || [ "$(json_num "$f" tasks_ok)" != "$TASKS" ]; then
    echo "  $tag: not every task succeeded (status $FARM_STATUS, ok $(json_num "$f" tasks_ok))" >&2
    return 1
  fi
  WALL_S=$FARM_WALL_S CPU_S=$FARM_CPU_S RATE=$(json_num "$f" tasks_per_s)
}

declare -A wall cpu
sides=(xargs parallel taskfarm taskfarm-shm)
ok=1 tf_rates=() shm_rates=()
for r in $(seq 1 "$REPEAT"); do
  line="  run $r:"
  for side in "${sides[@]}"; do
    case $side in
      xargs) seq 0 $((TASKS - 1)) >"$BENCH_TMP/args"
             timed "xargs-$r" xargs -a "$BENCH_TMP/args" -P "$THREADS" -n 1 /bin/true || ok=0 ;;
      parallel) timed "parallel-$r" parallel -j "$THREADS" -a "$BENCH_TMP/args" /bin/true '{}' || ok=0 ;;
      taskfarm) farm "tf-$r" || ok=0; tf_rates+=("${RATE:-nan}") ;;
      taskfarm-shm) farm "tfshm-$r" --exec-dir "$SHM_DIR" || ok=0; shm_rates+=("${RATE:-nan}") ;;
    esac
    wall[$side]+="${WALL_S:-nan} " cpu[$side]+="${CPU_S:-nan} "
    line+=$(printf ' %s %6.0f/s' "$side" "$(awk -v w="${WALL_S:-nan}" -v n="$TASKS" 'BEGIN { print w == "nan" ? 0 : n / w }')")
    WALL_S=nan CPU_S=nan RATE=nan
  done
  echo "$line"
done
[ -z "$(ls -A "$SHM_DIR")" ] || { echo "per-task folders were left in $SHM_DIR" >&2; ok=0; }

med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
per_task_us() { awk -v s="$1" -v n="$TASKS" 'BEGIN { if (s == "nan") print "nan"; else printf "%.0f", s / n * 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "nan"; else printf "%.2f", a / b }'; }

declare -A w_us c_us rate
for side in "${sides[@]}"; do
  m=$(med "${wall[$side]}")
  w_us[$side]=$(per_task_us "$m")
  c_us[$side]=$(per_task_us "$(med "${cpu[$side]}")")
  rate[$side]=$(awk -v w="$m" -v n="$TASKS" 'BEGIN { if (w == "nan") print "nan"; else printf "%.0f", n / w }')
done
int() { awk '{ if ($1 == "nan") print "nan"; else printf "%.0f\n", $1 }'; }
sink_rate=$(printf '%s\n' "${tf_rates[@]}" | median | int)
shm_sink_rate=$(printf '%s\n' "${shm_rates[@]}" | median | int)

echo
printf '%-36s %8s %12s %11s %18s %18s\n' side "tasks/s" "wall us/task" "CPU us/task" \
  "vs xargs wall/CPU" "vs parallel w/CPU"
printf '%.0s-' $(seq 1 108); echo
rows=()
for side in "${sides[@]}"; do
  case $side in
    xargs) label="xargs -P $THREADS -n 1" ;;
    parallel) label="GNU parallel -j $THREADS" ;;
    taskfarm) label="taskfarm, workdirs in ${TMPDIR:-/tmp} ($tmp_fs)" ;;
    taskfarm-shm) label="taskfarm, --exec-dir /dev/shm" ;;
  esac
  vx=$(ratio "${w_us[$side]}" "${w_us[xargs]}") vp=$(ratio "${w_us[$side]}" "${w_us[parallel]}")
  cx=$(ratio "${c_us[$side]}" "${c_us[xargs]}") cp=$(ratio "${c_us[$side]}" "${c_us[parallel]}")
  printf '%-36s %8s %12s %11s %18s %18s\n' "$label" "${rate[$side]}" "${w_us[$side]}" "${c_us[$side]}" \
    "$vx / $cx" "$vp / $cp"
  rows+=("$label|${rate[$side]}|${w_us[$side]}|${c_us[$side]}|$vx|$vp|$cx|$cp")
done
echo "(wall: whole command, start to exit; taskfarm: ventilator start to exit, every result in;"
echo " CPU: user + system of every process, the $TASKS commands included; ratios per task, lower"
echo " is better; medians of $REPEAT runs. On a loaded machine CPU per task is the steadier"
echo " figure: wall favours the side with more runnable threads. Sink-measured rate, first task"
echo " sent to last result:"
echo " $sink_rate tasks/s default, $shm_sink_rate tasks/s on /dev/shm)"
shm_gain=$(ratio "${w_us[taskfarm]}" "${w_us[taskfarm-shm]}")
echo "per-task folders: default / /dev/shm wall per task = $shm_gain"

mkdir -p "$(dirname "$CSV")"
{
  echo "date,commit,cores,load1,tasks,threads,side,tasks_per_s,wall_us_per_task,cpu_us_per_task,wall_vs_xargs,wall_vs_parallel,cpu_vs_xargs,cpu_vs_parallel"
  for line in "${rows[@]}"; do
    IFS='|' read -r s a b c d e f g <<<"$line"
    printf '%s,%s,%s,%s,%s,%s,"%s",%s,%s,%s,%s,%s,%s,%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$commit" \
      "$(nproc)" "$load1" "$TASKS" "$THREADS" "$s" "$a" "$b" "$c" "$d" "$e" "$f" "$g"
  done
} >"$CSV"
echo "rows written to $CSV"
[ "$ok" = 1 ] || { echo "FAIL: a run failed (see above)" >&2; exit 1; }
