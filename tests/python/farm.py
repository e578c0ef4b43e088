"""Starts real taskfarm processes for the Python tests (sink --serve, ventilator --serve with
--http, workers) on private ipc:// endpoints, and stops every one of them afterwards."""
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

BIN_DIR = Path(os.environ.get("TASKFARM_BIN_DIR",
                              Path(__file__).resolve().parents[2] / "build" / "bin"))


def binary(name: str) -> str:
    return str(BIN_DIR / name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """One child process, its output in files under the farm's folder."""

    def __init__(self, args: List[str], log: Path, env: Optional[Dict[str, str]] = None):
        self.log = log
        self.out = open(f"{log}.out", "wb")
        self.err = open(f"{log}.err", "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.popen = subprocess.Popen(args, stdout=self.out, stderr=self.err,
                                      stdin=subprocess.DEVNULL, env=full_env)

    def stderr(self) -> str:
        return Path(f"{self.log}.err").read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10) -> Optional[re.Match]:
        """Returns: the match of regex `text` in stderr within `timeout`, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(text, self.stderr())
            if m:
                return m
            if self.popen.poll() is not None:
                return re.search(text, self.stderr())
            time.sleep(0.02)
        return None

    def stop(self, timeout: float = 5) -> Optional[int]:
        """SIGTERM, then SIGKILL after `timeout`. Returns: the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.out.close()
        self.err.close()
        return self.popen.returncode


class Farm:
    """sink --serve + ventilator --serve (job service and dashboard) + workers."""

    def __init__(self, folder: Path, workers: int = 2, threads: int = 2,
                 worker_env: Optional[Dict[str, str]] = None, vent_args: Optional[List[str]] = None,
                 sink_args: Optional[List[str]] = None, worker_args: Optional[List[str]] = None):
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        ep = lambda name: f"ipc://{self.dir / name}"  # noqa: E731
        self.tasks, self.results, self.control = ep("tasks"), ep("results"), ep("control")
        self.server = ep("submit")
        self.procs: List[Proc] = []
        self.results_service = ep("results-service")
        self.sink = self.start([binary("taskfarm-sink"), "--serve", "--bind", self.results,
                                "--control", self.control, "--results-dir",
                                str(self.dir / "jobs"), "--results-service",
                                self.results_service] + (sink_args or []), "sink")
        self.ventilator = self.start(
            [binary("taskfarm-ventilator"), "--serve", "--bind", self.tasks, "--submit",
             self.server, "--sink-results", self.results, "--sink-control", self.control,
             "--http", "0"] + (vent_args or []), "ventilator")
        m = self.ventilator.wait_for_log(r"dashboard on (http://[^ ]+)")
        assert m, self.ventilator.stderr()
        self.url = m.group(1)
        self.http_port = int(re.search(r":(\d+)/", self.url).group(1))
        self.workers = [self.worker(f"w{i}", threads, worker_env, worker_args)
                        for i in range(workers)]
        assert self.ventilator.wait_for_log("serving jobs"), self.ventilator.stderr()

    def start(self, args: List[str], name: str, env: Optional[Dict[str, str]] = None) -> Proc:
        p = Proc(args, self.dir / name, env)
        self.procs.append(p)
        return p

    def worker(self, name: str, threads: int = 2, env: Optional[Dict[str, str]] = None,
               extra: Optional[List[str]] = None) -> Proc:
        return self.start([binary("taskfarm-worker"), "--ventilator", self.tasks, "--sink-results",
                           self.results, "--sink-control", self.control, "--id", name,
                           "--device", "cpu", "--threads", str(threads)] + (extra or []),
                          f"worker-{name}", env)

    def stop(self) -> Dict[str, Optional[int]]:
        """Stops every process: workers first (they hand their results to the sink), then the
        ventilator and the sink. Returns: exit code by log name."""
        order = {self.ventilator: 1, self.sink: 2}
        codes = {}
        for p in sorted(self.procs, key=lambda p: order.get(p, 0)):
            codes[p.log.name] = p.stop()
        return codes
