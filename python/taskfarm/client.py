"""Client of the taskfarm job service (taskfarm-ventilator --serve), over ZeroMQ."""
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import zmq
from google.protobuf import json_format

from ._proto import PROTOCOL_VERSION, pb
from .errors import (InvalidJob, JobFailed, JobNotFinished, ServiceUnavailable, TaskfarmError,
                     UnknownJob)
from .progress import ProgressBar
from .results import DEFAULT_RESULTS_PORT, ResultStream, results_endpoint_near
from .results import decode_reply
from .results import default_port as _default_port
from .states import JobState

DEFAULT_PORT = 5560

JobLike = Union["pb.JobSpec", Mapping[str, Any], str, "os.PathLike[str]"]


def endpoint(server: str, default_port: int = DEFAULT_PORT) -> str:
    """Returns: the ZeroMQ endpoint of `server`, as the taskfarm programs read it: "HOST",
    "HOST:PORT", "PORT" (on localhost) or a full endpoint (tcp://..., ipc://...); HOST alone
    takes `default_port`, moved by TASKFARM_PORT_BASE as the programs do."""
    if not server:
        raise ValueError("empty server address")
    if "://" in server:
        return server
    if server.isdigit():
        return f"tcp://localhost:{server}"
    if ":" not in server:
        return f"tcp://{server}:{_default_port(default_port)}"
    return f"tcp://{server}"


@dataclass(frozen=True)
class Keys:
    """CurveZMQ keys: this client's secret key file and the server's public key file, as made
    by ``taskfarm keygen`` (the client's .pub must be in the server's authorized directory)."""

    secret: str
    server: str

    def apply(self, socket: "zmq.Socket") -> None:
        secret = _read_key(self.secret, want_secret=True)
        socket.curve_secretkey = secret
        socket.curve_publickey = zmq.curve_public(secret)
        socket.curve_serverkey = _read_key(self.server, want_secret=False)


_Z85_LINE = re.compile(rb"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")
_KEY_LINE = re.compile(rb'^(public|secret)-key\s*=\s*"?([^"]{40})"?$')


def _read_key(path: str, want_secret: bool) -> bytes:
    """The key in a file from ``taskfarm keygen``: ZeroMQ's certificate format (``public-key``
    and, in NAME.key, ``secret-key`` lines), or one bare 40-character line (earlier versions)."""
    try:
        with open(path, "rb") as f:
            text = f.read(4097)
    except OSError as e:
        raise TaskfarmError(f"cannot read key file {path}: {e.strerror}") from e
    if len(text) > 4096:
        raise TaskfarmError(f"{path} is larger than a key file (4 KiB)")
    keys, bare = {}, []
    for line in text.splitlines():
        line = line.strip()
        if _Z85_LINE.match(line):  # Z85 has '#': a bare key before comments
            bare.append(line)
        elif m := _KEY_LINE.match(line):
            keys[m.group(1)] = m.group(2)
    if want_secret:
        if b"secret" in keys:
            return keys[b"secret"]
        if b"public" in keys or not bare:
            raise TaskfarmError(f"{path} is not a secret key file (NAME.key from taskfarm keygen)")
    else:
        if b"secret" in keys:
            raise TaskfarmError(f"{path} is a secret key; give the server's public key (NAME.pub)")
        if b"public" in keys:
            return keys[b"public"]
    if len(bare) != 1:
        raise TaskfarmError(f"{path} is not a CURVE key (40 Z85 characters)")
    return bare[0]


@dataclass(frozen=True)
class JobStatus:
    """A job as the service sees it now."""

    id: str
    name: str
    state: JobState
    done: int
    total: int
    failed: int
    tasks_per_s: float
    age_s: float
    priority: int
    report: Optional["pb.Report"]  # once finished
    reason: str = ""  # why a queued or running job does not move ("no worker connected", ...)

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def fraction(self) -> float:
        """Returns: done / total, from 0 to 1."""
        return self.done / self.total if self.total else 0.0

    @classmethod
    def from_proto(cls, st: "pb.JobStatus") -> "JobStatus":
        return cls(id=st.job_id, name=st.name, state=JobState.from_wire(st.state), done=st.done,
                   total=st.total, failed=st.failed, tasks_per_s=st.tasks_per_s, age_s=st.age_s,
                   priority=st.priority, report=st.report if st.HasField("report") else None,
                   reason=st.reason)


