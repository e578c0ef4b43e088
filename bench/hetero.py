#!/usr/bin/env python3
"""Mixed pools against their ideal split (issue: "never slower than the fastest device alone,
within 1.10x of the ideal split").

For each job mix: the fast worker alone, the slow worker alone, both together, and the ideal
split of the mix computed (bench/split_ideal, the linear program of ventilator/split.h) from the
per-task times each worker measured alone on each class of task. Prints one row per mix with the
ratios mix/ideal and mix/fastest; exits 1 when a target is missed.

CPU mode (default, runs anywhere): two CPU workers, one made slower per kernel and size with
the test hook TASKFARM_TEST_SLOWDOWN, on `sleep` tasks (they cost no CPU, so a 2-core machine
times them well). The "fast" worker plays a GPU, the "slow" one a CPU:
  gpu-friendly  matrix-like tasks the GPU runs 30x faster, vector-like ones 3x faster
  cpu-friendly  many tiny tasks the GPU worker runs 4x slower (launch overhead)
  both          the two together
GPU mode (--gpu, on a GPU node): a `--device cuda:0` worker and a CPU worker on real kernels:
  gpu-friendly  sgemm N=512 and saxpy n=262144;  cpu-friendly  noop and tiny sorts;  both.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Each class: (name, kernel, size, count). CPU mode uses sleep sizes in microseconds.
# Sized so that the ideal takes about a second: learning each class on each worker costs one
# task (a 180 ms one on the slow worker), which a shorter batch would not amortize.
CPU_MIXES = {
    "gpu-friendly": [("matrix", "sleep", 6000, 450), ("vector", "sleep", 2000, 1800)],
    "cpu-friendly": [("tiny", "sleep", 400, 9000)],
    "both": [("matrix", "sleep", 6000, 300), ("vector", "sleep", 2000, 1200),
             ("tiny", "sleep", 400, 4500)],
}
# The slow ("CPU") worker: 30x on matrix, 3x on vector, and the fast ("GPU") worker 4x on tiny.
CPU_SLOW = "sleep:6000=30,sleep:2000=3"
CPU_FAST = "sleep:400=4"

GPU_MIXES = {
    "gpu-friendly": [("sgemm", "sgemm", 512, 400), ("saxpy", "saxpy", 262144, 2000)],
    "cpu-friendly": [("noop", "noop", 0, 50000), ("sort", "sort", 4096, 5000)],
    "both": [("sgemm", "sgemm", 512, 200), ("saxpy", "saxpy", 262144, 1000),
             ("sort", "sort", 4096, 2500)],
}


class Farm:
    def __init__(self, bin_dir, workers, job, tmp):
        self.dir = tempfile.mkdtemp(dir=tmp)
        ep = lambda n: f"ipc://{self.dir}/{n}"  # noqa: E731
        self.procs = []
        common = ["--sink-results", ep("r"), "--sink-control", ep("c"), "--log-level", "warn"]
        self.start([f"{bin_dir}/taskfarm-sink", "--bind", ep("r"), "--control", ep("c"),
                    "--report", f"{self.dir}/report.json", "-q", "--log-level", "warn"])
        for i, (args, env) in enumerate(workers):
            e = dict(os.environ)
            e.pop("TASKFARM_TEST_SLOWDOWN", None)
            if env:
                e["TASKFARM_TEST_SLOWDOWN"] = env
            self.start([f"{bin_dir}/taskfarm-worker", "--ventilator", ep("t"), "--id", f"w{i}"]
                       + common + args, e)
        with open(f"{self.dir}/job.json", "w") as f:
            json.dump(job, f)
        self.vent = subprocess.Popen(
            [f"{bin_dir}/taskfarm-ventilator", "--bind", ep("t"), "--job", f"{self.dir}/job.json",
             "--min-workers", str(len(workers))] + common[:4] + ["--log-level", "warn"])

    def start(self, cmd, env=None):
        self.procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL))

    def report(self, timeout):
        try:
            rc = self.vent.wait(timeout=timeout)
        finally:
            for p in self.procs + [self.vent]:
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                p.wait()
        if rc != 0:
            raise RuntimeError(f"ventilator exited {rc}")
        with open(f"{self.dir}/report.json") as f:
            return json.load(f)


def job_of(classes, name="mix"):
    return {"name": name, "tasks": [{"kernel": k, "count": n, "size": s, "seed": 1}
                                     for _, k, s, n in classes]}


def run(bin_dir, workers, classes, tmp, timeout=600):
    return Farm(bin_dir, workers, job_of(classes), tmp).report(timeout)


def calibrate(bin_dir, worker, cls, tmp):
    """One task's time on one slot of `worker`, from its busy time on a short run."""
    name, kernel, size, count = cls
    n = max(4, min(count // 20, 200))
    rep = run(bin_dir, [worker], [(name, kernel, size, n)], tmp)
    w = rep["workers"][0]
    return w["busy_s"] / n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu", action="store_true", help="a real GPU worker and a CPU worker")
    ap.add_argument("--bin", default=os.path.join(ROOT, os.environ.get("BUILD_DIR", "build"), "bin"))
    ap.add_argument("--out", default=os.environ.get("TASKFARM_BENCH_OUT",
                                                   os.path.join(ROOT, "bench", "out", "hetero.txt")))
    ap.add_argument("--mix", action="append", help="only these mixes")
    args = ap.parse_args()
    for tool in ("taskfarm-sink", "taskfarm-worker", "taskfarm-ventilator", "split_ideal"):
        if not os.access(os.path.join(args.bin, tool), os.X_OK):
            sys.exit(f"hetero.py: {args.bin}/{tool} missing (build the project: scripts/build.sh)")
    if args.gpu:
        mixes = GPU_MIXES
        fast = (["--device", "cuda:0", "--streams", "4"], "")
        slow = (["--device", "cpu", "--threads", str(max(1, os.cpu_count() - 2))], "")
        slots = {"fast": 4, "slow": max(1, os.cpu_count() - 2)}
    else:
        mixes = CPU_MIXES
        fast = (["--device", "cpu", "--threads", "4"], CPU_FAST)
        slow = (["--device", "cpu", "--threads", "4"], CPU_SLOW)
        slots = {"fast": 4, "slow": 4}
    tmp = tempfile.mkdtemp(prefix="taskfarm-hetero-")
    rows, failed = [], False
    try:
        for mix, classes in mixes.items():
            if args.mix and mix not in args.mix:
                continue
            cost = {}
            for who, worker in (("fast", fast), ("slow", slow)):
                cost[who] = [calibrate(args.bin, worker, c, tmp) / slots[who] for c in classes]
            counts = ",".join(str(c[3]) for c in classes)
            out = subprocess.run([os.path.join(args.bin, "split_ideal"), counts,
                                  ",".join(f"{x:.9f}" for x in cost["fast"]),
                                  ",".join(f"{x:.9f}" for x in cost["slow"])],
                                 check=True, capture_output=True, text=True).stdout.split()
            ideal = float(out[0])
            fast_alone = run(args.bin, [fast], classes, tmp)["elapsed_s"]
            slow_alone = run(args.bin, [slow], classes, tmp)["elapsed_s"]
            both = run(args.bin, [fast, slow], classes, tmp)
            mix_s = both["elapsed_s"]
            ok = mix_s <= 1.10 * ideal and mix_s <= min(fast_alone, slow_alone)
            failed |= not ok
            rows.append((mix, fast_alone, slow_alone, mix_s, ideal, mix_s / ideal,
                         mix_s / min(fast_alone, slow_alone), "PASS" if ok else "FAIL"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mode = "GPU + CPU worker" if args.gpu else "CPU workers, one slowed per kernel"
    lines = [f"# bench/hetero.py ({mode}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"{'mix':<14} {'fast alone':>11} {'slow alone':>11} {'mix':>9} {'ideal':>9} "
             f"{'mix/ideal':>10} {'mix/fastest':>12}"]
    for r in rows:
        lines.append(f"{r[0]:<14} {r[1]:>10.3f}s {r[2]:>10.3f}s {r[3]:>8.3f}s {r[4]:>8.3f}s "
                     f"{r[5]:>10.3f} {r[6]:>12.3f}  {r[7]}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
