"""A real Prometheus server scrapes the ventilator's /metrics while jobs run; the figures are
read back through Prometheus's HTTP API (Debian's prometheus package)."""
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

import taskfarm
from farm import Farm, Proc, free_port

PROMETHEUS = shutil.which("prometheus")


def query(port: int, promql: str):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(fn, timeout=30, what=""):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except OSError as e:  # Prometheus still starting
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {last}")


@pytest.fixture
def prometheus(tmp_path):
    """Returns: start(target_port, token) -> the Prometheus HTTP port; stopped afterwards."""
    if not PROMETHEUS:
        pytest.fail("prometheus is not installed: scripts/deps.sh --test installs it")
    procs = []

    def start(target: int, token: str = "") -> int:
        port = free_port()
        auth = f"\n    authorization:\n      credentials: {token}" if token else ""
        config = tmp_path / "prometheus.yml"
        config.write_text(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: taskfarm
    static_configs:
      - targets: ['127.0.0.1:{target}']{auth}
""")
        procs.append(Proc([PROMETHEUS, f"--config.file={config}",
                           f"--web.listen-address=127.0.0.1:{port}",
                           f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                           "--log.level=warn"], tmp_path / "prometheus"))
        return port
    yield start
    for p in procs:
        p.stop()


def test_prometheus_scrapes_tasks_latency_and_workers(tmp_path, prometheus):
    farm = Farm(tmp_path / "farm", workers=2)
    try:
        prom = prometheus(farm.http_port)
        with taskfarm.Client(farm.server) as client:
            client.submit({"name": "metrics", "tasks": [
                {"kernel": "saxpy", "count": 60, "size": 5000, "seed": 2},
                {"kernel": "sleep", "count": 40, "size": 1000}]}).wait(timeout=60, progress=False)
        up = wait_for(lambda: query(prom, 'up{job="taskfarm"} == 1'), what="the scrape target up")
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{farm.http_port}"
        ok = wait_for(lambda: query(prom, 'taskfarm_tasks_total{state="ok"}'),
                      what="taskfarm_tasks_total")
        by_kernel = {r["metric"]["kernel"]: float(r["value"][1]) for r in ok}
        assert by_kernel == {"saxpy": 60.0, "sleep": 40.0}
        count = query(prom, "taskfarm_task_latency_seconds_count")
        assert float(count[0]["value"][1]) == 100
        # The buckets make a histogram Prometheus can take quantiles of.
        p99 = query(prom, "histogram_quantile(0.99, sum by (le) (taskfarm_task_latency_seconds_bucket))")
        assert 0 < float(p99[0]["value"][1]) < 10
        workers = query(prom, "taskfarm_worker_slots")
        assert sorted((w["metric"]["worker"], float(w["value"][1])) for w in workers) == \
            [("w0", 2.0), ("w1", 2.0)]
        info = query(prom, "taskfarm_worker_info")
        assert {w["metric"]["device"] for w in info} == {"cpu"}
        jobs = query(prom, 'taskfarm_jobs{state="done"}')
        assert float(jobs[0]["value"][1]) == 1
        # Nothing Prometheus found malformed in the exposition.
        with urllib.request.urlopen(f"http://127.0.0.1:{prom}/api/v1/targets", timeout=5) as r:
            target = json.load(r)["data"]["activeTargets"][0]
        assert target["health"] == "up" and target["lastError"] == ""
    finally:
        codes = farm.stop()
    assert all(c == 0 for c in codes.values()), codes


def test_prometheus_scrapes_with_the_token_when_one_is_required(tmp_path, prometheus):
    farm = Farm(tmp_path / "farm", workers=0, vent_args=["--http-token", "tok123"])
    try:
        denied = prometheus(farm.http_port)  # no credentials: the target is down with 401
        target = wait_for(lambda: [t for t in json.load(urllib.request.urlopen(
            f"http://127.0.0.1:{denied}/api/v1/targets", timeout=5))["data"]["activeTargets"]
            if t["lastError"]], what="a failed scrape")
        assert "401" in target[0]["lastError"]
    finally:
        farm.stop()


def test_prometheus_with_token(tmp_path, prometheus):
    farm = Farm(tmp_path / "farm", workers=0, vent_args=["--http-token", "tok123"])
    try:
        prom = prometheus(farm.http_port, token="tok123")
        wait_for(lambda: query(prom, 'up{job="taskfarm"} == 1'), what="the scrape target up")
        assert float(query(prom, "taskfarm_workers")[0]["value"][1]) == 0
    finally:
        farm.stop()
