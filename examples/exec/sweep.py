#!/usr/bin/env python3
"""Submits logistic-sweep.json with the taskfarm Python package and prints each point's result
as it arrives, streamed from the sink by Job.results(); then the period of the logistic map
against r, one column per starting point x0.

    python3 examples/exec/sweep.py --server ipc:///tmp/farm/submit --sink ipc:///tmp/farm/rs
"""
import argparse
import json
import sys
from pathlib import Path

import taskfarm

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("job", nargs="?", default=str(Path(__file__).with_name("logistic-sweep.json")))
parser.add_argument("--server", default="localhost:5560", help="the job service")
parser.add_argument("--sink", help="the sink's results service (default: port 5561 there)")
parser.add_argument("--out", help="also keep index.jsonl and outputs/ in this folder")
args = parser.parse_args()

periods = {}
with taskfarm.Client(args.server, sink=args.sink) as client:
    job = client.submit(args.job)
    print(f"submitted {job.id}", file=sys.stderr)
    for result in job.results(out_dir=args.out, timeout=600):
        if not result.ok:
            sys.exit(f"point {result.params}: {result.error}")
        point = json.loads(result.output)
        r, x0 = result.params["r"], result.params["x0"]
        print(f"  r={r:<5} x0={x0:<4} -> period {point['period']}", file=sys.stderr)
        periods[(float(result.params["r"]), float(result.params["x0"]))] = point["period"]

rs = sorted({r for r, _ in periods})
x0s = sorted({x0 for _, x0 in periods})
print("r      " + "  ".join(f"x0={x0:<4}" for x0 in x0s))
for r in rs:
    print(f"{r:<6} " + "  ".join(f"{periods[(r, x0)] or 'chaos':<7}" for x0 in x0s))