def job_spec(job: JobLike) -> "pb.JobSpec":
    """Returns: `job` as a JobSpec: a JobSpec, a dict in the job-file form, or the path of a
    job file. Raises: InvalidJob for an unreadable file, bad JSON or an unknown field."""
    if isinstance(job, pb.JobSpec):
        return job
    try:
        if isinstance(job, Mapping):
            return json_format.ParseDict(dict(job), pb.JobSpec())
        path = os.fspath(job)
        with open(path, encoding="utf-8") as f:
            spec = json_format.Parse(f.read(), pb.JobSpec())
        if not spec.name:
            spec.name = os.path.splitext(os.path.basename(path))[0]
        return spec
    except OSError as e:
        raise InvalidJob(f"cannot read job file {job}: {e.strerror}") from e
    except (json_format.ParseError, json.JSONDecodeError, TypeError) as e:
        raise InvalidJob(f"invalid job: {e}") from e


class Client:
    """A connection to a job service. Thread-safe; use as a context manager or call close().

    >>> with Client("head:5560") as client:
    ...     report = client.submit("job.json").wait()
    """

    def __init__(self, server: str = "localhost",
                 keys: Optional[Union[Keys, Tuple[str, str]]] = None, timeout: float = 5.0,
                 sink: Optional[str] = None):
        """`server`: "HOST", "HOST:PORT", "PORT" or an endpoint. `keys`: Keys or a (secret key
        file, server public key file) pair, for a service that uses CurveZMQ (the sink's
        results service takes the same). `timeout`: seconds to wait for each answer before
        ServiceUnavailable. `sink`: the sink's results service for Job.results(), "HOST",
        "HOST:PORT", "PORT" or an endpoint (default: port 5561 on the job service's host, as
        `taskfarm results --sink`)."""
        self.endpoint = endpoint(server)
        self.results_endpoint: Optional[str] = (
            endpoint(sink, DEFAULT_RESULTS_PORT) if sink else results_endpoint_near(self.endpoint))
        self.timeout = timeout
        self.keys = Keys(*keys) if isinstance(keys, tuple) else keys
        self._ctx = zmq.Context.instance()
        self._lock = threading.Lock()
        self._socket: Optional[zmq.Socket] = None

    # ---------------------------------------------------------------- connection

    def _connect(self) -> "zmq.Socket":
        if self._socket is None:
            s = self._ctx.socket(zmq.DEALER)
            s.linger = 0
            if self.keys:
                self.keys.apply(s)
            s.connect(self.endpoint)
            self._socket = s
        return self._socket

    def _call(self, request: "pb.Envelope") -> "pb.Envelope":
        request.version = PROTOCOL_VERSION
        with self._lock:
            s = self._connect()
            s.send(request.SerializeToString())
            if not s.poll(int(self.timeout * 1000)):
                # A late answer must not be taken for the next request's: start afresh.
                s.close()
                self._socket = None
                raise ServiceUnavailable(f"no answer from the job service at {self.endpoint} "
                                         f"within {self.timeout:g} s")
            return decode_reply(s.recv(), self.endpoint, "the job service")

    def close(self) -> None:
        """Closes the connection (the client reconnects if used again)."""
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- requests

    def submit(self, job: JobLike) -> "Job":
        """Submits a job: a JobSpec, a dict in the job-file form, or a job file's path.
        Returns: its Job at once (see Job.wait). Raises: InvalidJob, ServiceUnavailable."""
        spec = job_spec(job)
        env = pb.Envelope()
        env.submit.job.CopyFrom(spec)
        reply = self._call(env).submit_reply
        if reply.error:
            raise InvalidJob(reply.error)
        return Job(self, reply.job_id, spec.name)

    def status(self, job: str) -> JobStatus:
        """Returns: the status of one job, by id or name. Raises: UnknownJob."""
        env = pb.Envelope()
        env.status.job = job
        reply = self._call(env).status_reply
        if reply.error:
            raise UnknownJob(reply.error) if reply.error.startswith("unknown job") \
                else TaskfarmError(reply.error)
        if not reply.jobs:
            raise UnknownJob(f"unknown job '{job}'")
        return JobStatus.from_proto(reply.jobs[0])

    def jobs(self) -> List[JobStatus]:
        """Returns: every job the service knows (running, queued and recently finished),
        without their reports."""
        env = pb.Envelope()
        env.status.job = ""
        reply = self._call(env).status_reply
        if reply.error:
            raise TaskfarmError(reply.error)
        return [JobStatus.from_proto(st) for st in reply.jobs]

    def job(self, key: str) -> "Job":
        """Returns: the Job named by an id or name, to wait for or cancel. Raises: UnknownJob."""
        st = self.status(key)
        return Job(self, st.id, st.name)

    def cancel(self, job: str) -> bool:
        """Cancels a job by id or name. Returns: True when it was cancelled now, False when it
        had already finished. Raises: UnknownJob."""
        env = pb.Envelope()
        env.cancel.job = job
        reply = self._call(env).cancel_reply
        if not reply.error:
            return True
        if reply.error.startswith("unknown job"):
            raise UnknownJob(reply.error)
        if "is already" in reply.error:
            return False
        raise TaskfarmError(reply.error)

    def workers(self) -> List["pb.WorkerStatus"]:
        """Returns: the workers registered with the ventilator (id, host, device, slots, held,
        busy, jobs, idle_s, leaving). Raises: TaskfarmError when the service is too old."""
        if not hasattr(pb, "WorkersRequest"):
            raise TaskfarmError("this taskfarm build has no workers request")
        env = pb.Envelope()
        env.workers.SetInParent()
        reply = self._call(env).workers_reply
        if reply.error:
            raise TaskfarmError(reply.error)
        return list(reply.workers)


