"""examples/exec end to end, as a user runs it from a checkout: run.sh starts a real farm (sink,
job service, a worker with --allow-exec), runs the job array and the sweep, and fetches their
results with `taskfarm results` and the Python package."""
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PERIODS = {"2.8": 1, "3.2": 2, "3.5": 4, "3.55": 8, "3.9": 0}


def index(folder: Path):
    return [json.loads(line) for line in (folder / "index.jsonl").read_text().splitlines()]


def test_the_exec_examples_run_as_written(tmp_path):
    out = tmp_path / "out"
    p = subprocess.run([str(ROOT / "examples/exec/run.sh"), str(out)], capture_output=True,
                       text=True, timeout=150, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr

    # The job array: one walk per seed, every output a JSON line of its own seed.
    walks = index(out / "walks")
    assert sorted(e["index"] for e in walks) == list(range(100))
    for e in walks:
        assert e["status"] == "ok" and e["kernel"] == "exec", e
        walk = json.loads((out / "walks" / e["output"]).read_text())
        assert walk["seed"] == e["index"] and walk["steps"] == 1000
    assert "100 walks of 1000 steps: mean squared distance" in p.stdout
    # `taskfarm results` copied the sink's index byte for byte.
    fetched = (out / "walks" / "index.jsonl").read_bytes()
    sink_copies = [d for d in (out / "sink").iterdir() if (d / "index.jsonl").read_bytes() == fetched]
    assert len(sink_copies) == 1

    # The sweep: 5 x 3 grid points, each output the period its r gives.
    sweep = index(out / "sweep")
    assert sorted((e["params"]["r"], e["params"]["x0"]) for e in sweep) == \
        sorted((r, x0) for r in PERIODS for x0 in ("0.2", "0.5", "0.7"))
    for e in sweep:
        point = json.loads((out / "sweep" / e["output"]).read_text())
        assert point["period"] == PERIODS[e["params"]["r"]], e
        assert point["r"] == float(e["params"]["r"]) and point["x0"] == float(e["params"]["x0"])
    table = p.stdout[p.stdout.index("r      x0=0.2"):].splitlines()
    assert table[1].split() == ["2.8", "1", "1", "1"]
    assert table[5].split() == ["3.9", "chaos", "chaos", "chaos"]
