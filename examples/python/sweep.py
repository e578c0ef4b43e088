#!/usr/bin/env python3
"""Submit a sweep of saxpy jobs over vector sizes, then wait for each and print one line per job.

    taskfarm-sink --serve & taskfarm-ventilator --serve & taskfarm-worker &
    python3 examples/python/sweep.py --server localhost:5560
"""
import argparse
import os
import sys

try:
    import taskfarm
except ImportError:  # run from a checkout: the package is in python/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    import taskfarm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="localhost:5560")
    parser.add_argument("--sizes", default="1024,16384,262144,1048576")
    parser.add_argument("--count", type=int, default=200, help="tasks per job")
    args = parser.parse_args()
    status = 0
    with taskfarm.Client(args.server) as client:
        jobs = [client.submit({"name": f"saxpy-{size}", "tasks": [
                    {"kernel": "saxpy", "count": args.count, "size": int(size), "seed": 1}]})
                for size in args.sizes.split(",")]
        for job in jobs:
            try:
                r = job.wait(progress=False)
            except taskfarm.JobFailed as e:
                r, status = e.report, 2
            print(f"{r.job:<16} {r.tasks_ok}/{r.tasks_total} ok  {r.elapsed_s:.3f} s  "
                  f"{r.mb_per_s:.0f} MB/s  digest {r.result_digest}")
    return status


if __name__ == "__main__":
    sys.exit(main())
