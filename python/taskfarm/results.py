"""A job's results, streamed from the sink's results service (taskfarm-sink --serve, ROUTER on
port 5561): the same protocol and on-disk layout as ``taskfarm results JOB --out DIR``.

The sink keeps, per job that returns outputs, ``<job id>/index.jsonl`` (one JSON line per task
with a final result) and ``<job id>/outputs/<task id>``. A client asks for index lines from a
byte offset and gets whole lines with their outputs; the offset after a line is where a later
request, after any disconnect, takes up again.
"""
import collections
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Deque, Dict, Iterator, Optional, Union

import zmq

from ._proto import PROTOCOL_VERSION, pb
from .errors import NoOutputs, ServiceUnavailable, TaskfarmError, UnknownJob
from .states import JobState

if TYPE_CHECKING:  # pragma: no cover
    from .client import Job, Keys

DEFAULT_RESULTS_PORT = 5561  # common/protocol.h: kResultsServicePort
MAX_REPLY_BYTES = 16 << 20   # of outputs per reply, as `taskfarm results` asks


def decode_reply(data: bytes, endpoint: str, service: str) -> "pb.Envelope":
    """Returns: the Envelope in `data`, an answer of `service` ("the job service", "the sink")
    at `endpoint`. Raises: TaskfarmError when it is undecodable or of another protocol."""
    reply = pb.Envelope()
    try:
        reply.ParseFromString(data)
    except Exception as e:  # protobuf's DecodeError
        raise TaskfarmError(f"undecodable answer from {endpoint}") from e
    if reply.version != PROTOCOL_VERSION:
        raise TaskfarmError(f"{service} speaks protocol {reply.version}, "
                            f"this client {PROTOCOL_VERSION}")
    return reply


def default_port(standard: int) -> int:
    """Returns: the port the taskfarm programs use for `standard` (5557 ... 5561) when none is
    given: moved by TASKFARM_PORT_BASE - 5557 when that variable is set, as they do."""
    base = os.environ.get("TASKFARM_PORT_BASE", "")
    if not base:
        return standard
    if not base.isdigit() or not 1024 <= int(base) <= 65535 - (8080 - 5557):
        raise ValueError(f"TASKFARM_PORT_BASE='{base}' is not a port from 1024 to "
                         f"{65535 - (8080 - 5557)}")
    return standard + int(base) - 5557


def results_endpoint_near(server: str) -> Optional[str]:
    """Returns: the results service's endpoint on the host of a job service's endpoint
    ("tcp://head:5560" -> "tcp://head:5561"), or None when there is no host to take (ipc://),
    as the C++ client's results_endpoint_near."""
    if "://" in server and not server.startswith("tcp://"):
        return None
    host = server[len("tcp://"):] if server.startswith("tcp://") else server
    colon = host.rfind(":")
    if colon >= 0 and (not host.startswith("[") or host.rfind("]") < colon):
        host = host[:colon]
    return f"tcp://{host}:{default_port(DEFAULT_RESULTS_PORT)}"