def _report_of(st: JobStatus) -> "pb.Report":
    """Returns: the service's report of a finished job, or, when it has none (a job cancelled
    before the sink's partial report reached the ventilator), one made of the status."""
    if st.report is not None:
        return st.report
    return pb.Report(job=st.name, job_id=st.id, state=str(st.state), tasks_total=st.total,
                     tasks_ok=max(0, st.done - st.failed), tasks_failed=st.failed)


class Job:
    """A submitted job. Cheap: it holds the id and asks the service on each call."""

    FINAL_POLL_S = 0.2

    def __init__(self, client: Client, job_id: str, name: str = ""):
        self.client = client
        self.id = job_id
        self.name = name or job_id

    def __repr__(self) -> str:
        return f"Job({self.id!r}, name={self.name!r})"

    def status(self) -> JobStatus:
        """Returns: the job's status now."""
        return self.client.status(self.id)

    def cancel(self) -> bool:
        """Cancels the job. Returns: True when cancelled now, False when it had finished."""
        return self.client.cancel(self.id)

    def report(self) -> "pb.Report":
        """Returns: the job's report (taskfarm.v1.Report: counts, rates, latency, digest,
        workers, kernels, failures). Raises: JobNotFinished while it runs."""
        st = self.status()
        if not st.finished:
            raise JobNotFinished(f"job {self.id} is {st.state}")
        return _report_of(st)

    def wait(self, timeout: Optional[float] = None, progress: Optional[bool] = None,
             poll: float = FINAL_POLL_S) -> "pb.Report":
        """Waits until the job finishes, drawing a progress bar on a terminal (`progress`
        forces it on or off). Returns: the report of a job whose every task succeeded.
        Raises: JobFailed (failed, cancelled or interrupted; with the failures and report),
        TimeoutError after `timeout` seconds, ServiceUnavailable."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = ProgressBar(self.name, enabled=progress)
        try:
            while True:
                st = self.status()
                bar.update(st.done, st.total, st.tasks_per_s, st.failed, str(st.state), st.reason)
                if st.finished:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {self.id} still {st.state} after {timeout:g} s "
                                       f"({st.done}/{st.total} tasks)")
                time.sleep(poll if deadline is None else
                           max(0.0, min(poll, deadline - time.monotonic())))
        finally:
            bar.close()
        report = _report_of(st)
        if st.state != JobState.DONE:
            raise JobFailed(self.id, st.state, report.failures, report)
        return report

    def results(self, from_offset: int = 0, out_dir: Union[str, "os.PathLike[str]", None] = None,
                wait: bool = True, timeout: Optional[float] = None,
                poll: float = FINAL_POLL_S) -> ResultStream:
        """Streams the job's results from the sink's results service as its tasks finish,
        in the order the sink recorded them (failed tasks too: check `.ok`).

        `from_offset`: resume after an earlier stream (its `.offset`, or a result's
        `.next_offset`). `out_dir`: also write what `taskfarm results JOB --out DIR` writes
        (DIR/index.jsonl and DIR/outputs/<task id>), resuming from what DIR holds. `wait`:
        False stops at what exists now instead of following the job to its end. `timeout`:
        seconds in all before TimeoutError (None: as long as the job runs).

        Returns: a ResultStream, an iterator of TaskResult (task_id, entry, index, kernel,
        status, attempt, worker, checksum, value, params, error, output bytes); a queued job
        is waited for. Raises (while iterating): NoOutputs for a job that returns no outputs
        or that the sink does not have, ServiceUnavailable when the sink does not answer
        (iterate again to resume), TimeoutError; TaskfarmError at once when the sink's
        endpoint is unknown (an ipc:// job service: give Client(sink=...)) or out_dir cannot
        be written."""
        ep = self.client.results_endpoint
        if not ep:
            raise TaskfarmError(f"no results service near {self.client.endpoint}: give "
                                f"Client(..., sink=ENDPOINT), the sink's --results-service")
        return ResultStream(self, ep, self.client.keys, from_offset=from_offset,
                            out_dir=out_dir, wait=wait, timeout=timeout,
                            request_timeout=self.client.timeout, poll=poll)
