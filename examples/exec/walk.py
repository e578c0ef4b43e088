#!/usr/bin/env python3
"""One task of the job array in walks.json: a 2-D random walk of --steps unit steps from a
seed, printed as one JSON line. Over many seeds the mean squared distance from the start is
the number of steps (diffusion), which summarize.py checks."""
import argparse
import json
import math
import random

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--steps", type=int, default=10000)
args = parser.parse_args()

rng = random.Random(args.seed)
x = y = 0.0
for _ in range(args.steps):
    angle = rng.uniform(0.0, 2.0 * math.pi)
    x += math.cos(angle)
    y += math.sin(angle)
print(json.dumps({"seed": args.seed, "steps": args.steps, "x": round(x, 6), "y": round(y, 6),
                  "r2": round(x * x + y * y, 6)}))