@dataclass(frozen=True)
class TaskResult:
    """One task's final result, from one line of the job's index (sink/outputs.h).

    `output` is the bytes the task returned (a command's stdout, a plugin's output), b"" when
    it returned none. `next_offset` is the index offset just after this line: pass it as
    ``job.results(from_offset=...)`` to go on after this result.
    """

    task_id: int
    entry: int                 # which entry of the job file's "tasks"
    index: int                 # index of the task within its entry (the {index} of argv)
    kernel: str
    status: str                # "ok" or "failed"
    attempt: int
    worker: str
    checksum: str              # 16 hex digits, as in the index and the report's digest
    value: float
    params: Dict[str, str]     # the task's sweep point (values as text), {} without a sweep
    error: str                 # why it failed, "" when ok
    output: bytes = field(repr=False)
    size: int = 0              # bytes of output the task returned
    output_file: str = ""      # where the sink keeps it: "outputs/<task id>", "" when none
    next_offset: int = 0
    index_line: str = field(default="", repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def text(self, encoding: str = "utf-8") -> str:
        """Returns: the output decoded (invalid bytes replaced)."""
        return self.output.decode(encoding, errors="replace")

    @classmethod
    def from_index_line(cls, line: str, output: bytes, next_offset: int) -> "TaskResult":
        """Returns: the result of one index line. Raises: TaskfarmError when it is not one."""
        try:
            d = json.loads(line)
            return cls(task_id=int(d["task_id"]), entry=int(d.get("entry", 0)),
                       index=int(d.get("index", 0)), kernel=str(d.get("kernel", "")),
                       status=str(d["status"]), attempt=int(d.get("attempt", 0)),
                       worker=str(d.get("worker", "")), checksum=str(d.get("checksum", "")),
                       value=float(d.get("value", 0.0)),
                       params={str(k): str(v) for k, v in (d.get("params") or {}).items()},
                       error=str(d.get("error", "")), output=output,
                       size=int(d.get("bytes", len(output))),
                       output_file=str(d.get("output", "")), next_offset=next_offset,
                       index_line=line)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise TaskfarmError(f"the sink sent an index line that is not a result: "
                                f"{line[:200]!r} ({e})") from e


def _resume_offset(index: Path) -> int:
    """Returns: the size of a local index copy, cut back to its last whole line (a fetch
    interrupted while appending leaves no half line), as `taskfarm results` does."""
    try:
        data = index.read_bytes()
    except FileNotFoundError:
        return 0
    whole = data.rfind(b"\n") + 1
    if whole != len(data):
        with open(index, "r+b") as f:
            f.truncate(whole)
    return whole


class ResultStream(Iterator[TaskResult]):
    """Iterator over a job's results as they finish (made by ``Job.results``).

    Not thread-safe: one consumer. After an exception (ServiceUnavailable when the sink does
    not answer, TimeoutError), iterating again resumes from `offset`; so does a new stream made
    with ``job.results(from_offset=stream.offset)`` or, with `out_dir`, from that folder.
    Attributes: offset (the index offset after the last result yielded), state (the job's
    JobState as the sink last said, None before the first answer), complete (True once the job
    ended and every result was yielded), endpoint.
    """

    def __init__(self, job: "Job", endpoint: str, keys: Optional["Keys"] = None, *,
                 from_offset: int = 0, out_dir: Union[str, "os.PathLike[str]", None] = None,
                 wait: bool = True, timeout: Optional[float] = None,
                 request_timeout: float = 5.0, poll: float = 0.2,
                 max_bytes: int = MAX_REPLY_BYTES):
        if from_offset < 0:
            raise ValueError("from_offset must be >= 0")
        if out_dir is not None and from_offset:
            raise ValueError("give out_dir or from_offset, not both: with out_dir the stream "
                             "resumes from the folder's index")
        self.job = job
        self.endpoint = endpoint
        self.keys = keys
        self.wait = wait
        self.request_timeout = request_timeout
        self.poll = poll
        self.max_bytes = max_bytes
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.state: Optional[JobState] = None
        self.complete = False
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        self._buffer: Deque[TaskResult] = collections.deque()
        self._ended = False  # nothing more will come (complete, or no-wait and caught up)
        self._complete_at_end = False  # the sink said complete: the buffer holds the rest
        self._closed = False
        self._socket: Optional[zmq.Socket] = None
        self._index_file = None
        if self.out_dir is not None:
            try:
                (self.out_dir / "outputs").mkdir(parents=True, exist_ok=True)
                from_offset = _resume_offset(self.out_dir / "index.jsonl")
                self._index_file = open(self.out_dir / "index.jsonl", "ab")
            except OSError as e:
                raise TaskfarmError(f"cannot write results into {self.out_dir}: "
                                    f"{e.strerror or e}") from e
        self.offset = from_offset

    # ---------------------------------------------------------------- iteration

    def __iter__(self) -> "ResultStream":
        return self

    def __next__(self) -> TaskResult:
        while not self._buffer:
            if self._closed or self._ended:
                raise StopIteration
            self._fetch()
        item = self._buffer[0]
        if self.out_dir is not None:
            self._save(item)
        self._buffer.popleft()
        self.offset = item.next_offset
        if not self._buffer and self._complete_at_end:
            self.complete = True
        return item

    def drain(self) -> int:
        """Reads the rest of the stream (with out_dir: fetches everything into the folder).
        Returns: how many results it read."""
        return sum(1 for _ in self)

    def close(self) -> None:
        """Closes the connection and the index file; the stream yields nothing more. Resume
        with ``job.results(from_offset=stream.offset)`` (or the same out_dir)."""
        self._closed = True
        self._buffer.clear()
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._index_file is not None:
            self._index_file.close()
            self._index_file = None

    def __enter__(self) -> "ResultStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __repr__(self) -> str:
        return (f"ResultStream(job={self.job.id!r}, endpoint={self.endpoint!r}, "
                f"offset={self.offset}, state={self.state})")

    # ---------------------------------------------------------------- protocol

    def _connect(self) -> "zmq.Socket":
        if self._socket is None:
            s = zmq.Context.instance().socket(zmq.DEALER)
            s.linger = 0
            if self.keys:
                self.keys.apply(s)
            s.connect(self.endpoint)
            self._socket = s
        return self._socket

    def _request(self, offset: int) -> "pb.ResultsReply":
        env = pb.Envelope(version=PROTOCOL_VERSION)
        env.results_request.job_id = self.job.id
        env.results_request.offset = offset
        env.results_request.max_bytes = self.max_bytes
        s = self._connect()
        s.send(env.SerializeToString())
        wait_s = self.request_timeout
        if self._deadline is not None:
            wait_s = min(wait_s, max(0.0, self._deadline - time.monotonic()) + 0.1)
        if not s.poll(int(wait_s * 1000)):
            # A late answer must not be taken for the next request's: start afresh.
            s.close()
            self._socket = None
            self._check_deadline()
            raise ServiceUnavailable(
                f"no answer from the results service at {self.endpoint} within "
                f"{wait_s:g} s (is taskfarm-sink --serve running there? Client(sink=...) names "
                f"it); iterate again to resume from offset {self.offset}")
        reply = decode_reply(s.recv(), self.endpoint, "the sink")
        if not reply.HasField("results_reply"):
            raise TaskfarmError(f"{self.endpoint} answered with something else than results "
                                f"(is it the sink's results service?)")
        return reply.results_reply

    def _check_deadline(self) -> None:
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise TimeoutError(f"job {self.job.id}: results still coming after "
                               f"{self._timeout:g} s (state {self.state or 'unknown'}, "
                               f"offset {self.offset})")

    def _sleep(self) -> None:
        self._check_deadline()
        delay = self.poll
        if self._deadline is not None:
            delay = max(0.0, min(delay, self._deadline - time.monotonic()))
        time.sleep(delay)

    def _fetch(self) -> None:
        """One request: fills the buffer, or learns that the job has ended, or waits a poll
        interval when nothing is new."""
        reply = self._request(self.offset)
        if reply.error:
            self._no_index(reply.error)
            return
        self.state = JobState.from_wire(reply.state) if reply.state else None
        at = self.offset
        for item in reply.items:
            at += len(item.index_line.encode("utf-8")) + 1
            self._buffer.append(TaskResult.from_index_line(item.index_line, item.output, at))
        if self._buffer and at != reply.next_offset:
            raise TaskfarmError(f"the sink's offsets do not add up ({at} != "
                                f"{reply.next_offset}): not the same index")
        if reply.complete:
            self._ended = self._complete_at_end = True
            if not self._buffer:
                self.complete = True
        elif not reply.items:
            if not self.wait:
                self._ended = True
            else:
                self._sleep()

    def _no_index(self, error: str) -> None:
        """The sink has no index of the job: it returns no outputs, is not this sink's, or has
        not reached the sink yet (queued). Waits in the last case; raises NoOutputs otherwise."""
        if "returns no outputs" in error:
            raise NoOutputs(error)
        if "is not a job id" in error:
            raise TaskfarmError(error)
        try:
            st = self.job.status()
        except UnknownJob:
            raise NoOutputs(error) from None
        if st.finished:
            raise NoOutputs(f"{error}; the job is {st.state}" +
                            (" (its kernels return no outputs: the report has its results)"
                             if st.state == JobState.DONE else ""))
        self.state = st.state
        if not self.wait:
            self._ended = True  # queued: nothing exists yet
            return
        self._sleep()  # queued, or its start is still on the way to the sink

    def _save(self, item: TaskResult) -> None:
        """Writes the output, then its index line, as `taskfarm results` does: a resumed fetch
        never has a line without its output, and never half a file."""
        assert self.out_dir is not None and self._index_file is not None
        try:
            if item.output_file:
                path = self.out_dir / "outputs" / str(item.task_id)
                tmp = path.with_name(path.name + ".part")
                tmp.write_bytes(item.output)
                os.replace(tmp, path)
            self._index_file.write(item.index_line.encode("utf-8") + b"\n")
            self._index_file.flush()
        except OSError as e:
            raise TaskfarmError(f"cannot write results into {self.out_dir}: "
                                f"{e.strerror or e}") from e
