#!/usr/bin/env python3
"""One point of the sweep in logistic-sweep.json: iterates the logistic map x -> r x (1 - x)
from x0, drops the transient, and prints the period of the orbit it settles on (1, 2, 4, ...;
0 for none up to 64: chaos) as one JSON line. The parameters come as arguments ({r}, {x0} in
the job file's argv) and also as TASKFARM_PARAM_R / TASKFARM_PARAM_X0."""
import json
import os
import sys

r, x0 = float(sys.argv[1]), float(sys.argv[2])
assert os.environ["TASKFARM_PARAM_R"] == sys.argv[1], "the worker sets TASKFARM_PARAM_<KEY>"
x = x0
for _ in range(20000):  # the transient
    x = r * x * (1.0 - x)
orbit = [x]
for _ in range(64):
    x = r * x * (1.0 - x)
    orbit.append(x)
period = next((p for p in range(1, 65) if abs(orbit[p] - orbit[0]) < 1e-9), 0)
print(json.dumps({"r": r, "x0": x0, "period": period, "x": round(orbit[0], 9)}))
