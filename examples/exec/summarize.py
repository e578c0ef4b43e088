#!/usr/bin/env python3
"""Summarizes the results of walks.json as `taskfarm results JOB --out DIR` fetched them:
DIR/index.jsonl (one line per task: task_id, index, status, params, ...) and DIR/outputs/<task
id> (each task's stdout, here one JSON line). Prints the mean squared distance of the walks
against the number of steps, and exits 1 when a task failed or the mean is off by over 25%."""
import json
import sys
from pathlib import Path

folder = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
walks, failed = [], []
for line in (folder / "index.jsonl").read_text().splitlines():
    entry = json.loads(line)
    if entry["status"] != "ok":
        failed.append(f"task {entry['task_id']}: {entry.get('error', '')}")
        continue
    walks.append(json.loads((folder / entry["output"]).read_text()))
for f in failed:
    print("failed", f)
if not walks:
    sys.exit("no results")
steps = walks[0]["steps"]
mean_r2 = sum(w["r2"] for w in walks) / len(walks)
print(f"{len(walks)} walks of {steps} steps: mean squared distance {mean_r2:.0f} "
      f"(diffusion predicts {steps}; ratio {mean_r2 / steps:.2f})")
sys.exit(1 if failed or abs(mean_r2 / steps - 1) > 0.25 else 0)
