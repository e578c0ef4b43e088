#!/usr/bin/env python3
"""Submit a job to a taskfarm job service, wait for it and read its report.

Uses pyzmq and the protobuf module generated from proto/taskfarm.proto (build/python/
taskfarm_pb2.py, made by the build), both from Debian packages: python3-zmq, python3-protobuf.

    PYTHONPATH=build/python python3 examples/python/taskfarm_client.py examples/mandelbrot.json

Exit status: 0 when every task succeeded, 2 when some failed or the job was cancelled, 1 for a
bad job file or a service that does not answer.
"""
import argparse
import os
import sys
import time

import zmq
from google.protobuf import json_format

try:
    import taskfarm_pb2 as pb
except ImportError:  # run from a checkout: use the module of the default build
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "build", "python"))
    import taskfarm_pb2 as pb

PROTOCOL_VERSION = 1  # common/protocol.h: kProtocolVersion
# Job states in words, from the proto enum (JOB_DONE -> "done").
def state_name(state):
    return pb.JobState.Name(state).removeprefix("JOB_").lower()


FINISHED = ("done", "failed", "cancelled", "interrupted")


class ServiceError(Exception):
    pass


class Client:
    """One request, one reply, over a DEALER socket to taskfarm-ventilator --serve."""

    def __init__(self, endpoint="tcp://localhost:5560", timeout_s=5.0):
        self.endpoint = endpoint
        self.timeout_ms = int(timeout_s * 1000)
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)

    def call(self, envelope):
        envelope.version = PROTOCOL_VERSION
        self.socket.send(envelope.SerializeToString())
        if not self.socket.poll(self.timeout_ms):
            raise ServiceError(f"no answer from the job service at {self.endpoint} within "
                               f"{self.timeout_ms / 1000:.1f} s")
        reply = pb.Envelope()
        reply.ParseFromString(self.socket.recv())
        if reply.version != PROTOCOL_VERSION:
            raise ServiceError(f"protocol version {reply.version}, expected {PROTOCOL_VERSION}")
        return reply

    def submit(self, job):
        env = pb.Envelope()
        env.submit.job.CopyFrom(job)
        reply = self.call(env).submit_reply
        if reply.error:
            raise ServiceError(reply.error)
        return reply.job_id

    def status(self, job=""):
        env = pb.Envelope()
        env.status.job = job
        reply = self.call(env).status_reply
        if reply.error:
            raise ServiceError(reply.error)
        return list(reply.jobs)

    def cancel(self, job):
        env = pb.Envelope()
        env.cancel.job = job
        reply = self.call(env).cancel_reply
        if reply.error:
            raise ServiceError(reply.error)
        return reply.job_id

    def wait(self, job, poll_s=0.2, progress=None):
        while True:
            (status,) = self.status(job)
            if state_name(status.state) in FINISHED:
                return status
            if progress:
                progress(status)
            time.sleep(poll_s)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job_file")
    parser.add_argument("--server", default="tcp://localhost:5560")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--report", help="write the JSON report here")
    args = parser.parse_args()
    try:
        with open(args.job_file) as f:
            job = json_format.Parse(f.read(), pb.JobSpec())
        client = Client(args.server, args.timeout)
        job_id = client.submit(job)
        print(f"submitted {job.name or args.job_file} as {job_id}", flush=True)
        status = client.wait(job_id, progress=lambda s: print(
            f"  {state_name(s.state)}: {s.done}/{s.total} tasks, {s.tasks_per_s:.0f} tasks/s", flush=True))
    except (OSError, json_format.ParseError, ServiceError) as e:
        print(f"taskfarm_client: error: {e}", file=sys.stderr)
        return 1
    report = status.report
    print(f"{state_name(status.state)}: {report.tasks_ok} ok, {report.tasks_failed} failed in "
          f"{report.elapsed_s:.3f} s ({report.tasks_per_s:.0f} tasks/s), "
          f"digest {report.result_digest}")
    if args.report:
        with open(args.report, "w") as f:
            f.write(json_format.MessageToJson(report, preserving_proto_field_name=True))
    return 0 if status.state == pb.JOB_DONE else 2


if __name__ == "__main__":
    sys.exit(main())
