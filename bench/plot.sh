#!/usr/bin/env bash
# Throughput of taskfarm and of the bare libzmq pipeline against task size and against the
# number of workers (relays for the bare pipeline), on this machine over loopback TCP.
# Writes DIR/sweep_size.csv, DIR/sweep_workers.csv and plots them (gnuplot) into
# DIR/throughput.png; DIR is bench/out (untracked) unless --out says otherwise (--out bench
# updates the committed copies).
#
#   bench/plot.sh [--repeat R] [--plot-only] [--no-plot] [--out DIR]
#
#   --repeat R   runs per point, the median is plotted (default 1)
#   --plot-only  redraw DIR/throughput.png from the existing CSV files
#   --no-plot    write the CSV files only (no gnuplot needed)
#   --out DIR    where the CSV files and the plot go (default bench/out)
#
# Task sizes: no-op tasks (bare: 48-byte messages), then no-op tasks with an inline payload of
# 1 KiB .. 1 MiB (bare: messages of that size). Where 1024 tasks of a size would exceed 16 MiB
# in one message, workers get --prefetch (8 MiB of tasks per worker) so that batches stay
# bounded (see bench/RESULTS.md). Environment: as bench/run.sh (BUILD_DIR, WORKER_THREADS, ...).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

REPEAT=1 PLOT_ONLY=0 PLOT=1 OUT_DIR=$BENCH_OUT
while [ $# -gt 0 ]; do
  case $1 in
    --repeat) REPEAT=$2; shift 2 ;;
    --plot-only) PLOT_ONLY=1; shift ;;
    --no-plot) PLOT=0; shift ;;
    --out) OUT_DIR=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 1 ;;
  esac
done
# Every tool first: a missing gnuplot must not show after a sweep of several minutes.
[ "$PLOT" = 1 ] && require_tools gnuplot
[ "$PLOT_ONLY" = 1 ] || require_tools cmake awk sed timeout
mkdir -p "$OUT_DIR"
SIZE_CSV=$OUT_DIR/sweep_size.csv
WORKERS_CSV=$OUT_DIR/sweep_workers.csv
PNG=$OUT_DIR/throughput.png

sweep() {
  echo "building ($BUILD_DIR) ..."
  bench_build
  local size count args
  # size (bytes of payload; 0 = plain no-op) and tasks per run (about 1 s of work each)
  local points=("0 500000" "1024 200000" "16384 50000" "262144 4000" "1048576 1000")
  echo "size_bytes,tasks,taskfarm_tasks_per_s,taskfarm_mb_per_s,bare_msgs_per_s,bare_mb_per_s" >"$SIZE_CSV.tmp"
  for p in "${points[@]}"; do
    read -r size count <<<"$p"
    local tf_t=() tf_m=() b_t=() b_m=()
    FARM_WORKER_ARGS=()
    if [ "$size" -gt 0 ]; then
      make_payload_job "$BENCH_TMP/job.json" "$size" "$count"
      args=(--job "$BENCH_TMP/job.json")
      [ $((size * 1024)) -gt $((16 << 20)) ] && FARM_WORKER_ARGS=(--prefetch $(((8 << 20) / size)))
    else
      args=(--kernel noop --tasks "$count")
    fi
    for _ in $(seq 1 "$REPEAT"); do
      run_bare bare --messages "$count" --size "$([ "$size" -gt 0 ] && echo "$size" || echo 48)" --relays 2
      b_t+=("$(json_num "$BENCH_TMP/bare.json" msgs_per_s)")
      b_m+=("$(json_num "$BENCH_TMP/bare.json" mb_per_s)")
      run_farm tf 2 "${args[@]}" || true
      tf_t+=("$(json_num "$BENCH_TMP/tf.json" tasks_per_s)")
      tf_m+=("$(json_num "$BENCH_TMP/tf.json" mb_per_s)")
    done
    FARM_WORKER_ARGS=()
    local line
    line="$size,$count,$(printf '%s\n' "${tf_t[@]}" | median),$(printf '%s\n' "${tf_m[@]}" | median)"
    line="$line,$(printf '%s\n' "${b_t[@]}" | median),$(printf '%s\n' "${b_m[@]}" | median)"
    echo "  $line"
    echo "$line" >>"$SIZE_CSV.tmp"
  done
  mv "$SIZE_CSV.tmp" "$SIZE_CSV"

  local n tasks=500000
  echo "workers,tasks,taskfarm_tasks_per_s,bare_msgs_per_s" >"$WORKERS_CSV.tmp"
  for n in 1 2 3 4; do
    local tf_t=() b_t=()
    for _ in $(seq 1 "$REPEAT"); do
      run_bare bare --messages "$tasks" --size 48 --relays "$n"
      b_t+=("$(json_num "$BENCH_TMP/bare.json" msgs_per_s)")
      run_farm tf "$n" --kernel noop --tasks "$tasks" || true
      tf_t+=("$(json_num "$BENCH_TMP/tf.json" tasks_per_s)")
    done
    local line
    line="$n,$tasks,$(printf '%s\n' "${tf_t[@]}" | median),$(printf '%s\n' "${b_t[@]}" | median)"
    echo "  $line"
    echo "$line" >>"$WORKERS_CSV.tmp"
  done
  mv "$WORKERS_CSV.tmp" "$WORKERS_CSV"
}

draw() {
  local commit machine
  commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  machine="$(nproc) cores, loopback TCP, commit $commit, $(date -u +%Y-%m-%d)"
  gnuplot <<EOF
set terminal pngcairo size 1500,500 font "sans,10"
set output "$PNG"
set datafile separator ","
set key top right
set grid
set multiplot layout 1,3 title "taskfarm vs bare libzmq PUSH->PULL/PUSH->PULL ($machine)"

set title "Tasks (messages) per second vs task size"
set logscale xy
set xrange [30:3e6]
set xlabel "payload bytes per task (no-op: bare sends 48-byte messages)"
set ylabel "tasks/s (bare: messages/s)"
set xtics ("48 B" 48, "1 KiB" 1024, "16 KiB" 16384, "256 KiB" 262144, "1 MiB" 1048576)
set format y "%.0s%c"
plot "$SIZE_CSV" every ::1 using (\$1 > 0 ? \$1 : 48):3 with linespoints lw 2 pt 7 title "taskfarm, 2 workers", \
     "" every ::1 using (\$1 > 0 ? \$1 : 48):5 with linespoints lw 2 pt 5 title "bare, 2 relays"

set format y "%g"
set xrange [600:3e6]
set title "Payload MB/s vs task size"
set ylabel "MB/s (1e6 bytes of payload)"
plot "$SIZE_CSV" every ::2 using 1:4 with linespoints lw 2 pt 7 title "taskfarm, 2 workers", \
     "" every ::2 using 1:6 with linespoints lw 2 pt 5 title "bare, 2 relays"

unset logscale
set xtics autofreq
set autoscale x
set title "No-op tasks per second vs number of workers"
set xlabel "workers (bare: relays)"
set ylabel "million tasks/s (bare: messages/s)"
set xtics 1
set yrange [0:*]
plot "$WORKERS_CSV" every ::1 using 1:(\$3 / 1e6) with linespoints lw 2 pt 7 title "taskfarm", \
     "" every ::1 using 1:(\$4 / 1e6) with linespoints lw 2 pt 5 title "bare"
unset multiplot
EOF
  echo "plot written to $PNG"
}

[ "$PLOT_ONLY" = 1 ] || sweep
[ "$PLOT" = 1 ] && draw
echo "CSV files in $OUT_DIR"
